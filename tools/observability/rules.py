"""Recording and alerting rules, built from a :class:`~tools.observability.config.Config`.

Alerts come in four groups, one function each (:func:`breaker_alerts`, :func:`slo_alerts`,
:func:`pool_alerts`, :func:`runtime_alerts`). An alert is its expression, severity,
annotation templates and durations; its runbook prose is ``runbooks/<alert>.md``
(:mod:`.runbooks`). A test (or the live contract test) can render the same rules with
shorter windows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from . import runbooks
from .config import DEFAULT, BurnWindow, Config
from .promql import duration, le_matcher, number, selector
from .yamlout import Yaml, dump

Severity = Literal["critical", "warning", "info"]

#: Labels the SLO and ratio recording rules keep.
SLI_BY = "job, name"
BREAKER_BY = "job, instance, name"
POOL_BY = "job, instance, pool"


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str

    def to_yaml(self) -> dict[str, Yaml]:
        return {"record": self.record, "expr": self.expr}


_NO_RUNBOOK = runbooks.Runbook("")


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: Severity
    summary: str
    description: str  # a Prometheus template: {{ $labels.x }}, {{ $value | humanize }}
    for_: int = 0  # seconds, 0 = fire on the first evaluation that holds
    keep_firing_for: int = 0  # seconds, 0 = resolve on the first evaluation that does not
    group: str = ""  # set by alerts()
    runbook: runbooks.Runbook = _NO_RUNBOOK  # set by alerts()

    @property
    def anchor(self) -> str:
        """The GitHub heading anchor of this alert's runbook section."""
        return self.name.lower()

    @property
    def condition(self) -> str:
        return self.runbook.condition

    def runbook_url(self, config: Config) -> str:
        return f"{config.runbook_base_url}#{self.anchor}"

    def to_yaml(self, config: Config) -> dict[str, Yaml]:
        rule: dict[str, Yaml] = {"alert": self.name, "expr": self.expr}
        if self.for_:
            rule["for"] = duration(self.for_)
        if self.keep_firing_for:
            rule["keep_firing_for"] = duration(self.keep_firing_for)
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": self.runbook_url(config),
        }
        return rule


# --- recording rules -----------------------------------------------------------------------


def _record(name: str) -> Callable[[int], str]:
    """The recording rule ``job_name:<name><window>`` for a window in seconds."""
    return lambda window: f"job_name:{name}{duration(window)}"


requests_rate_record = _record("switchgear_requests:rate")
rejected_rate_record = _record("switchgear_rejected:rate")
calls_rate_record = _record("switchgear_calls:rate")
rejected_ratio_record = _record("switchgear_rejected:ratio_rate")
error_ratio_record = _record("switchgear_request_errors:ratio_rate")
slow_ratio_record = _record("switchgear_requests_slow:ratio_rate")


def _sum_rate(by: str, metric: str, window: int, *matchers: str) -> str:
    return f"sum by ({by}) (rate({selector(metric, *matchers)}[{duration(window)}]))"


def _guarded_ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` with no sample (not NaN) where the denominator is 0."""
    return f"(\n  {numerator}\n)\n/ on ({SLI_BY})\n({denominator} > 0)"


def error_ratio_expr(window: int) -> str:
    """Failed / executed calls; a name with calls but no error series reads 0."""
    errors = _sum_rate(SLI_BY, "switchgear_requests_total", window, 'outcome="error"')
    total = _sum_rate(SLI_BY, "switchgear_requests_total", window)
    return _guarded_ratio(f"{errors}\n  or\n  0 * {total}", total)


def slow_ratio_expr(window: int, threshold: float) -> str:
    """Calls slower than ``threshold`` / executed calls, from the histogram's ``le`` bucket."""
    count = _sum_rate(SLI_BY, "switchgear_request_duration_seconds_count", window)
    fast = _sum_rate(
        SLI_BY, "switchgear_request_duration_seconds_bucket", window, le_matcher(threshold)
    )
    return _guarded_ratio(f"{count}\n  -\n  {fast}", count)


def recording_rules(config: Config = DEFAULT) -> list[Recording]:
    w = config.rejection_window
    requests, rejected = requests_rate_record(w), rejected_rate_record(w)
    rules = [
        Recording(requests, _sum_rate(SLI_BY, "switchgear_requests_total", w)),
        Recording(rejected, _sum_rate(SLI_BY, "switchgear_rejected_total", w)),
        Recording(
            calls_rate_record(w),
            f"(\n  {requests}\n  + on ({SLI_BY})\n  {rejected}\n)\nor {requests}\nor {rejected}",
        ),
        Recording(
            rejected_ratio_record(w),
            f"{rejected}\n/ on ({SLI_BY})\n({calls_rate_record(w)} > 0)",
        ),
    ]
    rules += [Recording(error_ratio_record(s), error_ratio_expr(s)) for s in config.burn_windows]
    rules += [
        Recording(slow_ratio_record(s), slow_ratio_expr(s, config.latency_slo_threshold))
        for s in config.burn_windows
    ]
    return rules


# --- alerts ---------------------------------------------------------------------------------

BREAKER_LABELS = "Breaker {{ $labels.name }} on {{ $labels.instance }} ({{ $labels.job }})"
POOL_LABELS = "Pool {{ $labels.pool }} on {{ $labels.instance }} ({{ $labels.job }})"


def _minutes_with_events(by: str, counter: str, window: int) -> str:
    """How many one-minute steps of ``window`` saw the counter grow, per ``by``.

    Events in the same minute count once: the workers of a pre-fork server, each with its
    own breaker, trip together in one outage and must not look like several trips. Each
    step compares the counter with its value a minute before (steps tile the window, so an
    event is never counted twice); a series born with its first event counts that step.
    """
    grew = f"({counter} unless {counter} offset 1m)\n    or\n    ({counter} - {counter} offset 1m)"
    # One second short of the window: the steps inside are the same whether the range
    # includes its start (Prometheus 2) or not (Prometheus 3).
    return f"count_over_time(\n  (sum by ({by}) (\n    {grew}\n  ) > 0)[{window - 1}s:1m]\n)"


def breaker_alerts(c: Config) -> list[Alert]:
    state = "switchgear_circuit_state"
    not_closed, closed = 'state=~"open|half_open"', 'state="closed"'
    window = duration(c.breaker_not_recovering_window)
    rej = c.rejection_window
    trips = selector(
        "switchgear_circuit_transitions_total", 'from_state="closed"', 'to_state="open"'
    )
    return [
        Alert(
            "SwitchgearCircuitBreakerOpen",
            f"max by ({BREAKER_BY}) ({selector(state, not_closed)}) == 1",
            "warning",
            "A circuit breaker has been open for a while.",
            f"{BREAKER_LABELS} has been open or half-open for {duration(c.breaker_open_for)}; "
            "calls through it are being rejected.",
            c.breaker_open_for,
            c.breaker_open_keep_firing_for,
        ),
        Alert(
            "SwitchgearCircuitBreakerNotRecovering",
            f"max by ({BREAKER_BY}) (max_over_time({selector(state, closed)}[{window}])) == 0\n"
            f"and on ({BREAKER_BY})\n"
            f"max by ({BREAKER_BY}) (max_over_time({selector(state, not_closed)}[{window}])) == 1",
            "critical",
            "A circuit breaker has not closed for a long time.",
            f"{BREAKER_LABELS} has not been closed once in {window}; "
            "its dependency is still failing the trial calls.",
        ),
        Alert(
            "SwitchgearCircuitBreakerFlapping",
            _minutes_with_events(BREAKER_BY, trips, c.breaker_flap_window)
            + f" >= {c.breaker_flap_trips}",
            "warning",
            "A circuit breaker keeps tripping.",
            f"{BREAKER_LABELS} tripped from closed to open in {{{{ $value | humanize }}}} "
            f"separate minutes of the last {duration(c.breaker_flap_window)}.",
            keep_firing_for=c.breaker_flap_keep_firing_for,
        ),
        Alert(
            "SwitchgearHighRejectionRatio",
            f"{rejected_ratio_record(rej)} > {number(c.rejection_ratio)}\n"
            f"and on ({SLI_BY})\n"
            f"{calls_rate_record(rej)} >= {number(c.min_call_rate)}",
            "warning",
            "Many calls are being rejected without being executed.",
            "{{ $value | humanizePercentage }} of calls to {{ $labels.name }} "
            "({{ $labels.job }}) were rejected (breaker open, half-open full, pool full or "
            f"pool timeout) over the last {duration(rej)}.",
            c.rejection_for,
            c.rejection_keep_firing_for,
        ),
    ]


def burn_expr(
    windows: tuple[BurnWindow, ...], budget: float, record_for: Callable[[int], str]
) -> str:
    """``(long > f*B and short > f*B) or ...`` over the ratio recording rules."""
    parts = []
    for w in windows:
        threshold = f"({number(w.factor)} * {number(budget)})"
        parts.append(
            f"(\n  {record_for(w.long)} > {threshold}\n  and on ({SLI_BY})\n"
            f"  {record_for(w.short)} > {threshold}\n)"
        )
    return "\nor\n".join(parts)


def slo_alerts(c: Config) -> list[Alert]:
    lat_ms = f"{c.latency_slo_threshold * 1000:g} ms"
    ratio = "{{ $value | humanizePercentage }} of calls to {{ $labels.name }} ({{ $labels.job }})"
    err = f"{ratio} failed over the long window; the SLO allows {number(c.error_budget * 100)} %."
    lat = (
        f"{ratio} took longer than {lat_ms} over the long window; "
        f"the SLO allows {number(c.latency_budget * 100)} %."
    )
    fast = (c.fast_burn_for, c.fast_burn_keep_firing_for)
    slow = (c.slow_burn_for, c.slow_burn_keep_firing_for)
    err_budget, lat_budget = c.error_budget, c.latency_budget
    days, month = "within days", "this month"
    return [
        Alert(
            "SwitchgearErrorBudgetBurnFast",
            burn_expr(c.fast_burn, err_budget, error_ratio_record),
            "critical",
            f"Calls are failing fast enough to exhaust the error budget {days}.",
            err,
            *fast,
        ),
        Alert(
            "SwitchgearErrorBudgetBurnSlow",
            burn_expr(c.slow_burn, err_budget, error_ratio_record),
            "warning",
            f"Calls are failing fast enough to exhaust the error budget {month}.",
            err,
            *slow,
        ),
        Alert(
            "SwitchgearLatencyBudgetBurnFast",
            burn_expr(c.fast_burn, lat_budget, slow_ratio_record),
            "critical",
            f"Calls are slow often enough to exhaust the latency budget {days}.",
            lat,
            *fast,
        ),
        Alert(
            "SwitchgearLatencyBudgetBurnSlow",
            burn_expr(c.slow_burn, lat_budget, slow_ratio_record),
            "warning",
            f"Calls are slow often enough to exhaust the latency budget {month}.",
            lat,
            *slow,
        ),
    ]


def pool_alerts(c: Config) -> list[Alert]:
    wait_window, thrash = duration(c.pool_wait_window), duration(c.pool_thrash_window)
    quantile = number(c.pool_wait_quantile)
    events = [
        f"sum by ({POOL_BY}) (increase(switchgear_pool_scale_events_total"
        f'{{direction="{d}"}}[{thrash}])) >= {c.pool_thrash_events}'
        for d in ("up", "down")
    ]
    return [
        Alert(
            "SwitchgearPoolSaturated",
            "switchgear_pool_in_use >= switchgear_pool_max_size\nand\n"
            f"max_over_time(switchgear_pool_waiting[{duration(c.pool_waiting_window)}]) > 0",
            "warning",
            "A pool is at its maximum size and callers are waiting.",
            f"{POOL_LABELS} has all {{{{ $value | humanize }}}} resources in use at max_size "
            f"and callers waiting for {duration(c.pool_saturated_for)}.",
            c.pool_saturated_for,
            c.pool_saturated_keep_firing_for,
        ),
        Alert(
            "SwitchgearPoolWaitHigh",
            f"histogram_quantile({quantile}, sum by ({POOL_BY}, le) "
            f"(rate(switchgear_pool_wait_seconds_bucket[{wait_window}])))"
            f" > {number(c.pool_wait_threshold)}\n"
            f"and on ({POOL_BY})\n"
            f"sum by ({POOL_BY}) (rate(switchgear_pool_wait_seconds_count[{wait_window}]))"
            f" >= {number(c.min_call_rate)}",
            "warning",
            "Callers wait a long time for a pool resource.",
            f"p{number(c.pool_wait_quantile * 100)} of the time spent acquiring from "
            + POOL_LABELS.replace("Pool ", "pool ", 1)
            + " is {{ $value | humanizeDuration }}.",
            c.pool_wait_for,
            c.pool_wait_keep_firing_for,
        ),
        Alert(
            "SwitchgearPoolThrashing",
            f"{events[0]}\nand on ({POOL_BY})\n{events[1]}",
            "info",
            "A pool keeps growing and shrinking.",
            f"{POOL_LABELS} scaled up {{{{ $value | humanize }}}} times and down at least "
            f"{c.pool_thrash_events} times in the last {thrash}.",
            keep_firing_for=c.pool_thrash_keep_firing_for,
        ),
    ]


def runtime_alerts(c: Config) -> list[Alert]:
    job = f'job="{c.job}"'
    cold = duration(c.cold_start_window)
    cold_starts = _sum_rate(SLI_BY, "switchgear_cold_starts_total", c.cold_start_window)
    calls = _sum_rate(SLI_BY, "switchgear_requests_total", c.cold_start_window)
    cold_ratio = f"(\n  {cold_starts}\n  / on ({SLI_BY})\n  ({calls} > 0)\n)"
    return [
        Alert(
            "SwitchgearMemoryNearLimit",
            "switchgear_memory_used_bytes\n/\n(switchgear_memory_limit_bytes > 0)\n"
            f"> {number(c.memory_ratio)}",
            "warning",
            "A process is close to its memory limit.",
            "{{ $labels.instance }} ({{ $labels.job }}) uses "
            "{{ $value | humanizePercentage }} of its memory limit.",
            c.memory_for,
            c.memory_keep_firing_for,
        ),
        Alert(
            "SwitchgearColdStartStorm",
            f"sum by ({SLI_BY}) (increase(switchgear_cold_starts_total[{cold}])) "
            f"> {c.cold_start_count}\nand on ({SLI_BY})\n"
            f"{cold_ratio} > {number(c.cold_start_ratio)}",
            "warning",
            "Many calls wait for a new pool resource to be created.",
            "{{ $value | humanize }} calls to {{ $labels.name }} ({{ $labels.job }}) waited "
            f"for a new resource in the last {cold}, "
            f"more than {number(c.cold_start_ratio * 100)} % of its calls.",
            c.cold_start_for,
            c.cold_start_keep_firing_for,
        ),
        Alert(
            "SwitchgearTargetDown",
            f"up{{{job}}} == 0",
            "warning",
            "Prometheus cannot scrape a switchgear target.",
            "{{ $labels.instance }} of job {{ $labels.job }} has failed every scrape "
            f"for {duration(c.target_down_for)}.",
            c.target_down_for,
        ),
        Alert(
            "SwitchgearMetricsAbsent",
            f"absent(switchgear_memory_used_bytes{{{job}}})\nunless on (job)\n(up{{{job}}} == 0)",
            "warning",
            "No switchgear metrics are being collected.",
            "No switchgear_* series from job {{ $labels.job }} for "
            f"{duration(c.metrics_absent_for)}: the targets are gone from service "
            "discovery or no longer expose switchgear metrics.",
            c.metrics_absent_for,
        ),
    ]


#: Rule groups in file order, each with the function that makes its alerts.
def limit_alerts(c: Config) -> list[Alert]:
    window = duration(c.limit_floor_window)
    return [
        Alert(
            "SwitchgearAdaptiveLimitAtMinimum",
            f"max_over_time(switchgear_limit_current[{window}]) <= switchgear_limit_min\n"
            "and\nswitchgear_limit_min < switchgear_limit_max\nand\n"
            f"max_over_time(switchgear_limit_in_flight[{window}]) >= switchgear_limit_min",
            "warning",
            "An adaptive limit is held at its minimum and calls fill it.",
            "Adaptive limit {{ $labels.name }} on {{ $labels.instance }} ({{ $labels.job }}) "
            "has allowed no more than its minimum of {{ $value | humanize }} calls in flight "
            f"for {duration(c.limit_floor_window + c.limit_floor_for)}, and calls filled it.",
            c.limit_floor_for,
            c.limit_floor_keep_firing_for,
        ),
    ]


GROUPS: tuple[tuple[str, Callable[[Config], list[Alert]]], ...] = (
    ("switchgear-breakers", breaker_alerts),
    ("switchgear-slo", slo_alerts),
    ("switchgear-pools", pool_alerts),
    ("switchgear-limits", limit_alerts),
    ("switchgear-runtime", runtime_alerts),
)


def alerts(config: Config = DEFAULT) -> list[Alert]:
    """Every alert, with its group and its runbook rendered for ``config``."""
    return [
        dataclasses.replace(a, group=group, runbook=runbooks.render(a.name, config))
        for group, make in GROUPS
        for a in make(config)
    ]


def rule_groups(config: Config = DEFAULT) -> list[dict[str, Yaml]]:
    """Rule groups in file order.

    A recording rule shares a group with the alerts that read it, placed before them:
    rules of one group run in order on the same evaluation, so an alert always sees the
    ratios of its own evaluation, in Prometheus exactly as in ``promtool test rules``
    (groups run concurrently, so across groups an alert could read last round's value).
    """
    recorded = recording_rules(config)
    slo_prefixes = ("job_name:switchgear_request_errors:", "job_name:switchgear_requests_slow:")
    placement = {
        "switchgear-breakers": [r for r in recorded if not r.record.startswith(slo_prefixes)],
        "switchgear-slo": [r for r in recorded if r.record.startswith(slo_prefixes)],
    }
    return [
        {
            "name": group,
            "rules": [r.to_yaml() for r in placement.get(group, [])]
            + [a.to_yaml(config) for a in make(config)],
        }
        for group, make in GROUPS
    ]


HEADER = """\
Prometheus alerting and recording rules for switchgear.
Generated by `python -m tools.observability` from tools/observability/ - do not edit.
Thresholds and windows: docs/runbooks.md. Check: promtool check rules <this file>."""


def render_rules(config: Config = DEFAULT) -> str:
    return dump({"groups": rule_groups(config)}, header=HEADER)

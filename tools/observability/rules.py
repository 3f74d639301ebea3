"""Recording and alerting rules, with the runbook text of every alert beside its expression.

Everything is built from a :class:`~tools.observability.config.Config`, so a test (or the
live contract test) can render the same rules with shorter windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

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


@dataclass(frozen=True)
class Runbook:
    """One section of ``docs/runbooks.md``."""

    meaning: str
    impact: str
    diagnosis: tuple[tuple[str, str], ...]  # (what the query shows, PromQL)
    mitigation: tuple[str, ...]
    tuning: str  # why these thresholds, for: and keep_firing_for


@dataclass(frozen=True)
class Alert:
    name: str
    group: str
    expr: str
    severity: Severity
    summary: str
    description: str
    for_: int  # seconds, 0 = fire on the first evaluation that holds
    keep_firing_for: int  # seconds, 0 = resolve on the first evaluation that does not hold
    condition: str  # the firing condition in words, with its numbers, for the docs
    runbook: Runbook

    @property
    def anchor(self) -> str:
        """The GitHub heading anchor of this alert's runbook section."""
        return self.name.lower()

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


def q(value: str) -> str:
    """A PromQL double-quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _w(seconds: int) -> str:
    return duration(seconds)


def requests_rate_record(window: int) -> str:
    return f"job_name:switchgear_requests:rate{_w(window)}"


def rejected_rate_record(window: int) -> str:
    return f"job_name:switchgear_rejected:rate{_w(window)}"


def calls_rate_record(window: int) -> str:
    return f"job_name:switchgear_calls:rate{_w(window)}"


def rejected_ratio_record(window: int) -> str:
    return f"job_name:switchgear_rejected:ratio_rate{_w(window)}"


def error_ratio_record(window: int) -> str:
    return f"job_name:switchgear_request_errors:ratio_rate{_w(window)}"


def slow_ratio_record(window: int) -> str:
    return f"job_name:switchgear_requests_slow:ratio_rate{_w(window)}"


def _sum_rate(by: str, metric: str, window: int, *matchers: str) -> str:
    return f"sum by ({by}) (rate({selector(metric, *matchers)}[{_w(window)}]))"


def error_ratio_expr(window: int) -> str:
    """Failed / executed calls; no sample (not NaN) for a name with no calls in the window."""
    errors = _sum_rate(SLI_BY, "switchgear_requests_total", window, 'outcome="error"')
    total = _sum_rate(SLI_BY, "switchgear_requests_total", window)
    return f"(\n  {errors}\n  or\n  0 * {total}\n)\n/ on ({SLI_BY})\n({total} > 0)"


def slow_ratio_expr(window: int, threshold: float) -> str:
    """Calls slower than ``threshold`` / executed calls, from the histogram's ``le`` bucket."""
    count = _sum_rate(SLI_BY, "switchgear_request_duration_seconds_count", window)
    fast = _sum_rate(
        SLI_BY, "switchgear_request_duration_seconds_bucket", window, le_matcher(threshold)
    )
    return f"(\n  {count}\n  -\n  {fast}\n)\n/ on ({SLI_BY})\n({count} > 0)"


def recording_rules(config: Config = DEFAULT) -> list[Recording]:
    w = config.rejection_window
    rules = [
        Recording(requests_rate_record(w), _sum_rate(SLI_BY, "switchgear_requests_total", w)),
        Recording(rejected_rate_record(w), _sum_rate(SLI_BY, "switchgear_rejected_total", w)),
        Recording(
            calls_rate_record(w),
            f"(\n  {requests_rate_record(w)}\n  + on ({SLI_BY})\n  {rejected_rate_record(w)}\n)\n"
            f"or {requests_rate_record(w)}\nor {rejected_rate_record(w)}",
        ),
        Recording(
            rejected_ratio_record(w),
            f"{rejected_rate_record(w)}\n/ on ({SLI_BY})\n({calls_rate_record(w)} > 0)",
        ),
    ]
    rules += [Recording(error_ratio_record(s), error_ratio_expr(s)) for s in config.burn_windows]
    rules += [
        Recording(slow_ratio_record(s), slow_ratio_expr(s, config.latency_slo_threshold))
        for s in config.burn_windows
    ]
    return rules


# --- alerts ---------------------------------------------------------------------------------


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


def _burn_condition(windows: tuple[BurnWindow, ...], budget: float, what: str) -> str:
    parts = [
        f"{what} over {duration(w.long)} and over {duration(w.short)} both above "
        f"{number(w.factor)} × {number(budget)} = {number(w.factor * budget)} "
        f"(burn rate {number(w.factor)}, {w.budget_share})"
        for w in windows
    ]
    return "; or ".join(parts)


def _budget_gone(windows: tuple[BurnWindow, ...], config: Config) -> str:
    fastest = max(w.factor for w in windows)
    slowest = min(w.factor for w in windows)
    days = config.slo_period_days
    return (
        f"at {number(fastest)}× the budget of {days} days lasts {days / fastest:.1f} days; "
        f"at {number(slowest)}× it lasts {days / slowest:.1f} days"
    )


def alerts(config: Config = DEFAULT) -> list[Alert]:
    c = config
    job = f'job="{c.job}"'
    err_budget = c.error_budget
    lat_budget = c.latency_budget
    lat_ms = f"{c.latency_slo_threshold * 1000:g} ms"
    err_pct = f"{c.error_slo_target * 100:g} %"
    lat_pct = f"{c.latency_slo_target * 100:g} %"
    rej_w = c.rejection_window
    state = "switchgear_circuit_state"
    not_closed = 'state=~"open|half_open"'
    closed = 'state="closed"'
    scale_events = "switchgear_pool_scale_events_total"
    return [
        # ---- breakers ----------------------------------------------------------------------
        Alert(
            name="SwitchgearCircuitBreakerOpen",
            group="switchgear-breakers",
            expr=f"max by ({BREAKER_BY}) ({selector(state, not_closed)}) == 1",
            severity="warning",
            summary="A circuit breaker has been open for a while.",
            description=(
                "Breaker {{ $labels.name }} on {{ $labels.instance }} ({{ $labels.job }}) "
                f"has been open or half-open for {duration(c.breaker_open_for)}; "
                "calls through it are being rejected."
            ),
            for_=c.breaker_open_for,
            keep_firing_for=c.breaker_open_keep_firing_for,
            condition=(
                f"`switchgear_circuit_state` is 1 for `open` or `half_open` at every evaluation "
                f"for {duration(c.breaker_open_for)} (manual `forced_open` and `disabled` "
                "do not count)"
            ),
            runbook=Runbook(
                meaning=(
                    "The breaker tripped (too many consecutive failures, or a failure/slow-call "
                    "rate rule held) and has not closed since: it is either OPEN, rejecting "
                    "every call with `CircuitOpenError`, or HALF_OPEN, letting a few trial "
                    "calls through to probe the dependency."
                ),
                impact=(
                    "Callers get `CircuitOpenError` (HTTP 503 with `Retry-After` from the "
                    "middleware) or the configured fallback instead of a result. That is the "
                    "breaker protecting the dependency and your threads; the dependency behind "
                    "it is the real problem."
                ),
                diagnosis=(
                    (
                        "Which breakers are not closed, per instance",
                        f'max by ({BREAKER_BY}, state) ({state}{{state!="closed"}}) == 1',
                    ),
                    (
                        "Which rule tripped it (`consecutive_failures`, `failure_rate`, "
                        "`slow_call_rate`; `trial_failed` / `trial_hung`: the probes failed "
                        "again; `manual`: someone forced it). The WARNING line on the "
                        "`switchgear.breaker` logger and the status document name the last "
                        "failure's exception type (or HTTP status) for the same trip",
                        "sum by (name, reason) (increase(switchgear_circuit_trips_total[1h])) > 0",
                    ),
                    (
                        "Did it trip on errors? Failure ratio of the calls it let through",
                        'sum by (name) (rate(switchgear_requests_total{outcome="error"}[5m]))\n'
                        "/ sum by (name) (rate(switchgear_requests_total[5m]))",
                    ),
                    (
                        "Or on slow calls? p99 latency of those calls",
                        "histogram_quantile(0.99, sum by (name, le) "
                        "(rate(switchgear_request_duration_seconds_bucket[5m])))",
                    ),
                    (
                        "Trial calls failing again (half_open -> open) vs closing",
                        "sum by (name, from_state, to_state) "
                        "(increase(switchgear_circuit_transitions_total[15m]))",
                    ),
                ),
                mitigation=(
                    "Fix or fail over the dependency the breaker protects; the breaker "
                    "closes by itself after `success_threshold` successful trial calls.",
                    "If the dependency is healthy again but trials keep failing, check the "
                    "trial calls themselves (a timeout shorter than the dependency's warm-up, "
                    "a stale connection held by a pool resource).",
                    "`breaker.reset()` closes it at once; use it only once the dependency is "
                    "known to be back. With `backoff_factor` set, a breaker whose probes keep "
                    "failing waits longer between them (up to `max_open_timeout`): after a "
                    "fix, a reset saves that wait.",
                ),
                tuning=(
                    f"`for: {duration(c.breaker_open_for)}` is ten default `open_timeout`s "
                    "(30 s): a dependency that recovers within a few probe cycles does not page "
                    f"anyone. `keep_firing_for: {duration(c.breaker_open_keep_firing_for)}` "
                    "keeps one alert through a breaker that closes for a scrape and trips "
                    "again; repeated trips are SwitchgearCircuitBreakerFlapping's job."
                ),
            ),
        ),
        Alert(
            name="SwitchgearCircuitBreakerNotRecovering",
            group="switchgear-breakers",
            expr=(
                f"max by ({BREAKER_BY}) "
                f"(max_over_time({selector(state, closed)}"
                f"[{duration(c.breaker_not_recovering_window)}])) == 0\n"
                f"and on ({BREAKER_BY})\n"
                f"max by ({BREAKER_BY}) "
                f"(max_over_time({selector(state, not_closed)}"
                f"[{duration(c.breaker_not_recovering_window)}])) == 1"
            ),
            severity="critical",
            summary="A circuit breaker has not closed for a long time.",
            description=(
                "Breaker {{ $labels.name }} on {{ $labels.instance }} ({{ $labels.job }}) "
                f"has not been closed once in {duration(c.breaker_not_recovering_window)}; "
                "its dependency is still failing the trial calls."
            ),
            for_=0,
            keep_firing_for=0,
            condition=(
                "no scrape in the last "
                f"{duration(c.breaker_not_recovering_window)} saw the breaker `closed`, "
                "and at least one saw it `open` or `half_open`"
            ),
            runbook=Runbook(
                meaning=(
                    "For the whole window every scrape found the breaker OPEN or HALF_OPEN: "
                    "each half-open episode's trial calls failed (or hung) and sent it back "
                    "to OPEN. The dependency has been unusable for that long."
                ),
                impact=(
                    "Everything behind this breaker has been failing fast for the whole "
                    "window: users see errors or fallbacks, and work that needs the dependency "
                    "is not getting done."
                ),
                diagnosis=(
                    (
                        "Probe cycles: half_open -> open means a trial call failed",
                        "sum by (name, from_state, to_state) "
                        "(increase(switchgear_circuit_transitions_total[30m]))",
                    ),
                    (
                        "Share of time spent not closed",
                        "sum by (instance, name)\n"
                        '  (rate(switchgear_circuit_time_seconds_total{state!="closed"}[30m]))',
                    ),
                    (
                        "Is any traffic getting through at all?",
                        "sum by (name, outcome) (rate(switchgear_requests_total[5m]))",
                    ),
                ),
                mitigation=(
                    "Treat it as an outage of the dependency: escalate to its owners, fail "
                    "over, or degrade the feature explicitly.",
                    "If the dependency is fine, look at what the trial calls do differently "
                    "(credentials, a stale connection in a pool resource, a timeout).",
                    "`breaker.force_open()` stops the probing while you work on it "
                    "(`forced_open` silences this alert); `reset()` when it is back.",
                ),
                tuning=(
                    "No `for:` — the window itself is the delay: it needs "
                    f"{duration(c.breaker_not_recovering_window)} without one `closed` "
                    "scrape, so it cannot fire on a blip. No `keep_firing_for`: the first "
                    "scrape that sees the breaker closed ends it, and it cannot fire again "
                    "for another full window."
                ),
            ),
        ),
        Alert(
            name="SwitchgearCircuitBreakerFlapping",
            group="switchgear-breakers",
            expr=_minutes_with_events(
                BREAKER_BY,
                selector(
                    "switchgear_circuit_transitions_total",
                    'from_state="closed"',
                    'to_state="open"',
                ),
                c.breaker_flap_window,
            )
            + f" >= {c.breaker_flap_trips}",
            severity="warning",
            summary="A circuit breaker keeps tripping.",
            description=(
                "Breaker {{ $labels.name }} on {{ $labels.instance }} ({{ $labels.job }}) "
                "tripped from closed to open in {{ $value | humanize }} separate minutes of "
                f"the last {duration(c.breaker_flap_window)}."
            ),
            for_=0,
            keep_firing_for=c.breaker_flap_keep_firing_for,
            condition=(
                f"`closed -> open` transitions in {c.breaker_flap_trips} or more separate "
                f"minutes of {duration(c.breaker_flap_window)}, counted from "
                "`switchgear_circuit_transitions_total` (so trips shorter than a scrape count; "
                "a series that appears with its first trip counts that trip too; the workers "
                "of a pre-fork server tripping in the same minute count once)"
            ),
            runbook=Runbook(
                meaning=(
                    "The breaker closes after its trial calls succeed, then trips again soon "
                    "after: the dependency is intermittently failing, or the breaker's "
                    "thresholds are so tight that normal error noise trips it. Open periods "
                    "may be shorter than a scrape; the transitions counter still sees them."
                ),
                impact=(
                    "Bursts of rejected calls between bursts of failures. Each trip costs "
                    "`failure_threshold` failed calls plus `open_timeout` of rejections."
                ),
                diagnosis=(
                    (
                        "Trips per breaker over time",
                        "sum by (instance, name) (increase(switchgear_circuit_transitions_total\n"
                        '  {from_state="closed", to_state="open"}[5m]))',
                    ),
                    (
                        "Error ratio while closed: noise level vs failure_rate_threshold",
                        'sum by (name) (rate(switchgear_requests_total{outcome="error"}[5m]))\n'
                        "/ sum by (name) (rate(switchgear_requests_total[5m]))",
                    ),
                    (
                        "Latency, if slow-call rules are on",
                        "histogram_quantile(0.99, sum by (name, le) "
                        "(rate(switchgear_request_duration_seconds_bucket[5m])))",
                    ),
                ),
                mitigation=(
                    "Find the intermittent fault in the dependency (one bad replica behind a "
                    "load balancer is the classic).",
                    "If the trips are noise: raise `failure_threshold`, use "
                    "`failure_rate_threshold` with `minimum_calls` instead of a streak, or "
                    "exclude errors that are not the dependency's fault via `ignore_on`.",
                ),
                tuning=(
                    f"Counting only `closed -> open` ignores the `half_open -> open` cycles of "
                    "a breaker that is simply down (SwitchgearCircuitBreakerNotRecovering). "
                    "No `for:` — the window is the delay. "
                    f"`keep_firing_for: {duration(c.breaker_flap_keep_firing_for)}` because "
                    "the count drops below the threshold whenever the oldest trip leaves the "
                    "window, even if the breaker keeps flapping. Trips are counted per minute, "
                    "not one by one: in a pre-fork deployment each worker has its own breaker, "
                    "and one outage trips them all within seconds; summed, four workers would "
                    "look like four trips. A series with no sample a minute before (new, or "
                    "after a scrape gap) counts that minute: a labelled counter usually appears "
                    "only with its first trip."
                ),
            ),
        ),
        Alert(
            name="SwitchgearHighRejectionRatio",
            group="switchgear-breakers",
            expr=(
                f"{rejected_ratio_record(rej_w)} > {number(c.rejection_ratio)}\n"
                f"and on ({SLI_BY})\n"
                f"{calls_rate_record(rej_w)} >= {number(c.min_call_rate)}"
            ),
            severity="warning",
            summary="Many calls are being rejected without being executed.",
            description=(
                "{{ $value | humanizePercentage }} of calls to {{ $labels.name }} "
                "({{ $labels.job }}) were rejected (breaker open, half-open full, pool full or "
                f"pool timeout) over the last {duration(rej_w)}."
            ),
            for_=c.rejection_for,
            keep_firing_for=c.rejection_keep_firing_for,
            condition=(
                f"rejected / (executed + rejected) over {duration(rej_w)} above "
                f"{number(c.rejection_ratio)}, with at least {number(c.min_call_rate)} "
                f"calls/s, for {duration(c.rejection_for)}"
            ),
            runbook=Runbook(
                meaning=(
                    "A large share of calls never ran: `switchgear_rejected_total` counts "
                    "calls refused by an open breaker (`circuit_open`), a half-open breaker "
                    "whose trial permits are taken (`half_open_full`), a pool at `max_waiting` "
                    "(`pool_full`) or a pool wait that hit `acquire_timeout` (`pool_timeout`)."
                ),
                impact=(
                    "Those callers got an error or the fallback. The `reason` label says "
                    "whether a dependency is down (breaker) or capacity is short (pool)."
                ),
                diagnosis=(
                    (
                        "Rejections by reason",
                        "sum by (name, reason) (rate(switchgear_rejected_total[5m]))",
                    ),
                    (
                        "The ratio the alert reads",
                        rejected_ratio_record(rej_w),
                    ),
                    (
                        "Pool pressure, for pool_full / pool_timeout",
                        "max by (instance, pool) (switchgear_pool_waiting)",
                    ),
                ),
                mitigation=(
                    "`circuit_open` / `half_open_full`: see SwitchgearCircuitBreakerOpen.",
                    "`pool_full` / `pool_timeout`: see SwitchgearPoolSaturated — raise "
                    "`max_size`, shorten the work done per lease, or add instances.",
                ),
                tuning=(
                    f"{number(c.rejection_ratio * 100)} % over {duration(rej_w)} is well above "
                    "the background of a healthy service (zero). The traffic floor of "
                    f"{number(c.min_call_rate)} calls/s keeps three rejected calls out of "
                    f"five from paging anyone. `for: {duration(c.rejection_for)}` outlasts a "
                    f"one-minute burst (it stays in the {duration(rej_w)} window for "
                    f"{duration(rej_w)}); "
                    f"`keep_firing_for: {duration(c.rejection_keep_firing_for)}` "
                    "bridges a breaker's half-open gaps."
                ),
            ),
        ),
        # ---- SLOs --------------------------------------------------------------------------
        Alert(
            name="SwitchgearErrorBudgetBurnFast",
            group="switchgear-slo",
            expr=burn_expr(c.fast_burn, err_budget, error_ratio_record),
            severity="critical",
            summary="Calls are failing fast enough to exhaust the error budget within days.",
            description=(
                "{{ $value | humanizePercentage }} of calls to {{ $labels.name }} "
                f"({{{{ $labels.job }}}}) failed over the long window; the SLO allows "
                f"{number(err_budget * 100)} %."
            ),
            for_=c.fast_burn_for,
            keep_firing_for=c.fast_burn_keep_firing_for,
            condition=_burn_condition(c.fast_burn, err_budget, "error ratio"),
            runbook=Runbook(
                meaning=(
                    f"The error SLO is {err_pct} of executed calls succeeding over "
                    f"{c.slo_period_days} days. The error ratio is high over both a long and "
                    f"a short window: {_budget_gone(c.fast_burn, c)}."
                ),
                impact=(
                    "A real, ongoing outage or partial outage of this call: users see errors "
                    "now, and the month's budget is going fast."
                ),
                diagnosis=(
                    (
                        "Error ratio per window",
                        '{__name__=~"job_name:switchgear_request_errors:ratio_rate.+"}',
                    ),
                    (
                        "Which instances fail",
                        "sum by (instance, name)\n"
                        '  (rate(switchgear_requests_total{outcome="error"}[5m]))',
                    ),
                    (
                        "Are breakers opening (errors then turn into rejections)?",
                        'max by (instance, name) (switchgear_circuit_state{state!="closed"}) == 1',
                    ),
                ),
                mitigation=(
                    "Roll back the last deploy of the service or the dependency if the burn "
                    "started with it.",
                    "Find the failing dependency from the breakers dashboard; fail over or "
                    "shed the load that hurts it.",
                ),
                tuning=(
                    "Windows and factors are the SRE workbook's (Table 5-8) for a 30-day SLO: "
                    "the long window makes the alert significant, the short window (1/12) "
                    "lets it resolve within minutes of the fix. "
                    f"`for: {duration(c.fast_burn_for)}` "
                    "skips one-evaluation blips; "
                    f"`keep_firing_for: {duration(c.fast_burn_keep_firing_for)}` avoids a "
                    "resolve/re-fire while the short window hovers at the threshold. Zero "
                    "traffic gives no ratio sample at all (the denominator is guarded), so "
                    "nothing fires and nothing divides by zero."
                ),
            ),
        ),
        Alert(
            name="SwitchgearErrorBudgetBurnSlow",
            group="switchgear-slo",
            expr=burn_expr(c.slow_burn, err_budget, error_ratio_record),
            severity="warning",
            summary="Calls are failing fast enough to exhaust the error budget this month.",
            description=(
                "{{ $value | humanizePercentage }} of calls to {{ $labels.name }} "
                f"({{{{ $labels.job }}}}) failed over the long window; the SLO allows "
                f"{number(err_budget * 100)} %."
            ),
            for_=c.slow_burn_for,
            keep_firing_for=c.slow_burn_keep_firing_for,
            condition=_burn_condition(c.slow_burn, err_budget, "error ratio"),
            runbook=Runbook(
                meaning=(
                    f"The error SLO ({err_pct} over {c.slo_period_days} days) is being "
                    f"consumed faster than it refills: {_budget_gone(c.slow_burn, c)}. Not an "
                    "emergency, but it will be if nobody looks."
                ),
                impact="A steady trickle of failed calls; users notice some of them.",
                diagnosis=(
                    (
                        "Error ratio per window",
                        '{__name__=~"job_name:switchgear_request_errors:ratio_rate.+"}',
                    ),
                    (
                        "Error ratio per instance over a day: one bad instance?",
                        'sum by (instance) (rate(switchgear_requests_total{outcome="error"}[1d]))\n'
                        "/ sum by (instance) (rate(switchgear_requests_total[1d]))",
                    ),
                ),
                mitigation=(
                    "File a ticket; find the recurring failure (one dependency, one instance, "
                    "one kind of input) and fix it before the budget runs out.",
                ),
                tuning=(
                    "SRE workbook ticket windows (1 d & 2 h at 3×, 3 d & 6 h at 1×). "
                    f"`for: {duration(c.slow_burn_for)}` and "
                    f"`keep_firing_for: {duration(c.slow_burn_keep_firing_for)}` keep it one "
                    "ticket, not a stream of them. The 1 d and 3 d ratios are the most "
                    "expensive rules in the file (they read days of raw samples)."
                ),
            ),
        ),
        Alert(
            name="SwitchgearLatencyBudgetBurnFast",
            group="switchgear-slo",
            expr=burn_expr(c.fast_burn, lat_budget, slow_ratio_record),
            severity="critical",
            summary="Calls are slow often enough to exhaust the latency budget within days.",
            description=(
                "{{ $value | humanizePercentage }} of calls to {{ $labels.name }} "
                f"({{{{ $labels.job }}}}) took longer than {lat_ms} over the long window; "
                f"the SLO allows {number(lat_budget * 100)} %."
            ),
            for_=c.fast_burn_for,
            keep_firing_for=c.fast_burn_keep_firing_for,
            condition=_burn_condition(c.fast_burn, lat_budget, f"share of calls over {lat_ms}"),
            runbook=Runbook(
                meaning=(
                    f"The latency SLO is {lat_pct} of executed calls finishing within "
                    f'{lat_ms} (the `le="{c.latency_slo_threshold!r}"` bucket of '
                    "`switchgear_request_duration_seconds`) over "
                    f"{c.slo_period_days} days. Too many calls are slower: "
                    f"{_budget_gone(c.fast_burn, c)}."
                ),
                impact="Users wait; upstream timeouts may turn the slowness into errors.",
                diagnosis=(
                    (
                        "Latency percentiles",
                        "histogram_quantile(0.99, sum by (name, le) "
                        "(rate(switchgear_request_duration_seconds_bucket[5m])))",
                    ),
                    (
                        "Is the time spent waiting for a pool resource?",
                        "histogram_quantile(0.99, sum by (pool, le) "
                        "(rate(switchgear_pool_wait_seconds_bucket[5m])))",
                    ),
                    (
                        "Cold starts add resource creation time",
                        "sum by (name) (rate(switchgear_cold_starts_total[5m]))",
                    ),
                ),
                mitigation=(
                    "If the pool wait is high: see SwitchgearPoolWaitHigh.",
                    "Otherwise the dependency is slow: check it, consider a `slow_call_duration` "
                    "rule so the breaker sheds load instead of queueing it.",
                ),
                tuning=(
                    "Same windows as the error-budget alerts. The threshold must be a bucket "
                    "bound so the ratio is exact, not interpolated."
                ),
            ),
        ),
        Alert(
            name="SwitchgearLatencyBudgetBurnSlow",
            group="switchgear-slo",
            expr=burn_expr(c.slow_burn, lat_budget, slow_ratio_record),
            severity="warning",
            summary="Calls are slow often enough to exhaust the latency budget this month.",
            description=(
                "{{ $value | humanizePercentage }} of calls to {{ $labels.name }} "
                f"({{{{ $labels.job }}}}) took longer than {lat_ms} over the long window; "
                f"the SLO allows {number(lat_budget * 100)} %."
            ),
            for_=c.slow_burn_for,
            keep_firing_for=c.slow_burn_keep_firing_for,
            condition=_burn_condition(c.slow_burn, lat_budget, f"share of calls over {lat_ms}"),
            runbook=Runbook(
                meaning=(
                    f"The latency SLO ({lat_pct} within {lat_ms}) is being consumed faster "
                    f"than it refills: {_budget_gone(c.slow_burn, c)}."
                ),
                impact="A steady share of slow calls.",
                diagnosis=(
                    (
                        "Slow-call ratio per window",
                        '{__name__=~"job_name:switchgear_requests_slow:ratio_rate.+"}',
                    ),
                    (
                        "Latency distribution over the day",
                        "sum by (le) (increase(switchgear_request_duration_seconds_bucket[1d]))",
                    ),
                ),
                mitigation=(
                    "File a ticket: profile the slow calls, check the pool size against the "
                    "load, and check the dependency's own latency.",
                ),
                tuning="Same windows and durations as SwitchgearErrorBudgetBurnSlow.",
            ),
        ),
        # ---- pools -------------------------------------------------------------------------
        Alert(
            name="SwitchgearPoolSaturated",
            group="switchgear-pools",
            expr=(
                "switchgear_pool_in_use >= switchgear_pool_max_size\n"
                "and\n"
                f"max_over_time(switchgear_pool_waiting[{duration(c.pool_waiting_window)}]) > 0"
            ),
            severity="warning",
            summary="A pool is at its maximum size and callers are waiting.",
            description=(
                "Pool {{ $labels.pool }} on {{ $labels.instance }} ({{ $labels.job }}) has "
                "all {{ $value | humanize }} resources in use at max_size and callers waiting "
                f"for {duration(c.pool_saturated_for)}."
            ),
            for_=c.pool_saturated_for,
            keep_firing_for=c.pool_saturated_keep_firing_for,
            condition=(
                "`in_use >= max_size` and some caller waiting in the last "
                f"{duration(c.pool_waiting_window)}, at every evaluation for "
                f"{duration(c.pool_saturated_for)}"
            ),
            runbook=Runbook(
                meaning=(
                    "The pool cannot grow any more (`in_use` has reached `max_size`) and "
                    "callers queue in `acquire`. The autoscaler has done all it may."
                ),
                impact=(
                    "Every call waits for a resource: latency rises by the wait, and calls "
                    "beyond `max_waiting` or `acquire_timeout` are rejected (`pool_full`, "
                    "`pool_timeout`)."
                ),
                diagnosis=(
                    (
                        "Size, in use, waiting and max per pool",
                        "max by (instance, pool) (switchgear_pool_in_use)\n"
                        "or max by (instance, pool) (switchgear_pool_max_size)",
                    ),
                    (
                        "Wait time p99",
                        "histogram_quantile(0.99, sum by (instance, pool, le) "
                        "(rate(switchgear_pool_wait_seconds_bucket[5m])))",
                    ),
                    (
                        "Are leases held longer than before? Call latency",
                        "histogram_quantile(0.9, sum by (name, le) "
                        "(rate(switchgear_request_duration_seconds_bucket[5m])))",
                    ),
                ),
                mitigation=(
                    "Raise `max_size` if the resource allows it (memory, licences, backend "
                    "connection limits), or add instances.",
                    "If leases got longer (slow dependency), fix that first: a bigger pool "
                    "only queues more work on a slow backend.",
                ),
                tuning=(
                    f"`waiting` flickers to 0 between hand-offs, so the rule takes its maximum "
                    f"over {duration(c.pool_waiting_window)}. "
                    f"`for: {duration(c.pool_saturated_for)}` ignores bursts the queue absorbs; "
                    f"`keep_firing_for: {duration(c.pool_saturated_keep_firing_for)}` keeps one "
                    "alert through a pool that dips below max for a scrape."
                ),
            ),
        ),
        Alert(
            name="SwitchgearPoolWaitHigh",
            group="switchgear-pools",
            expr=(
                f"histogram_quantile({number(c.pool_wait_quantile)}, sum by ({POOL_BY}, le) "
                f"(rate(switchgear_pool_wait_seconds_bucket[{duration(c.pool_wait_window)}])))"
                f" > {number(c.pool_wait_threshold)}\n"
                f"and on ({POOL_BY})\n"
                f"sum by ({POOL_BY}) "
                f"(rate(switchgear_pool_wait_seconds_count[{duration(c.pool_wait_window)}]))"
                f" >= {number(c.min_call_rate)}"
            ),
            severity="warning",
            summary="Callers wait a long time for a pool resource.",
            description=(
                f"p{number(c.pool_wait_quantile * 100)} of the time spent acquiring from pool "
                "{{ $labels.pool }} on {{ $labels.instance }} ({{ $labels.job }}) is "
                "{{ $value | humanizeDuration }}."
            ),
            for_=c.pool_wait_for,
            keep_firing_for=c.pool_wait_keep_firing_for,
            condition=(
                f"p{number(c.pool_wait_quantile * 100)} of `switchgear_pool_wait_seconds` "
                f"over {duration(c.pool_wait_window)} above {number(c.pool_wait_threshold)} s, "
                f"with at least {number(c.min_call_rate)} acquires/s, for "
                f"{duration(c.pool_wait_for)}"
            ),
            runbook=Runbook(
                meaning=(
                    "Acquiring a resource takes long: either the pool is at `max_size` and "
                    "callers queue, or creating resources on demand (cold starts) is slow."
                ),
                impact="Added latency on every call that uses the pool.",
                diagnosis=(
                    (
                        "Wait percentiles per pool",
                        "histogram_quantile(0.5, sum by (pool, le) "
                        "(rate(switchgear_pool_wait_seconds_bucket[5m])))",
                    ),
                    (
                        "Queue length",
                        "max by (instance, pool) (switchgear_pool_waiting)",
                    ),
                    (
                        "Cold starts (creation on demand)",
                        "sum by (name) (rate(switchgear_cold_starts_total[5m]))",
                    ),
                ),
                mitigation=(
                    "Queueing at max: see SwitchgearPoolSaturated.",
                    "Slow creation: raise `min_size` so resources are pre-warmed, or lower "
                    "`scale_up_threshold` so the autoscaler adds them before calls need them.",
                ),
                tuning=(
                    f"{number(c.pool_wait_threshold)} s is a bucket bound, so the quantile "
                    "interpolates within known buckets. The acquire-rate floor keeps a few "
                    f"slow acquires from deciding a p{number(c.pool_wait_quantile * 100)}; "
                    f"`for: {duration(c.pool_wait_for)}` and "
                    f"`keep_firing_for: {duration(c.pool_wait_keep_firing_for)}` ride out "
                    "single slow minutes both ways."
                ),
            ),
        ),
        Alert(
            name="SwitchgearPoolThrashing",
            group="switchgear-pools",
            expr=(
                f"sum by ({POOL_BY}) (increase("
                f"{selector(scale_events, 'direction=' + q('up'))}"
                f"[{duration(c.pool_thrash_window)}])) >= {c.pool_thrash_events}\n"
                f"and on ({POOL_BY})\n"
                f"sum by ({POOL_BY}) (increase("
                f"{selector(scale_events, 'direction=' + q('down'))}"
                f"[{duration(c.pool_thrash_window)}])) >= {c.pool_thrash_events}"
            ),
            severity="info",
            summary="A pool keeps growing and shrinking.",
            description=(
                "Pool {{ $labels.pool }} on {{ $labels.instance }} ({{ $labels.job }}) scaled "
                "up {{ $value | humanize }} times and down at least "
                f"{c.pool_thrash_events} times in the last {duration(c.pool_thrash_window)}."
            ),
            for_=0,
            keep_firing_for=c.pool_thrash_keep_firing_for,
            condition=(
                f"at least {c.pool_thrash_events} scale-ups and {c.pool_thrash_events} "
                f"scale-downs in {duration(c.pool_thrash_window)}"
            ),
            runbook=Runbook(
                meaning=(
                    "The autoscaler adds resources, retires them, and adds them again: "
                    "utilisation swings across both thresholds within a few "
                    "`scale_interval`s."
                ),
                impact=(
                    "Each scale-up creates resources (cost: creation time, cold starts); each "
                    "scale-down closes warm ones. Latency becomes uneven."
                ),
                diagnosis=(
                    (
                        "Scale events by direction",
                        "sum by (pool, direction) "
                        "(increase(switchgear_pool_scale_events_total[5m]))",
                    ),
                    (
                        "Utilisation seen by the autoscaler",
                        "sum by (pool) (switchgear_pool_in_use + switchgear_pool_waiting)\n"
                        "/ sum by (pool) (switchgear_pool_size)",
                    ),
                ),
                mitigation=(
                    "Widen the gap between `scale_up_threshold` and `scale_down_threshold`, "
                    "lengthen `scale_interval`, or raise `min_size` to the usual load.",
                ),
                tuning=(
                    "Both directions must be frequent: a pool that only grows under a ramp "
                    "does not fire. No `for:` (the window is the delay); "
                    f"`keep_firing_for: {duration(c.pool_thrash_keep_firing_for)}` because "
                    "the count drops below the threshold as old events leave the window."
                ),
            ),
        ),
        # ---- runtime -----------------------------------------------------------------------
        Alert(
            name="SwitchgearMemoryNearLimit",
            group="switchgear-runtime",
            expr=(
                "switchgear_memory_used_bytes\n/\n(switchgear_memory_limit_bytes > 0)\n"
                f"> {number(c.memory_ratio)}"
            ),
            severity="warning",
            summary="A process is close to its memory limit.",
            description=(
                "{{ $labels.instance }} ({{ $labels.job }}) uses "
                "{{ $value | humanizePercentage }} of its memory limit."
            ),
            for_=c.memory_for,
            keep_firing_for=c.memory_keep_firing_for,
            condition=(
                f"resident memory / memory limit above {number(c.memory_ratio)} for "
                f"{duration(c.memory_for)}; silent when no limit is known (the limit series "
                "is absent)"
            ),
            runbook=Runbook(
                meaning=(
                    "Resident memory is close to the cgroup limit (`memory.max`) or "
                    "`RLIMIT_AS`. `switchgear_memory_limit_bytes` is absent when no limit is "
                    "known, so processes without a limit never fire."
                ),
                impact=(
                    "Next: the kernel's OOM killer ends the process (cgroup), or allocations "
                    "fail with `MemoryError` (`RLIMIT_AS`). In-flight calls are lost."
                ),
                diagnosis=(
                    (
                        "Used vs limit",
                        "switchgear_memory_used_bytes / switchgear_memory_limit_bytes",
                    ),
                    (
                        "Growth over the last hour (a leak grows steadily)",
                        "deriv(switchgear_memory_used_bytes[1h])",
                    ),
                    (
                        "Pool sizes (each resource costs memory)",
                        "sum by (instance, pool) (switchgear_pool_size)",
                    ),
                ),
                mitigation=(
                    "A steady climb is a leak: take a heap profile before restarting.",
                    "A pool that grew to `max_size` may simply need more memory than the "
                    "limit: lower `max_size` or raise the limit.",
                ),
                tuning=(
                    f"`for: {duration(c.memory_for)}` ignores short allocation peaks; "
                    f"`keep_firing_for: {duration(c.memory_keep_firing_for)}` keeps one alert "
                    "while memory hovers at the threshold. The `> 0` guard keeps a zero limit "
                    "from dividing into +Inf."
                ),
            ),
        ),
        Alert(
            name="SwitchgearColdStartStorm",
            group="switchgear-runtime",
            expr=(
                f"sum by ({SLI_BY}) (increase(switchgear_cold_starts_total"
                f"[{duration(c.cold_start_window)}])) > {c.cold_start_count}\n"
                f"and on ({SLI_BY})\n"
                "(\n"
                f"  {_sum_rate(SLI_BY, 'switchgear_cold_starts_total', c.cold_start_window)}\n"
                f"  / on ({SLI_BY})\n"
                f"  ({_sum_rate(SLI_BY, 'switchgear_requests_total', c.cold_start_window)} > 0)\n"
                f") > {number(c.cold_start_ratio)}"
            ),
            severity="warning",
            summary="Many calls wait for a new pool resource to be created.",
            description=(
                "{{ $value | humanize }} calls to {{ $labels.name }} ({{ $labels.job }}) "
                f"waited for a new resource in the last {duration(c.cold_start_window)}, "
                f"more than {number(c.cold_start_ratio * 100)} % of its calls."
            ),
            for_=c.cold_start_for,
            keep_firing_for=c.cold_start_keep_firing_for,
            condition=(
                f"more than {c.cold_start_count} cold starts in "
                f"{duration(c.cold_start_window)} and more than "
                f"{number(c.cold_start_ratio * 100)} % of calls cold, for "
                f"{duration(c.cold_start_for)}"
            ),
            runbook=Runbook(
                meaning=(
                    "Calls keep finding no idle resource and create one: the pool retires "
                    "resources and then needs them again, or resources die (crash, close) "
                    "right after creation, or instances restart over and over."
                ),
                impact="Each cold start adds the resource's creation time to a call.",
                diagnosis=(
                    (
                        "Cold starts per name",
                        "sum by (instance, name) (increase(switchgear_cold_starts_total[5m]))",
                    ),
                    (
                        "Instance restarts (process start time changes)",
                        "changes(up[30m])",
                    ),
                    (
                        "Scale-downs that retire resources the next calls need",
                        "sum by (pool)\n"
                        '  (increase(switchgear_pool_scale_events_total{direction="down"}[30m]))',
                    ),
                ),
                mitigation=(
                    "Raise `min_size` to the steady load; lower `scale_down_threshold` so idle "
                    "resources are kept longer.",
                    "If instances are restarting (OOM, crash loop), fix that first.",
                ),
                tuning=(
                    f"Both a count (> {c.cold_start_count}) and a share "
                    f"(> {number(c.cold_start_ratio * 100)} %) must hold: a restart that "
                    "warms a 16-resource pool does not fire, neither do a few cold starts at "
                    f"low traffic. `for: {duration(c.cold_start_for)}`, "
                    f"`keep_firing_for: {duration(c.cold_start_keep_firing_for)}`."
                ),
            ),
        ),
        Alert(
            name="SwitchgearTargetDown",
            group="switchgear-runtime",
            expr=f"up{{{job}}} == 0",
            severity="warning",
            summary="Prometheus cannot scrape a switchgear target.",
            description=(
                "{{ $labels.instance }} of job {{ $labels.job }} has failed every scrape "
                f"for {duration(c.target_down_for)}."
            ),
            for_=c.target_down_for,
            keep_firing_for=0,
            condition=f"`up{{{job}}} == 0` for {duration(c.target_down_for)}",
            runbook=Runbook(
                meaning=(
                    "Scrapes of the `/metrics` endpoint fail: the process is down, the port "
                    "or path changed, `endpoint_auth` rejects Prometheus, or rendering takes "
                    "longer than the scrape timeout."
                ),
                impact=(
                    "Every other switchgear alert is blind for this instance; if the process "
                    "is down, so is the service."
                ),
                diagnosis=(
                    ("Which targets are down", f"up{{{job}}} == 0"),
                    ("Scrape duration against the timeout", f"scrape_duration_seconds{{{job}}}"),
                ),
                mitigation=(
                    "Check the process and its logs; check the scrape error on Prometheus' "
                    "Targets page (401 means `endpoint_auth` needs the scrape config's "
                    "bearer token).",
                ),
                tuning=(
                    f"`for: {duration(c.target_down_for)}` rides out a restart. The job name "
                    f"is `{c.job}`; set `Config.job` to yours and regenerate."
                ),
            ),
        ),
        Alert(
            name="SwitchgearMetricsAbsent",
            group="switchgear-runtime",
            expr=(
                f"absent(switchgear_memory_used_bytes{{{job}}})\n"
                f"unless on (job)\n(up{{{job}}} == 0)"
            ),
            severity="warning",
            summary="No switchgear metrics are being collected.",
            description=(
                "No switchgear_* series from job {{ $labels.job }} for "
                f"{duration(c.metrics_absent_for)}: the targets are gone from service "
                "discovery or no longer expose switchgear metrics."
            ),
            for_=c.metrics_absent_for,
            keep_firing_for=0,
            condition=(
                f"`switchgear_memory_used_bytes{{{job}}}` (exported by every switchgear "
                f"process) absent for {duration(c.metrics_absent_for)}, unless a target "
                "of the job is down (SwitchgearTargetDown covers that)"
            ),
            runbook=Runbook(
                meaning=(
                    "Prometheus has no switchgear series for the job at all: the targets "
                    "disappeared from service discovery, the job was renamed, or the app's "
                    "`/metrics` no longer includes switchgear (a different registry, the "
                    "middleware removed, `PROMETHEUS_MULTIPROC_DIR` misconfigured)."
                ),
                impact="Every switchgear alert and dashboard is silently empty.",
                diagnosis=(
                    ("Is the job scraped at all?", f"up{{{job}}}"),
                    (
                        "Which switchgear series exist, under any job",
                        'count by (job) ({__name__=~"switchgear_.+"})',
                    ),
                ),
                mitigation=(
                    "Restore the scrape config or service discovery; make sure the app "
                    "serves switchgear's registry on the scraped path.",
                ),
                tuning=(
                    f"`for: {duration(c.metrics_absent_for)}` outlasts a deploy. It keys on "
                    "the memory gauge because every process with switchgear `Metrics` "
                    "exports it, even before the first call."
                ),
            ),
        ),
    ]


def alert_names(config: Config = DEFAULT) -> list[str]:
    return [a.name for a in alerts(config)]


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
    by_group: dict[str, list[Yaml]] = {}
    for alert in alerts(config):
        rules = by_group.get(alert.group)
        if rules is None:
            rules = by_group[alert.group] = [r.to_yaml() for r in placement.get(alert.group, [])]
        rules.append(alert.to_yaml(config))
    return [{"name": name, "rules": rules} for name, rules in by_group.items()]


HEADER = """\
Prometheus alerting and recording rules for switchgear.
Generated by `python -m tools.observability` from tools/observability/ - do not edit.
Thresholds and windows: docs/runbooks.md. Check: promtool check rules <this file>."""


def render_rules(config: Config = DEFAULT) -> str:
    return dump({"groups": rule_groups(config)}, header=HEADER)

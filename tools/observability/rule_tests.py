"""promtool unit tests for every alert, written as data.

Each alert gets one file ``alerts/tests/<alert>.yaml`` with cases that show it

* fires when it should (``fires``) and not one evaluation earlier (``before``),
* stays firing for ``keep_firing_for`` after recovery (``kept``), then resolves
  (``resolved``),
* stays quiet on zero traffic and on a short spike (``quiet``).

Expected annotations are rendered from the alert's own templates
(:mod:`tools.observability.templates`), so a wording change needs no test edit while a
wrong label or value still fails. ``alerts/tests/recording_rules.yaml`` checks the ratio
recording rules' values, including "no sample" on zero traffic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .config import DEFAULT, MINUTE, Config
from .promql import duration
from .rules import Alert, alerts, error_ratio_record, rejected_ratio_record, slow_ratio_record
from .templates import render
from .yamlout import Yaml, dump

CheckKind = Literal["fires", "before", "kept", "resolved", "quiet"]
CaseKind = Literal["fires", "zero_traffic", "short_spike", "other"]

JOB = DEFAULT.job
INSTANCE = "app-1:8000"
NAME = "payments"
POOL = "engines"


# --- series value helpers (one sample per input interval) ---------------------------------


def hold(value: float, samples: int) -> str:
    """``samples`` samples of ``value``."""
    text = _num(value)
    return text if samples == 1 else f"{text}x{samples - 1}"


def explicit(values: Iterable[float | None]) -> str:
    """One sample per value; ``None`` is a missing sample (``_``)."""
    return " ".join("_" if v is None else _num(v) for v in values)


def counter(*segments: tuple[float, int]) -> str:
    """A counter starting at 0; each ``(increment, samples)`` adds ``increment`` per sample."""
    parts = ["0"]
    current = 0.0
    for inc, samples in segments:
        if inc == 0:
            parts.append(hold(current, samples))
        else:
            first = current + inc
            parts.append(
                _num(first) if samples == 1 else f"{_num(first)}+{_num(inc)}x{samples - 1}"
            )
        current += inc * samples
    return " ".join(parts)


def events(times: Iterable[int], samples: int) -> str:
    """A counter over ``samples`` samples (t = 0 ... samples - 1) counting events at ``times``."""
    at = sorted(times)
    return explicit(sum(1 for t in at if t <= i) for i in range(samples))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def series(metric: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def sg(metric: str, **labels: str) -> str:
    """A series of the test job and instance."""
    return series(metric, job=JOB, instance=INSTANCE, **labels)


# --- the test model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Firing:
    labels: Mapping[str, str]
    value: float | None = None  # $value at the last evaluation the condition held


@dataclass(frozen=True)
class Check:
    minute: int
    kind: CheckKind
    firing: tuple[Firing, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Case:
    name: str
    kind: CaseKind
    series: Mapping[str, str]
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class AlertTests:
    alert: str
    cases: tuple[Case, ...]
    interval: int = MINUTE  # input series interval and evaluation interval, seconds

    @property
    def filename(self) -> str:
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", self.alert.removeprefix("Switchgear")).lower()
        return f"{snake}.yaml"


@dataclass(frozen=True)
class ExprTest:
    name: str
    series: Mapping[str, str]
    minute: int
    expr: str
    samples: tuple[tuple[str, float], ...] = field(default=())


# label sets of the alerts' outputs
BREAKER = {"job": JOB, "instance": INSTANCE, "name": NAME}
SLI = {"job": JOB, "name": NAME}
POOLS = {"job": JOB, "instance": INSTANCE, "pool": POOL}
TARGET = {"job": JOB, "instance": INSTANCE}


def _fires(
    minute: int, labels: Mapping[str, str], value: float | None = None, note: str = ""
) -> Check:
    return Check(minute, "fires", (Firing(labels, value),), note)


def _kept(minute: int, labels: Mapping[str, str], value: float | None = None) -> Check:
    return Check(minute, "kept", (Firing(labels, value),), "condition false, keep_firing_for")


def _before(minute: int) -> Check:
    return Check(minute, "before", (), "one evaluation before for: elapses")


def _resolved(minute: int) -> Check:
    return Check(minute, "resolved", (), "resolved after recovery")


def _quiet(*minutes: int) -> tuple[Check, ...]:
    return tuple(Check(m, "quiet") for m in minutes)


def _state_series(
    closed: list[int], open_: list[int], half_open: list[int], forced: list[int] | None = None
) -> dict[str, str]:
    n = len(closed)
    return {
        sg("switchgear_circuit_state", name=NAME, state="closed"): explicit(closed),
        sg("switchgear_circuit_state", name=NAME, state="open"): explicit(open_),
        sg("switchgear_circuit_state", name=NAME, state="half_open"): explicit(half_open),
        sg("switchgear_circuit_state", name=NAME, state="forced_open"): explicit(forced or [0] * n),
        sg("switchgear_circuit_state", name=NAME, state="disabled"): explicit([0] * n),
    }


def _breaker_down(total: int, down_from: int, down_until: int) -> dict[str, str]:
    """Closed, then open/half-open cycling on [down_from, down_until], then closed again."""
    closed, open_, half = [], [], []
    for t in range(total):
        if down_from <= t <= down_until:
            is_open = (t - down_from) % 3 != 2  # open, open, half_open, ...
            closed.append(0)
            open_.append(1 if is_open else 0)
            half.append(0 if is_open else 1)
        else:
            closed.append(1)
            open_.append(0)
            half.append(0)
    return _state_series(closed, open_, half)


def _requests(success: str, error: str | None = None) -> dict[str, str]:
    out = {sg("switchgear_requests_total", name=NAME, outcome="success"): success}
    if error is not None:
        out[sg("switchgear_requests_total", name=NAME, outcome="error")] = error
    return out


def _latency(count: str, fast: str) -> dict[str, str]:
    name = "switchgear_request_duration_seconds"
    return {
        sg(f"{name}_count", name=NAME): count,
        sg(f"{name}_bucket", name=NAME, le="0.5"): fast,
        sg(f"{name}_bucket", name=NAME, le="+Inf"): count,
    }


def _pool_wait(le025: str, le05: str, le1: str, total: str) -> dict[str, str]:
    name = "switchgear_pool_wait_seconds"
    return {
        sg(f"{name}_bucket", pool=POOL, le="0.25"): le025,
        sg(f"{name}_bucket", pool=POOL, le="0.5"): le05,
        sg(f"{name}_bucket", pool=POOL, le="1.0"): le1,
        sg(f"{name}_bucket", pool=POOL, le="+Inf"): total,
        sg(f"{name}_count", pool=POOL): total,
    }


def alert_tests() -> list[AlertTests]:
    """The cases, for the default :class:`Config` (the times follow its windows)."""
    half_hour = 30 * MINUTE
    flat = counter((0, 500))
    return [
        AlertTests(
            "SwitchgearCircuitBreakerOpen",
            (
                Case(
                    "open/half-open from 5m to 20m, closed again at 21m",
                    "fires",
                    _breaker_down(41, 5, 20),
                    (
                        _before(9),
                        _fires(10, BREAKER, 1),
                        _fires(20, BREAKER, 1),
                        _kept(22, BREAKER, 1),
                        _resolved(23),
                    ),
                ),
                Case(
                    "open for 3 minutes only",
                    "short_spike",
                    _breaker_down(41, 5, 7),
                    _quiet(7, 9, 10, 12),
                ),
                Case(
                    "idle breaker stays closed",
                    "zero_traffic",
                    _breaker_down(41, 99, 99),
                    _quiet(10, 40),
                ),
                Case(
                    "forced_open is an operator's decision, not an alert",
                    "other",
                    _state_series([1] * 5 + [0] * 36, [0] * 41, [0] * 41, [0] * 5 + [1] * 36),
                    _quiet(10, 40),
                ),
            ),
        ),
        AlertTests(
            "SwitchgearCircuitBreakerNotRecovering",
            (
                Case(
                    "never closed from 5m to 54m",
                    "fires",
                    _breaker_down(65, 5, 54),
                    (_before(34), _fires(35, BREAKER, 0), _fires(54, BREAKER, 0), _resolved(55)),
                ),
                Case(
                    "down for 20 minutes, then recovers",
                    "short_spike",
                    _breaker_down(65, 5, 24),
                    _quiet(24, 35, 40, 54),
                ),
                Case(
                    "idle breaker stays closed",
                    "zero_traffic",
                    _breaker_down(65, 99, 99),
                    _quiet(35, 64),
                ),
                Case(
                    "forced_open for 50 minutes",
                    "other",
                    _state_series([1] * 5 + [0] * 60, [0] * 65, [0] * 65, [0] * 5 + [1] * 60),
                    _quiet(40, 64),
                ),
            ),
        ),
        AlertTests(
            "SwitchgearCircuitBreakerFlapping",
            (
                Case(
                    "trips at 5m, 10m and 15m",
                    "fires",
                    {
                        sg(
                            "switchgear_circuit_transitions_total",
                            name=NAME,
                            from_state="closed",
                            to_state="open",
                        ): events([5, 10, 15], 60),
                        sg(
                            "switchgear_circuit_transitions_total",
                            name=NAME,
                            from_state="half_open",
                            to_state="closed",
                        ): events([8, 13, 18], 60),
                    },
                    (
                        _before(14),
                        _fires(15, BREAKER, 3),
                        _fires(34, BREAKER, 3),
                        _kept(44, BREAKER, 3),
                        _resolved(45),
                    ),
                ),
                Case(
                    "the counter series appears with the first trip (no zero sample before)",
                    "fires",
                    {
                        sg(
                            "switchgear_circuit_transitions_total",
                            name=NAME,
                            from_state="closed",
                            to_state="open",
                        ): explicit([None] * 5 + [1] * 5 + [2] * 5 + [3] * 45),
                    },
                    (
                        _before(14),
                        _fires(15, BREAKER, 3),
                        _fires(34, BREAKER, 3),
                        _kept(44, BREAKER, 3),
                        _resolved(45),
                    ),
                ),
                Case(
                    "four pre-fork workers trip together in one outage: one trip, not four",
                    "other",
                    {
                        sg(
                            "switchgear_circuit_transitions_total",
                            name=NAME,
                            from_state="closed",
                            to_state="open",
                        ): explicit([0] * 5 + [4] * 55),
                    },
                    _quiet(5, 6, 20, 34),
                ),
                Case(
                    "three fleet trips of four workers each",
                    "fires",
                    {
                        sg(
                            "switchgear_circuit_transitions_total",
                            name=NAME,
                            from_state="closed",
                            to_state="open",
                        ): explicit([0] * 5 + [4] * 5 + [8] * 5 + [12] * 45),
                    },
                    (
                        _before(14),
                        _fires(15, BREAKER, 3),
                        _fires(34, BREAKER, 3),
                        _kept(44, BREAKER, 3),
                        _resolved(45),
                    ),
                ),
                Case(
                    "stuck open: half_open -> open every minute is not flapping",
                    "other",
                    {
                        sg(
                            "switchgear_circuit_transitions_total",
                            name=NAME,
                            from_state="closed",
                            to_state="open",
                        ): events([5], 60),
                        sg(
                            "switchgear_circuit_transitions_total",
                            name=NAME,
                            from_state="half_open",
                            to_state="open",
                        ): events(range(6, 50), 60),
                    },
                    _quiet(15, 30, 50),
                ),
                Case(
                    "two trips only",
                    "short_spike",
                    {
                        sg(
                            "switchgear_circuit_transitions_total",
                            name=NAME,
                            from_state="closed",
                            to_state="open",
                        ): events([5, 6], 60)
                    },
                    _quiet(6, 10, 30),
                ),
                Case(
                    "no transitions",
                    "zero_traffic",
                    {
                        sg(
                            "switchgear_circuit_transitions_total",
                            name=NAME,
                            from_state="closed",
                            to_state="open",
                        ): hold(0, 60)
                    },
                    _quiet(15, 59),
                ),
            ),
        ),
        AlertTests(
            "SwitchgearHighRejectionRatio",
            (
                Case(
                    "2 of 12 calls a minute rejected from 11m to 30m",
                    "fires",
                    {
                        **_requests(counter((10, 60))),
                        sg("switchgear_rejected_total", name=NAME, reason="circuit_open"): counter(
                            (0, 10), (2, 20), (0, 30)
                        ),
                    },
                    (
                        _before(16),
                        _fires(17, SLI, 10 / 60),
                        _fires(33, SLI, 4 / 54),
                        _kept(38, SLI, 4 / 54),
                        _resolved(39),
                    ),
                ),
                Case(
                    "every call rejected, none executed (no requests series at all)",
                    "fires",
                    {
                        sg("switchgear_rejected_total", name=NAME, reason="pool_full"): counter(
                            (20, 30)
                        )
                    },
                    (_before(6), _fires(7, SLI, 1.0)),
                ),
                Case(
                    "20 rejections in one minute",
                    "short_spike",
                    {
                        **_requests(counter((10, 60))),
                        sg("switchgear_rejected_total", name=NAME, reason="circuit_open"): counter(
                            (0, 10), (20, 1), (0, 49)
                        ),
                    },
                    _quiet(11, 15, 16, 20),
                ),
                Case(
                    "half the calls rejected, but only 2 calls a minute",
                    "other",
                    {
                        **_requests(counter((1, 60))),
                        sg("switchgear_rejected_total", name=NAME, reason="circuit_open"): counter(
                            (1, 60)
                        ),
                    },
                    _quiet(10, 30),
                ),
                Case(
                    "no traffic",
                    "zero_traffic",
                    {
                        **_requests(hold(0, 60)),
                        sg("switchgear_rejected_total", name=NAME, reason="circuit_open"): hold(
                            0, 60
                        ),
                    },
                    _quiet(10, 30),
                ),
            ),
        ),
        AlertTests(
            "SwitchgearErrorBudgetBurnFast",
            (
                Case(
                    "9 % errors from 401m to 420m: 1h and 5m windows",
                    "fires",
                    _requests(counter((100, 500)), counter((0, 400), (10, 20), (0, 80))),
                    (
                        _before(410),
                        _fires(411, SLI, 110 / 6110),
                        _fires(424, SLI, 200 / 6200),
                        _kept(429, SLI, 200 / 6200),
                        _resolved(430),
                    ),
                ),
                Case(
                    "1 % errors from a fresh start: only the 6h and 30m windows (6x) hold",
                    "fires",
                    _requests(counter((99, 30)), counter((1, 30))),
                    (_before(2), _fires(3, SLI, 0.01), _fires(20, SLI, 0.01)),
                ),
                Case(
                    "50 errors in one minute: the 5m window is hot, the 1h window is not",
                    "short_spike",
                    _requests(counter((100, 500)), counter((0, 400), (50, 1), (0, 99))),
                    _quiet(401, 403, 405, 407, 410, 431),
                ),
                Case("no traffic", "zero_traffic", _requests(flat, flat), _quiet(10, 70)),
            ),
        ),
        AlertTests(
            "SwitchgearErrorBudgetBurnSlow",
            (
                Case(
                    "0.5 % errors for 17h after 3 clean days",
                    "fires",
                    _requests(counter((3000, 200)), counter((0, 144), (15, 34), (0, 22))),
                    (
                        _before(5190),
                        _fires(5220, SLI, 450 / 144450),
                        _kept(5640, SLI, 510 / 432510),
                        _resolved(5670),
                    ),
                ),
                Case(
                    "300 errors (10 % of the calls) in one 30m step",
                    "short_spike",
                    _requests(counter((3000, 200)), counter((0, 144), (300, 1), (0, 55))),
                    _quiet(4350, 4380, 4440, 4500, 4620),
                ),
                Case(
                    "no traffic",
                    "zero_traffic",
                    _requests(counter((0, 200)), counter((0, 200))),
                    _quiet(60, 300),
                ),
            ),
            interval=half_hour,
        ),
        AlertTests(
            "SwitchgearLatencyBudgetBurnFast",
            (
                Case(
                    "20 % of calls over 0.5 s from 401m to 460m",
                    "fires",
                    _latency(counter((100, 500)), counter((100, 400), (80, 60), (100, 40))),
                    (
                        _before(445),
                        _fires(446, SLI, 920 / 6000),
                        _kept(466, SLI, 1180 / 6000),
                        _resolved(467),
                    ),
                ),
                Case(
                    "every call slow for one minute",
                    "short_spike",
                    _latency(counter((100, 500)), counter((100, 400), (0, 1), (100, 99))),
                    _quiet(401, 403, 405, 407, 410, 431),
                ),
                Case("no traffic", "zero_traffic", _latency(flat, flat), _quiet(10, 70)),
            ),
        ),
        AlertTests(
            "SwitchgearLatencyBudgetBurnSlow",
            (
                Case(
                    "5 % of calls over 0.5 s for 17h after 3 good days",
                    "fires",
                    _latency(counter((3000, 200)), counter((3000, 144), (2850, 34), (3000, 22))),
                    (
                        _before(5190),
                        _fires(5220, SLI, 4500 / 144000),
                        _kept(5640, SLI, 5100 / 432000),
                        _resolved(5670),
                    ),
                ),
                Case(
                    "every call slow for one 30m step",
                    "short_spike",
                    _latency(counter((3000, 200)), counter((3000, 144), (0, 1), (3000, 55))),
                    _quiet(4350, 4380, 4440, 4500, 4620),
                ),
                Case(
                    "no traffic",
                    "zero_traffic",
                    _latency(counter((0, 200)), counter((0, 200))),
                    _quiet(60, 300),
                ),
            ),
            interval=half_hour,
        ),
        AlertTests(
            "SwitchgearPoolSaturated",
            (
                Case(
                    "at max_size with callers waiting (flickering) from 5m to 24m",
                    "fires",
                    {
                        sg("switchgear_pool_in_use", pool=POOL): " ".join(
                            [hold(4, 5), hold(16, 20), hold(4, 20)]
                        ),
                        sg("switchgear_pool_max_size", pool=POOL): hold(16, 45),
                        sg("switchgear_pool_waiting", pool=POOL): explicit(
                            [0] * 5 + [3 if i % 2 == 0 else 0 for i in range(20)] + [0] * 20
                        ),
                    },
                    (
                        _before(9),
                        _fires(10, POOLS, 16),
                        _fires(24, POOLS, 16),
                        _kept(29, POOLS, 16),
                        _resolved(30),
                    ),
                ),
                Case(
                    "saturated for 3 minutes",
                    "short_spike",
                    {
                        sg("switchgear_pool_in_use", pool=POOL): " ".join(
                            [hold(4, 5), hold(16, 3), hold(4, 37)]
                        ),
                        sg("switchgear_pool_max_size", pool=POOL): hold(16, 45),
                        sg("switchgear_pool_waiting", pool=POOL): " ".join(
                            [hold(0, 5), hold(2, 3), hold(0, 37)]
                        ),
                    },
                    _quiet(9, 10, 12),
                ),
                Case(
                    "idle pool",
                    "zero_traffic",
                    {
                        sg("switchgear_pool_in_use", pool=POOL): hold(0, 45),
                        sg("switchgear_pool_max_size", pool=POOL): hold(16, 45),
                        sg("switchgear_pool_waiting", pool=POOL): hold(0, 45),
                    },
                    _quiet(10, 40),
                ),
                Case(
                    "at max_size but nobody waiting",
                    "other",
                    {
                        sg("switchgear_pool_in_use", pool=POOL): hold(16, 45),
                        sg("switchgear_pool_max_size", pool=POOL): hold(16, 45),
                        sg("switchgear_pool_waiting", pool=POOL): hold(0, 45),
                    },
                    _quiet(10, 40),
                ),
            ),
        ),
        AlertTests(
            "SwitchgearPoolWaitHigh",
            (
                Case(
                    "10 % of acquires wait 0.5-1 s from 11m to 30m",
                    "fires",
                    _pool_wait(
                        counter((60, 10), (54, 20), (60, 30)),
                        counter((60, 10), (54, 20), (60, 30)),
                        counter((60, 60)),
                        counter((60, 60)),
                    ),
                    (
                        _before(20),
                        _fires(21, POOLS, 0.95),
                        _fires(34, POOLS, 0.75),
                        _kept(39, POOLS, 0.75),
                        _resolved(40),
                    ),
                ),
                Case(
                    "one slow minute",
                    "short_spike",
                    _pool_wait(
                        counter((60, 10), (54, 1), (60, 49)),
                        counter((60, 10), (54, 1), (60, 49)),
                        counter((60, 60)),
                        counter((60, 60)),
                    ),
                    _quiet(15, 16, 21),
                ),
                Case(
                    "one acquire a minute, every one slow",
                    "other",
                    _pool_wait(
                        counter((0, 60)), counter((0, 60)), counter((1, 60)), counter((1, 60))
                    ),
                    _quiet(15, 30),
                ),
                Case(
                    "no acquires",
                    "zero_traffic",
                    _pool_wait(hold(0, 60), hold(0, 60), hold(0, 60), hold(0, 60)),
                    _quiet(15, 30),
                ),
            ),
        ),
        AlertTests(
            "SwitchgearPoolThrashing",
            (
                Case(
                    "up at odd minutes 1-19, down at even minutes 2-20",
                    "fires",
                    {
                        sg("switchgear_pool_scale_events_total", pool=POOL, direction="up"): events(
                            range(1, 20, 2), 60
                        ),
                        sg(
                            "switchgear_pool_scale_events_total", pool=POOL, direction="down"
                        ): events(range(2, 21, 2), 60),
                    },
                    (
                        _before(11),
                        _fires(12, POOLS, 6),
                        _fires(38, POOLS, 6),
                        _kept(53, POOLS, 6),
                        _resolved(54),
                    ),
                ),
                Case(
                    "scaling up every minute under a ramp, never down",
                    "short_spike",
                    {
                        sg("switchgear_pool_scale_events_total", pool=POOL, direction="up"): events(
                            range(1, 11), 60
                        ),
                        sg("switchgear_pool_scale_events_total", pool=POOL, direction="down"): hold(
                            0, 60
                        ),
                    },
                    _quiet(10, 20),
                ),
                Case(
                    "no scaling",
                    "zero_traffic",
                    {
                        sg("switchgear_pool_scale_events_total", pool=POOL, direction="up"): hold(
                            0, 60
                        ),
                        sg("switchgear_pool_scale_events_total", pool=POOL, direction="down"): hold(
                            0, 60
                        ),
                    },
                    _quiet(12, 50),
                ),
            ),
        ),
        AlertTests(
            "SwitchgearMemoryNearLimit",
            (
                Case(
                    "95 % of the limit from 5m to 19m",
                    "fires",
                    {
                        sg("switchgear_memory_used_bytes"): " ".join(
                            [hold(5e8, 5), hold(9.5e8, 15), hold(5e8, 10)]
                        ),
                        sg("switchgear_memory_limit_bytes"): hold(1e9, 30),
                    },
                    (_before(14), _fires(15, TARGET, 0.95), _kept(24, TARGET, 0.95), _resolved(25)),
                ),
                Case(
                    "95 % for 5 minutes",
                    "short_spike",
                    {
                        sg("switchgear_memory_used_bytes"): " ".join(
                            [hold(5e8, 5), hold(9.5e8, 5), hold(5e8, 20)]
                        ),
                        sg("switchgear_memory_limit_bytes"): hold(1e9, 30),
                    },
                    _quiet(14, 15),
                ),
                Case(
                    "no limit known: the limit series is absent",
                    "zero_traffic",
                    {sg("switchgear_memory_used_bytes"): hold(9.5e8, 30)},
                    _quiet(15, 29),
                ),
                Case(
                    "a limit of 0 (no limit) does not divide into +Inf",
                    "other",
                    {
                        sg("switchgear_memory_used_bytes"): hold(9.5e8, 30),
                        sg("switchgear_memory_limit_bytes"): hold(0, 30),
                    },
                    _quiet(15, 29),
                ),
            ),
        ),
        AlertTests(
            "SwitchgearColdStartStorm",
            (
                Case(
                    "20 of 100 calls a minute cold from 21m to 40m",
                    "fires",
                    {
                        **_requests(counter((100, 60))),
                        sg("switchgear_cold_starts_total", name=NAME): counter(
                            (0, 20), (20, 20), (0, 20)
                        ),
                    },
                    (_before(32), _fires(33, SLI, 260), _kept(57, SLI, 160), _resolved(58)),
                ),
                Case(
                    "a restart warms 60 resources in one minute",
                    "short_spike",
                    {
                        **_requests(counter((100, 60))),
                        sg("switchgear_cold_starts_total", name=NAME): counter(
                            (0, 20), (60, 1), (0, 39)
                        ),
                    },
                    _quiet(21, 26, 30, 40),
                ),
                Case(
                    "no traffic",
                    "zero_traffic",
                    {
                        **_requests(hold(0, 60)),
                        sg("switchgear_cold_starts_total", name=NAME): hold(0, 60),
                    },
                    _quiet(20, 40),
                ),
            ),
        ),
        AlertTests(
            "SwitchgearTargetDown",
            (
                Case(
                    "scrapes fail from 5m to 14m",
                    "fires",
                    {sg("up"): " ".join([hold(1, 5), hold(0, 10), hold(1, 10)])},
                    (_before(9), _fires(10, TARGET), _fires(14, TARGET), _resolved(15)),
                ),
                Case(
                    "a 3-minute restart",
                    "short_spike",
                    {sg("up"): " ".join([hold(1, 5), hold(0, 3), hold(1, 17)])},
                    _quiet(8, 10, 12),
                ),
                Case("an idle app is up", "zero_traffic", {sg("up"): hold(1, 25)}, _quiet(10, 24)),
            ),
        ),
        AlertTests(
            "SwitchgearMetricsAbsent",
            (
                Case(
                    "switchgear series gone from 11m to 29m while the target is up",
                    "fires",
                    {
                        sg("up"): hold(1, 50),
                        sg("switchgear_memory_used_bytes"): "5e8x10 stale _x18 5e8x19",
                    },
                    (
                        _before(20),
                        _fires(21, {"job": JOB}),
                        _fires(29, {"job": JOB}),
                        _resolved(30),
                    ),
                ),
                Case(
                    "target down: SwitchgearTargetDown reports it instead",
                    "other",
                    {
                        sg("up"): " ".join([hold(1, 11), hold(0, 39)]),
                        sg("switchgear_memory_used_bytes"): "5e8x10 stale",
                    },
                    _quiet(21, 30, 49),
                ),
                Case(
                    "series gone for 5 minutes",
                    "short_spike",
                    {
                        sg("up"): hold(1, 50),
                        sg("switchgear_memory_used_bytes"): "5e8x10 stale _x4 5e8x33",
                    },
                    _quiet(15, 21, 30),
                ),
                Case(
                    "an idle app still exports its memory gauge",
                    "zero_traffic",
                    {sg("up"): hold(1, 50), sg("switchgear_memory_used_bytes"): hold(5e8, 50)},
                    _quiet(21, 49),
                ),
            ),
        ),
    ]


def expr_tests(config: Config = DEFAULT) -> list[ExprTest]:
    """Values of the ratio recording rules (exact binary fractions, so promtool can compare)."""
    w = config.rejection_window
    err5m = error_ratio_record(5 * MINUTE)
    slow5m = slow_ratio_record(5 * MINUTE)
    rej = rejected_ratio_record(w)
    return [
        ExprTest(
            "error ratio: no traffic gives no sample, not NaN",
            _requests(hold(0, 20), hold(0, 20)),
            10,
            err5m,
        ),
        ExprTest(
            "error ratio: a quarter of the calls fail",
            _requests(counter((45, 20)), counter((15, 20))),
            10,
            err5m,
            ((_record_labels(err5m, SLI), 0.25),),
        ),
        ExprTest(
            "error ratio: no error series yet reads 0, not no data",
            _requests(counter((60, 20))),
            10,
            err5m,
            ((_record_labels(err5m, SLI), 0.0),),
        ),
        ExprTest(
            "slow ratio: a quarter of the calls over the threshold",
            _latency(counter((60, 20)), counter((45, 20))),
            10,
            slow5m,
            ((_record_labels(slow5m, SLI), 0.25),),
        ),
        ExprTest(
            "slow ratio: no traffic gives no sample", _latency(hold(0, 20), hold(0, 20)), 10, slow5m
        ),
        ExprTest(
            "rejected ratio: rejected / (executed + rejected)",
            {
                **_requests(counter((45, 20))),
                sg("switchgear_rejected_total", name=NAME, reason="pool_timeout"): counter(
                    (15, 20)
                ),
            },
            10,
            rej,
            ((_record_labels(rej, SLI), 0.25),),
        ),
        ExprTest(
            "rejected ratio: all rejected, no requests series",
            {sg("switchgear_rejected_total", name=NAME, reason="circuit_open"): counter((5, 20))},
            10,
            rej,
            ((_record_labels(rej, SLI), 1.0),),
        ),
        ExprTest(
            "rejected ratio: no traffic gives no sample",
            {
                **_requests(hold(0, 20)),
                sg("switchgear_rejected_total", name=NAME, reason="circuit_open"): hold(0, 20),
            },
            10,
            rej,
        ),
    ]


def _record_labels(record: str, labels: Mapping[str, str]) -> str:
    return series(record, **labels)


# --- rendering ------------------------------------------------------------------------------

RULES_FROM_TESTS = "../switchgear-alerts.yaml"

HEADER = """\
promtool unit tests for {what}.
Generated by `python -m tools.observability` from tools/observability/rule_tests.py - do not edit.
Run: promtool test rules alerts/tests/*.yaml"""


def _exp_alert(alert: Alert, firing: Firing, config: Config) -> dict[str, Yaml]:
    labels: dict[str, Yaml] = {**firing.labels, "severity": alert.severity}
    annotations: dict[str, Yaml] = {
        "summary": render(alert.summary, firing.labels, firing.value),
        "description": render(alert.description, firing.labels, firing.value),
        "runbook_url": alert.runbook_url(config),
    }
    return {"exp_labels": labels, "exp_annotations": annotations}


def render_alert_tests(tests: AlertTests, config: Config = DEFAULT) -> str:
    by_name = {a.name: a for a in alerts(config)}
    alert = by_name[tests.alert]
    cases: list[Yaml] = []
    for case in tests.cases:
        checks: list[Yaml] = []
        for check in case.checks:
            entry: dict[str, Yaml] = {
                "eval_time": duration(check.minute * MINUTE) if check.minute else "0m",
                "alertname": alert.name,
            }
            entry["exp_alerts"] = [_exp_alert(alert, f, config) for f in check.firing]
            checks.append(entry)
        cases.append(
            {
                "name": f"{case.kind}: {case.name}",
                "interval": duration(tests.interval),
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": checks,
            }
        )
    doc: dict[str, Yaml] = {
        "rule_files": [RULES_FROM_TESTS],
        "evaluation_interval": duration(tests.interval),
        "tests": cases,
    }
    return dump(doc, header=HEADER.format(what=alert.name))


def render_expr_tests(config: Config = DEFAULT) -> str:
    cases: list[Yaml] = []
    for t in expr_tests(config):
        cases.append(
            {
                "name": t.name,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in t.series.items()],
                "promql_expr_test": [
                    {
                        "expr": t.expr,
                        "eval_time": duration(t.minute * MINUTE),
                        "exp_samples": [{"labels": lbl, "value": v} for lbl, v in t.samples],
                    }
                ],
            }
        )
    doc: dict[str, Yaml] = {
        "rule_files": [RULES_FROM_TESTS],
        "evaluation_interval": "1m",
        "tests": cases,
    }
    return dump(doc, header=HEADER.format(what="the ratio recording rules"))


def unit_test_files(config: Config = DEFAULT) -> dict[str, str]:
    """``alerts/tests/<file>`` -> content."""
    files = {t.filename: render_alert_tests(t, config) for t in alert_tests()}
    files["recording_rules.yaml"] = render_expr_tests(config)
    return files

"""Every transition says why: one test per reason, driven with a fake clock, checking the
event's reason and evidence exactly, the log record, the listeners and the trip metric."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear import BreakerState, TransitionEvent
from switchgear.testing import FakeClock

OPEN, CLOSED, HALF_OPEN = BreakerState.OPEN, BreakerState.CLOSED, BreakerState.HALF_OPEN


class Down(ConnectionError):
    """The dependency's failure."""


def down() -> None:
    raise Down("payments-db:5432 refused the connection")


def ok() -> str:
    return "ok"


def make(clock: FakeClock, **options: Any) -> tuple[sg.CircuitBreaker, list[TransitionEvent]]:
    events: list[TransitionEvent] = []
    breaker = sg.CircuitBreaker("events", clock=clock, on_state_change=events.append, **options)
    return breaker, events


def fail(breaker: sg.CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Down):
            breaker.call(down)


def test_consecutive_failures_with_the_last_failure(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker, events = make(clock, failure_threshold=3)
    with caplog.at_level(logging.INFO, logger="switchgear.breaker"):
        fail(breaker, 3)
    (event,) = events
    assert (event.old, event.new, event.reason) == (CLOSED, OPEN, "consecutive_failures")
    assert dict(event.evidence) == {"failures": 3, "threshold": 3}
    assert str(event.error_type).endswith("test_transition_events.Down")
    assert event.error_message == "payments-db:5432 refused the connection"
    assert event.name == "events"
    assert event.at == clock()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.switchgear_reason == "consecutive_failures"  # type: ignore[attr-defined]
    assert record.switchgear_evidence == {"failures": 3, "threshold": 3}  # type: ignore[attr-defined]
    assert record.switchgear_error_message == event.error_message  # type: ignore[attr-defined]
    assert "consecutive_failures: failures=3, threshold=3" in record.getMessage()
    # The rejection carries the trip, not the failed call's exception (no frames kept).
    with pytest.raises(sg.CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.trip is event
    assert info.value.__cause__ is None
    assert "consecutive_failures; last failure" in str(info.value)


def test_failure_rate_and_slow_call_rate_evidence() -> None:
    clock = FakeClock()
    breaker, events = make(
        clock, failure_threshold=100, failure_rate_threshold=0.5, minimum_calls=4, window=60
    )
    for fn in (ok, down, ok, down):
        clock.advance(1)
        try:
            breaker.call(fn)
        except Down:
            pass
    (event,) = events
    assert event.reason == "failure_rate"
    assert dict(event.evidence) == {
        "rate": 0.5,
        "threshold": 0.5,
        "calls": 4,
        "minimum_calls": 4,
        "window": 60.0,
    }

    slow, slow_events = make(
        clock,
        failure_threshold=100,
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.75,
        minimum_calls=4,
    )
    for duration in (2.0, 2.0, 0.1, 2.0):
        slow.record_result(True, duration=duration)
    (event,) = slow_events
    assert event.reason == "slow_call_rate"
    assert event.evidence["rate"] == 0.75
    assert event.error_type is None  # no failure at all: only slowness


def test_probe_reasons_open_timeout_trial_failed_trial_hung_and_trials_succeeded() -> None:
    clock = FakeClock()
    breaker, events = make(clock, failure_threshold=1, success_threshold=2, open_timeout=10.0)
    fail(breaker)
    clock.advance(10)
    assert breaker.state is HALF_OPEN
    assert (events[-1].reason, dict(events[-1].evidence)) == (
        "open_timeout_elapsed",
        {"open_timeout": 10.0},
    )
    fail(breaker)  # the trial fails
    assert events[-1].reason == "trial_failed"
    assert events[-1].error_type is not None
    clock.advance(10)
    token = breaker.admit()  # a trial call that never finishes
    assert token is not None
    clock.advance(10)
    assert breaker.state is OPEN  # the trial call hung for open_timeout: a failed trial
    assert events[-1].reason == "trial_hung"
    clock.advance(10)
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok) == breaker.call(ok) == "ok"
    assert breaker.state is CLOSED
    assert (events[-1].reason, dict(events[-1].evidence)) == (
        "trials_succeeded",
        {"successes": 2, "threshold": 2},
    )


def test_manual_changes_and_two_argument_listeners_still_work() -> None:
    clock = FakeClock()
    breaker, events = make(clock)
    seen: list[tuple[BreakerState, BreakerState]] = []
    breaker.add_listener(lambda old, new: seen.append((old, new)))
    breaker.force_open()
    breaker.disable()
    breaker.reset()
    assert [(e.old, e.new, e.reason) for e in events] == [
        (CLOSED, BreakerState.FORCED_OPEN, "manual"),
        (BreakerState.FORCED_OPEN, BreakerState.DISABLED, "manual"),
        (BreakerState.DISABLED, CLOSED, "manual"),
    ]
    assert seen == [(e.old, e.new) for e in events]
    assert [e.reason for e in breaker.transitions()] == ["manual"] * 3


def test_trips_are_counted_by_reason() -> None:
    clock, registry = FakeClock(), CollectorRegistry()
    breaker = sg.CircuitBreaker("trip-reasons", failure_threshold=1, open_timeout=5, clock=clock)
    sg.Metrics("trip-reasons", registry=registry, clock=clock).attach(breaker)
    fail(breaker)
    clock.advance(5)
    fail(breaker)  # trial fails

    def trips(reason: str) -> float:
        labels = {"name": "trip-reasons", "reason": reason}
        return registry.get_sample_value("switchgear_circuit_trips_total", labels) or 0.0

    assert trips("consecutive_failures") == 1
    assert trips("trial_failed") == 1
    assert breaker.transitions()[0].as_dict()["reason"] == "consecutive_failures"


def test_the_log_can_be_silenced(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker, _ = make(clock, failure_threshold=1)
    logging.getLogger("switchgear.breaker").setLevel(logging.ERROR)
    try:
        with caplog.at_level(logging.INFO):
            fail(breaker)
            breaker.reset()
        assert not [r for r in caplog.records if r.name == "switchgear.breaker"]
    finally:
        logging.getLogger("switchgear.breaker").setLevel(logging.NOTSET)

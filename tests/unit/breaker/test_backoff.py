"""Exponential open backoff: the interval grows with each failed trial episode, is capped,
jittered within its bounds, and returns to ``open_timeout`` once the breaker closes."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

import switchgear as sg
from switchgear import BreakerState, TransitionEvent
from switchgear._breaker.backoff import Backoff
from switchgear.testing import FakeClock

OPEN, CLOSED, HALF_OPEN = BreakerState.OPEN, BreakerState.CLOSED, BreakerState.HALF_OPEN


def boom() -> None:
    raise ConnectionError("down")


def ok() -> str:
    return "ok"


def make(clock: FakeClock, **options: Any) -> tuple[sg.CircuitBreaker, list[TransitionEvent]]:
    events: list[TransitionEvent] = []
    options.setdefault("failure_threshold", 1)
    options.setdefault("success_threshold", 1)
    breaker = sg.CircuitBreaker("backoff", clock=clock, on_state_change=events.append, **options)
    return breaker, events


def fail(breaker: sg.CircuitBreaker) -> None:
    with pytest.raises(ConnectionError):
        breaker.call(boom)


def open_for_exactly(breaker: sg.CircuitBreaker, clock: FakeClock, seconds: float) -> None:
    """The breaker is OPEN until ``seconds`` have passed, and HALF_OPEN right then."""
    assert breaker.state is OPEN
    with pytest.raises(sg.CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.retry_after == pytest.approx(seconds)
    clock.advance(seconds - 0.001)
    assert breaker.state is OPEN
    clock.advance(0.001)
    assert breaker.state is HALF_OPEN


def test_each_failed_trial_doubles_the_interval_up_to_the_cap_and_closing_resets_it() -> None:
    clock = FakeClock()
    breaker, events = make(clock, open_timeout=5.0, backoff_factor=2.0, max_open_timeout=30.0)
    fail(breaker)
    open_for_exactly(breaker, clock, 5.0)
    for expected in (10.0, 20.0, 30.0, 30.0):  # 40 would pass the cap
        fail(breaker)  # the trial call fails: reopen, for longer
        assert breaker.current_open_timeout == expected
        open_for_exactly(breaker, clock, expected)
    trips = [e for e in events if e.new is OPEN]
    assert [e.evidence["open_for"] for e in trips] == [5.0, 10.0, 20.0, 30.0, 30.0]
    assert [e.evidence["backoffs"] for e in trips] == [0, 1, 2, 3, 4]
    elapsed = [e for e in events if e.reason == "open_timeout_elapsed"]
    assert [e.evidence["open_timeout"] for e in elapsed] == [5.0, 10.0, 20.0, 30.0, 30.0]
    assert breaker.call(ok) == "ok"  # the trial succeeds: closed, and the backoff forgotten
    assert breaker.state is CLOSED
    assert breaker.current_open_timeout == 5.0
    fail(breaker)
    open_for_exactly(breaker, clock, 5.0)


def test_a_hung_trial_backs_off_too() -> None:
    clock = FakeClock()
    breaker, events = make(clock, open_timeout=5.0, backoff_factor=3.0, max_open_timeout=100.0)
    fail(breaker)
    clock.advance(5.0)
    token = breaker.admit()  # a trial call that never returns
    clock.advance(5.0)  # unfinished open_timeout after admission: reopens, for 15 s
    assert breaker.state is OPEN
    assert events[-1].reason == "trial_hung"
    assert events[-1].evidence == {"open_timeout": 5.0, "open_for": 15.0, "backoffs": 1}
    open_for_exactly(breaker, clock, 15.0)
    breaker.finish(token, 1, 10.0)  # the late result belongs to an earlier episode
    assert breaker.state is HALF_OPEN


def test_manual_reset_forgets_the_backoff_and_a_new_trip_starts_from_the_base() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, open_timeout=2.0, backoff_factor=2.0)
    fail(breaker)
    clock.advance(2.0)
    fail(breaker)
    assert breaker.current_open_timeout == 4.0
    breaker.reset()
    assert breaker.current_open_timeout == 2.0
    fail(breaker)
    open_for_exactly(breaker, clock, 2.0)


def test_default_cap_is_ten_times_open_timeout_and_off_by_default() -> None:
    clock = FakeClock()
    plain, events = make(clock, open_timeout=1.0)
    assert (plain.backoff_factor, plain.max_open_timeout, plain.backoff_jitter) == (1.0, 1.0, 0.0)
    fail(plain)
    for _ in range(3):
        open_for_exactly(plain, clock, 1.0)
        fail(plain)
    assert all("open_for" not in e.evidence for e in events)  # evidence as without backoff
    grown, _ = make(clock, open_timeout=1.0, backoff_factor=10.0)
    assert grown.max_open_timeout == 10.0
    fail(grown)
    for expected in (1.0, 10.0, 10.0):
        open_for_exactly(grown, clock, expected)
        fail(grown)


def test_jitter_shortens_each_interval_by_at_most_its_fraction() -> None:
    clock = FakeClock()
    breaker, events = make(
        clock, open_timeout=10.0, backoff_factor=2.0, max_open_timeout=40.0, backoff_jitter=0.25
    )
    seen: list[tuple[int, float]] = []
    for _ in range(40):
        fail(breaker)  # a trip from CLOSED, then three failed trials
        for _ in range(3):
            clock.advance(breaker.current_open_timeout)
            fail(breaker)
        seen.extend(
            (e.evidence["backoffs"], e.evidence["open_for"]) for e in events[-7:] if e.new is OPEN
        )
        clock.advance(breaker.current_open_timeout)
        assert breaker.call(ok) == "ok"
    for backoffs, interval in seen:
        grown = min(10.0 * 2.0**backoffs, 40.0)
        assert 0.75 * grown < interval <= grown
    assert len({interval for _, interval in seen}) > len(seen) // 2  # drawn, not fixed


def test_the_rule_never_overflows() -> None:
    rule = Backoff(1.0, 2.0, 3600.0)
    assert rule.grown(0) == 1.0
    assert rule.grown(11) == 2048.0
    assert rule.grown(12) == 3600.0
    assert rule.grown(10**6) == 3600.0  # 2.0 ** 10**6 would overflow
    assert rule.interval(3, 0.5) == 4.0
    assert Backoff(1.0).grown(50) == 1.0
    assert not Backoff(1.0).active
    assert Backoff(1.0, jitter=0.1).active
    assert math.isinf(Backoff(1.0).maximum)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"backoff_factor": 0.5}, ValueError, "backoff_factor"),
        ({"backoff_factor": 101}, ValueError, "backoff_factor"),
        ({"backoff_factor": float("nan")}, ValueError, "backoff_factor"),
        ({"backoff_factor": "2"}, TypeError, "backoff_factor"),
        ({"backoff_factor": True}, TypeError, "backoff_factor"),
        ({"backoff_jitter": 1.0}, ValueError, "backoff_jitter"),
        ({"backoff_jitter": -0.1}, ValueError, "backoff_jitter"),
        ({"backoff_jitter": None}, TypeError, "backoff_jitter"),
        ({"max_open_timeout": 1.0, "open_timeout": 2.0}, ValueError, "max_open_timeout"),
        ({"max_open_timeout": "1m"}, TypeError, "max_open_timeout"),
        ({"max_open_timeout": float("inf")}, ValueError, "max_open_timeout"),
    ],
)
def test_bad_backoff_options_name_the_argument(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        sg.CircuitBreaker("bad", **options)


def test_max_open_timeout_takes_a_timedelta() -> None:
    breaker = sg.CircuitBreaker(
        "td", open_timeout=1, backoff_factor=2, max_open_timeout=timedelta(minutes=5)
    )
    assert breaker.max_open_timeout == 300.0
    with pytest.raises(AttributeError):
        breaker.backoff_factor = 3.0

"""switchgear.testing: the public fake clock and the shared-breaker reset."""

from __future__ import annotations

from datetime import timedelta

import pytest

import switchgear as sg
from switchgear.testing import FakeClock, reset_breakers


def test_fake_clock_moves_only_forward_and_only_when_told() -> None:
    clock = FakeClock(start=5)
    assert clock() == 5.0
    clock.advance(1.5)
    clock.advance(timedelta(milliseconds=500))
    assert clock() == 7.0
    assert repr(clock) == "FakeClock(now=7.0)"


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError), ("1", TypeError)],
)
def test_fake_clock_rejects_bad_steps(value: object, error: type[Exception]) -> None:
    clock = FakeClock()
    with pytest.raises(error, match="seconds"):
        clock.advance(value)  # type: ignore[arg-type]
    assert clock() == 1000.0


@pytest.mark.parametrize(("value", "error"), [(float("nan"), ValueError), (None, TypeError)])
def test_fake_clock_rejects_bad_start(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="start"):
        FakeClock(value)  # type: ignore[arg-type]


def test_fake_clock_drives_a_breaker_without_sleeping() -> None:
    clock = FakeClock()
    breaker = sg.CircuitBreaker("testing-clock", failure_threshold=1, open_timeout=30, clock=clock)
    breaker.record_result(False)
    assert breaker.state is sg.BreakerState.OPEN
    clock.advance(29.9)
    assert breaker.state is sg.BreakerState.OPEN
    clock.advance(0.1)
    assert breaker.state is sg.BreakerState.HALF_OPEN


def test_reset_breakers_closes_every_shared_breaker() -> None:
    @sg.protected("testing-reset-a")
    def a() -> None:
        raise ConnectionError

    @sg.protected("testing-reset-b")
    def b() -> None:
        raise ConnectionError

    for fn in (a, b):
        for _ in range(5):  # the default failure_threshold
            with pytest.raises(ConnectionError):
                fn()
        with pytest.raises(sg.CircuitOpenError):
            fn()
    assert reset_breakers() >= 2
    with pytest.raises(ConnectionError):  # admitted again: the call ran
        a()
    with pytest.raises(ConnectionError):
        b()

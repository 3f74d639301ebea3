"""Helpers for testing code that uses switchgear, without sleeping.

Every switchgear component takes a ``clock=`` callable; give them one :class:`FakeClock` and
move time by hand. :func:`reset_breakers` closes every breaker shared by name (the ones
``@protected("name")`` creates), so one test's trip does not leak into the next.

Example::

    from switchgear.testing import FakeClock

    clock = FakeClock()
    breaker = sg.CircuitBreaker("payments", failure_threshold=1, open_timeout=30, clock=clock)
    ...  # a failure trips it
    clock.advance(30)
    assert breaker.state is sg.BreakerState.HALF_OPEN
"""

from __future__ import annotations

import math
from datetime import timedelta

from ._breaker.registry import breakers as _breakers

__all__ = ["FakeClock", "reset_breakers"]


class FakeClock:
    """A monotonic clock that only moves when told to: ``clock()`` reads, ``advance`` moves.

    Example::

        clock = FakeClock(start=0.0)
        clock.advance(1.5)
        assert clock() == 1.5
    """

    __slots__ = ("now",)

    def __init__(self, start: float = 1000.0) -> None:
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise TypeError(f"start must be a number of seconds, not {type(start).__name__}")
        if not math.isfinite(start):
            raise ValueError(f"start must be finite, got {start!r}")
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float | timedelta) -> None:
        """Move the clock forward; a monotonic clock never goes back."""
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be finite and >= 0, got {seconds!r}")
        self.now += seconds

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"


def reset_breakers() -> int:
    """Return every breaker shared by name to CLOSED; returns how many there were.

    Use it in a fixture (``yield; reset_breakers()``) when tests share protected functions.
    """
    live = _breakers()
    for breaker in live.values():
        breaker.reset()
    return len(live)

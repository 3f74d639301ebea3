"""A sliding time window of three running sums, used by breaker rate rules and metrics.

The window is a ring of ``buckets`` slots, each ``window / buckets`` seconds wide (one
second for the default 60 s window). Adding an event touches one slot and the running
totals; moving into a new slot zeroes the slots that fell out of the window and recomputes
the totals from the ring, so float sums never drift. Reading never resets anything: two
readers at the same instant see the same numbers.

Not thread-safe on its own: the owner (breaker, metrics) holds its lock around it.
"""

from __future__ import annotations

import math

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """Running sums ``(a, b, c)`` of the events of the last ``window`` seconds.

    Callers give the time explicitly (their own clock), which keeps this policy free of I/O
    and trivially testable::

        w = SlidingWindow(60.0)
        w.add(0.5, 1, 0, 0.020)     # one call, no error, 20 ms
        w.add(1.5, 1, 1, 0.300)     # one failed call, 300 ms
        w.totals(2.0)               # (2.0, 1.0, 0.32)
        w.totals(61.6)              # (1.0, 1.0, 0.3): the first slot has expired
    """

    __slots__ = ("_head", "_n", "_slots", "_start", "_totals", "width", "window")

    def __init__(self, window: float, buckets: int = 60, *, start: float | None = None) -> None:
        if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        if not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"buckets must be a positive int, got {buckets!r}")
        self.window = float(window)
        self.width = self.window / buckets
        self._n = buckets
        self._slots = [[0.0, 0.0, 0.0] for _ in range(buckets)]
        self._totals = [0.0, 0.0, 0.0]
        self._head: int | None = None
        self._start = start

    def _advance(self, epoch: int) -> None:
        head = self._head
        slots = self._slots
        n = self._n
        if head is None or epoch - head >= n:
            for slot in slots:
                slot[0] = slot[1] = slot[2] = 0.0
        else:
            for e in range(head + 1, epoch + 1):
                slot = slots[e % n]
                slot[0] = slot[1] = slot[2] = 0.0
        self._head = epoch
        totals = self._totals
        totals[0] = math.fsum(s[0] for s in slots)
        totals[1] = math.fsum(s[1] for s in slots)
        totals[2] = math.fsum(s[2] for s in slots)

    def add(self, now: float, a: float, b: float, c: float) -> None:
        """Add one event's three values at time ``now``."""
        epoch = int(now // self.width)
        head = self._head
        if epoch != head:
            if self._start is None:
                self._start = now
            if head is None or epoch > head:
                self._advance(epoch)
            elif epoch <= head - self._n:
                return  # older than the whole window (a clock that went backwards)
        slot = self._slots[epoch % self._n]
        slot[0] += a
        slot[1] += b
        slot[2] += c
        totals = self._totals
        totals[0] += a
        totals[1] += b
        totals[2] += c

    def totals(self, now: float) -> tuple[float, float, float]:
        """The three sums over the whole window ending at ``now``."""
        epoch = int(now // self.width)
        head = self._head
        if head is not None and epoch > head:
            self._advance(epoch)
        t = self._totals
        return (t[0], t[1], t[2])

    def sums(self, now: float, span: float) -> tuple[float, float, float]:
        """The three sums over the last ``span`` seconds (at most the whole window).

        ``span`` is rounded up to whole slots.
        """
        if span >= self.window:
            return self.totals(now)
        if span <= 0:
            return (0.0, 0.0, 0.0)
        epoch = int(now // self.width)
        head = self._head
        if head is None:
            return (0.0, 0.0, 0.0)
        if epoch > head:
            self._advance(epoch)
        k = min(self._n, math.ceil(span / self.width - 1e-9))
        a = b = c = 0.0
        for e in range(epoch - k + 1, epoch + 1):
            slot = self._slots[e % self._n]
            a += slot[0]
            b += slot[1]
            c += slot[2]
        return (a, b, c)

    def covered(self, now: float, span: float | None = None) -> float:
        """Seconds of the last ``span`` (default: window) this window has observed.

        Shorter than ``span`` while the window is younger than ``span``; rates use it so a
        fresh process does not under-report its QPS.
        """
        span = self.window if span is None else min(span, self.window)
        if self._start is None:
            return span
        return max(min(span, now - self._start), self.width)

    def clear(self) -> None:
        """Forget every event."""
        for slot in self._slots:
            slot[0] = slot[1] = slot[2] = 0.0
        self._totals[:] = [0.0, 0.0, 0.0]
        self._head = None

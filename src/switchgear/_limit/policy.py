"""The limit algorithms: pure objects fed completed calls, answering the next limit.

A policy sees batches of samples ``(end, rtt, dropped)`` and the peak number of calls in
flight since the previous batch, and returns the limit to apply until the next batch. It
reads no clock, takes no lock, starts no thread and never sleeps, so a test or a simulation
drives it with made-up numbers on a virtual timeline.

Both algorithms compare the recent round-trip time (the median of the calls that completed in
the last summary, at least ``min_samples`` of them) with a *baseline*: the round-trip time of
the dependency without load. Between probes the baseline can only go down (a faster recent
median lowers it); every ``probe_interval`` (plus up to ``probe_jitter`` of it, so processes
started together do not probe together) the policy *probes*: the limit drops to
``probe_limit`` until ``probe_samples`` calls admitted during the probe have completed, and
their median becomes the baseline. Calls admitted at a low limit do not queue behind our own
load, so sustained overload cannot drag the baseline up with it, and a dependency that became
slower for good is still measured again.

Every failed call (``dropped``) multiplies the limit by ``backoff``, at most once per batch,
and the limit never grows in a batch with a drop. A limit only grows when the calls in flight
reached at least half of it: an idle service has no evidence that more would be fine.

- :class:`Gradient`: ``new = limit * clamp(tolerance * baseline / recent, 0.5, 1) +
  sqrt(limit)``, smoothed. The square root is the queue the dependency may hold; the gradient
  shrinks the limit in proportion to how far the recent RTT is above the tolerated one.
- :class:`Aimd`: additive increase by ``increase`` per summary while the recent RTT is within
  ``tolerance * baseline``; multiplicative decrease by ``decrease`` when it is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

__all__ = ["Aimd", "Gradient", "Policy", "Sample", "Settings", "median"]


class Sample(NamedTuple):
    """One completed call: when it ended, how long it took, whether it failed."""

    end: float
    rtt: float
    dropped: bool


class Settings(NamedTuple):
    """What both algorithms share; the limiter checks every value before building one."""

    initial_limit: int = 20
    min_limit: int = 1
    max_limit: int = 200
    min_samples: int = 10
    backoff: float = 0.9
    probe_interval: float = 30.0
    probe_jitter: float = 0.1
    probe_limit: int = 3
    probe_samples: int = 20
    probe_timeout: float = 2.0


def median(values: list[float]) -> float:
    """The median of a non-empty list (sorted in place)."""
    values.sort()
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


class Policy:
    """The shared part of both algorithms: batches, drops, the baseline and its probes.

    ``limit`` is what admission applies now; ``estimate`` is the algorithm's limit outside
    probes (the two differ only while probing). ``baseline`` and ``recent`` are NaN until
    measured. ``random`` returns floats in [0, 1) for the probe jitter.
    """

    name = ""

    def __init__(
        self, settings: Settings, *, now: float = 0.0, random: Callable[[], float] | None = None
    ) -> None:
        self.settings = settings
        self.estimate = float(settings.initial_limit)
        self.limit = settings.initial_limit
        self.baseline = math.nan
        self.recent = math.nan
        self.probing = False
        self.probes = 0
        self._random = random if random is not None else (lambda: 0.5)
        self._pending: list[float] = []
        self._peak = 0
        self._probe_start = 0.0
        self._probe_rtts: list[float] = []
        self._next_probe = now + self._probe_delay()

    def _probe_delay(self) -> float:
        s = self.settings
        return s.probe_interval * (1.0 + s.probe_jitter * self._random())

    def _clamp(self, value: float) -> float:
        s = self.settings
        return min(float(s.max_limit), max(float(s.min_limit), value))

    def _publish(self) -> int:
        s = self.settings
        if self.probing:
            self.limit = max(s.min_limit, min(s.max_limit, s.probe_limit, int(self.estimate)))
        else:
            self.limit = int(self.estimate)
        return self.limit

    def update(self, now: float, samples: Iterable[tuple[float, float, bool]], peak: int) -> int:
        """Take the calls that completed since the last update; return the limit to apply."""
        dropped = False
        rtts = self._probe_rtts if self.probing else self._pending
        for end, rtt, failed in samples:
            if failed:
                dropped = True
            elif not self.probing or end - rtt >= self._probe_start:
                rtts.append(rtt)  # a probe counts only calls it admitted
        self._peak = max(self._peak, peak)
        if dropped:
            self.estimate = self._clamp(self.estimate * self.settings.backoff)
            self._pending.clear()
            self._peak = 0
        elif not self.probing and len(self._pending) >= self.settings.min_samples:
            self.recent = median(self._pending)
            self._pending.clear()
            if math.isnan(self.baseline) or self.recent < self.baseline:
                self.baseline = self.recent
            utilized = self._peak * 2 >= self.estimate
            self._peak = 0
            self.estimate = self._clamp(self.next_estimate(self.recent, utilized))
        self._advance_probe(now)
        return self._publish()

    def _advance_probe(self, now: float) -> None:
        s = self.settings
        if self.probing:
            if len(self._probe_rtts) >= s.probe_samples:
                self.baseline = median(self._probe_rtts)
                self.probes += 1
            elif now - self._probe_start < s.probe_timeout:
                return
            self.probing = False  # measured, or gave up waiting: the baseline stays as it was
            self._probe_rtts.clear()
            self._pending.clear()  # admitted at the probe's limit: not a view of our load
            self._next_probe = now + self._probe_delay()
        elif now >= self._next_probe and s.probe_interval > 0:
            self.probing = True
            self._probe_start = now

    def next_estimate(self, recent: float, utilized: bool) -> float:
        """The algorithm's next limit from the recent RTT (``baseline`` is set)."""
        raise NotImplementedError


class Gradient(Policy):
    """Limit scaled by how far the recent RTT is above the tolerated one, plus a queue.

    ``tolerance``: the recent RTT may reach ``tolerance * baseline`` before the limit
    shrinks. ``smoothing``: the weight of each new value in the limit (0 < s <= 1).
    """

    name = "gradient"

    def __init__(
        self,
        settings: Settings,
        *,
        tolerance: float = 1.25,
        smoothing: float = 0.2,
        now: float = 0.0,
        random: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(settings, now=now, random=random)
        self.tolerance = tolerance
        self.smoothing = smoothing

    def next_estimate(self, recent: float, utilized: bool) -> float:
        limit = self.estimate
        gradient = max(0.5, min(1.0, self.tolerance * self.baseline / recent))
        new = limit * gradient + (math.sqrt(limit) if utilized else 0.0)
        return limit + self.smoothing * (new - limit)


class Aimd(Policy):
    """Additive increase while the recent RTT is tolerable, multiplicative decrease when not.

    ``tolerance``: a recent RTT above ``tolerance * baseline`` counts as congestion, and
    multiplies the limit by ``decrease``. ``increase``: what the limit grows by per summary.
    """

    name = "aimd"

    def __init__(
        self,
        settings: Settings,
        *,
        tolerance: float = 1.5,
        increase: float = 0.5,
        decrease: float = 0.95,
        now: float = 0.0,
        random: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(settings, now=now, random=random)
        self.tolerance = tolerance
        self.increase = increase
        self.decrease = decrease

    def next_estimate(self, recent: float, utilized: bool) -> float:
        if recent > self.tolerance * self.baseline:
            return self.estimate * self.decrease
        if utilized:
            return self.estimate + self.increase
        return self.estimate

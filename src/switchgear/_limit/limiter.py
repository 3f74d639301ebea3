"""The public adaptive concurrency limit: slots for calls in flight under a moving limit.

The policy (:mod:`.policy`) decides the limit from completed calls; this class admits and
releases calls and feeds it. Why it is shaped like this:

* Admission takes no lock: the free slots are tokens in a deque, and ``acquire`` pops one
  (an atomic operation; an empty deque is the rejection), ``release`` appends it back. Sync
  and asyncio callers use the same object; nothing here awaits, blocks or holds a lock
  across the user's call.
* The policy runs at most once per ``update_interval``, on the release that finds it due
  (under a lock only that release takes), with the calls completed since; a batch keeps at
  most :data:`MAX_BATCH` of them, so a busy dependency costs the policy a bounded sort.
* A lower limit takes free tokens away at once; for tokens held by calls in flight it keeps
  a *debt* that their releases pay instead of returning them. Slots in use + free slots =
  limit + debt, always.
* A call that never ran (the pool refused it, say) is ``cancel``-led: it frees its slot and
  tells the policy nothing.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from .. import _validate as v
from .._errors import LimitExceededError
from .._fork import repair_in_child
from .policy import Aimd, Gradient, Policy, Settings

__all__ = ["ALGORITHMS", "AdaptiveLimit"]

#: The algorithms ``AdaptiveLimit(algorithm=...)`` accepts.
ALGORITHMS = ("gradient", "aimd")
#: The most completed calls one policy update looks at (the rest of a busy batch is skipped).
MAX_BATCH = 2000


class AdaptiveLimit:
    """Bounds the calls in flight to a dependency by a limit that follows its latency.

    The limit starts at ``initial_limit`` and moves between ``min_limit`` and ``max_limit``:
    it grows while calls are as fast as the dependency is without load, shrinks when their
    round-trip time rises above that, and shrinks at once on failed calls (drops). A call
    beyond the limit is rejected with :class:`~switchgear.LimitExceededError` (its
    ``retry_after`` is about one recent round trip), never queued.

    ``algorithm``: ``"gradient"`` (the limit scaled by how far the recent round-trip time is
    above the no-load one, plus a square-root allowance for queueing) or ``"aimd"`` (grow by
    a constant while latency is tolerable, multiply by a factor below 1 when it is not).
    Every ``probe_interval`` seconds the limit drops to a few calls for a moment to measure the
    no-load round-trip time again, so sustained overload cannot drag that baseline up.

    Example::

        search_limit = sg.AdaptiveLimit("search", max_limit=100)

        @sg.protected("search", limit=search_limit)
        def search(query): ...
    """

    def __init__(
        self,
        name: str,
        *,
        algorithm: str = "gradient",
        initial_limit: int = 20,
        min_limit: int = 1,
        max_limit: int = 200,
        update_interval: v.Seconds = 0.1,
        probe_interval: v.Seconds = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = v.name("name", name)
        if not isinstance(algorithm, str):
            raise TypeError(f"algorithm must be a str, not {type(algorithm).__name__}")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        low = v.integer("min_limit", min_limit)
        high = v.integer("max_limit", max_limit)
        start = v.integer("initial_limit", initial_limit)
        if not low <= start <= high:
            raise ValueError(
                f"initial_limit ({start}) must be between min_limit ({low}) and max_limit ({high})"
            )
        self.update_interval = v.seconds("update_interval", update_interval)
        self.probe_interval = v.seconds("probe_interval", probe_interval)
        self.algorithm = algorithm
        self.min_limit, self.max_limit = low, high
        self.clock = v.clock(clock)
        settings = Settings(
            initial_limit=start,
            min_limit=low,
            max_limit=high,
            probe_interval=self.probe_interval,
            probe_limit=max(low, min(3, high)),
        )
        now = self.clock()
        kind = Gradient if algorithm == "gradient" else Aimd
        self._policy: Policy = kind(settings, now=now, random=random.random)
        self._lock = threading.Lock()  # policy updates and debt, never admission
        self._limit = self._policy.limit
        self._slots: deque[None] = deque([None] * self._limit)
        self._debt = 0
        self._min_free = self._limit  # the fewest free slots since the last update
        self._batch: list[tuple[float, float, bool]] = []
        self._dropped = False
        self._due = now + self.update_interval
        repair_in_child(self, AdaptiveLimit._after_fork)

    # -- reading -----------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """The calls in flight allowed now."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """The calls admitted and not yet released."""
        return self._limit + self._debt - len(self._slots)

    @property
    def baseline(self) -> float | None:
        """The no-load round-trip time the algorithm compares with (seconds), once measured."""
        value = self._policy.baseline
        return None if math.isnan(value) else value

    @property
    def recent(self) -> float | None:
        """The median round-trip time of the last batch of calls (seconds), once measured."""
        value = self._policy.recent
        return None if math.isnan(value) else value

    @property
    def probing(self) -> bool:
        """Whether the limit is lowered right now to measure the no-load round-trip time."""
        return self._policy.probing

    def __repr__(self) -> str:
        return f"<AdaptiveLimit {self.name!r} limit={self._limit} in_flight={self.in_flight}>"

    # -- admission (the protocol @protected and the middlewares use) --------------------------

    def acquire(self) -> None:
        """Take a slot for one call, or raise :class:`~switchgear.LimitExceededError`.

        Pair every successful ``acquire`` with one :meth:`release` (the call ran) or one
        :meth:`cancel` (it did not).
        """
        slots = self._slots
        try:
            slots.pop()
        except IndexError:
            raise LimitExceededError(self.name, self._limit, self._retry_after()) from None
        free = len(slots)
        if free < self._min_free:
            self._min_free = free  # a race here only blurs a heuristic

    def release(self, rtt: float, dropped: bool = False) -> None:
        """One admitted call finished after ``rtt`` seconds; ``dropped``: it failed or timed out."""
        self.release_at(self.clock(), rtt, dropped)

    def release_at(self, now: float, rtt: float, dropped: bool) -> None:
        """:meth:`release` for a caller that has just read this limit's clock (``now``)."""
        batch = self._batch
        if len(batch) < MAX_BATCH:
            batch.append((now, rtt, dropped))
        elif dropped:
            self._dropped = True
        if self._debt:
            self._give_back()
        else:
            self._slots.append(None)
        if now >= self._due:
            self._update(now)

    def cancel(self) -> None:
        """One admitted call never ran: free its slot, tell the algorithm nothing."""
        self._give_back()

    # -- internals ---------------------------------------------------------------------------

    def _give_back(self) -> None:
        if self._debt:
            with self._lock:
                if self._debt:
                    self._debt -= 1  # the limit went down while this slot was in use
                    return
        self._slots.append(None)

    def _update(self, now: float) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another release is updating
        try:
            if now < self._due:
                return
            batch, self._batch = self._batch, []
            if self._dropped:
                batch.append((now, 0.0, True))
                self._dropped = False
            old = self._limit
            peak = old + self._debt - self._min_free
            new = self._policy.update(now, batch, peak)
            self._resize(old, new)
            self._min_free = len(self._slots)
            self._due = now + self.update_interval
        finally:
            self._lock.release()

    def _resize(self, old: int, new: int) -> None:
        """Move from ``old`` to ``new`` slots (lock held)."""
        self._limit = new
        if new > old:
            grow = new - old
            paid = min(self._debt, grow)
            self._debt -= paid
            self._slots.extend([None] * (grow - paid))
            return
        shrink = old - new
        slots = self._slots
        while shrink:
            try:
                slots.pop()
            except IndexError:
                break
            shrink -= 1
        self._debt += shrink  # owed by calls in flight: their releases pay it

    def _after_fork(self) -> None:
        # A forked child inherits the parent's calls in flight, which belong to the parent
        # (their releases happen there), and perhaps a lock held by a thread that does not
        # exist in the child. The child starts from no calls in flight; the limit stays.
        self._lock = threading.Lock()
        self._slots = deque([None] * self._limit)
        self._debt = 0
        self._min_free = self._limit

    def _retry_after(self) -> float:
        recent = self._policy.recent
        hint = self.update_interval if math.isnan(recent) else recent
        return min(max(hint, 0.001), 1.0)

"""What is recorded under one pool name: the wait histogram, scale events, live pools."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any, NamedTuple

from .._pool.observer import Tally
from .held import Held
from .series import LATENCY_BUCKETS, Owner

__all__ = ["SCALE_DIRECTIONS", "PoolGauges", "PoolSeries"]

SCALE_DIRECTIONS = ("up", "down")


class PoolGauges(NamedTuple):
    size: int
    in_use: int
    available: int
    waiting: int
    min_size: int
    max_size: int


class PoolSeries(Held):
    """One pool name's wait histogram and scale counts; observes the pools of that name.

    Registered with each pool as its observer (``switchgear._pool.observer.PoolObserver``).
    """

    __slots__ = ("counts", "immediate", "scaled", "sinks", "store", "sum")

    def __init__(self, store: Owner, name: str) -> None:
        super().__init__(name)
        self.store = store
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.scaled = dict.fromkeys(SCALE_DIRECTIONS, 0)
        self.sinks: tuple[Callable[[float], None], ...] = ()
        # Each attached pool's tally of immediate acquisitions: folded into the first
        # bucket when scraped. Held strongly, so the counts of a pool that is gone stay in
        # this counter.
        self.immediate: list[Tally] = []

    def attach(self, pool: Any) -> bool:
        """Remember ``pool``; True if it was not attached yet (so observe it)."""
        with self.lock:
            new = self.hold(pool)
            tally = getattr(pool, "immediate", None)
            if new and isinstance(tally, Tally) and not any(t is tally for t in self.immediate):
                self.immediate.append(tally)
        return new

    def add_sink(self, sink: Callable[[float], None]) -> None:
        with self.lock:
            self.sinks = (*self.sinks, sink)
            refs = list(self.refs)
        for ref in refs:
            pool = ref()
            if pool is not None and hasattr(pool, "observers_changed"):
                pool.observers_changed()

    @property
    def every_acquire(self) -> bool:
        """Sinks and multiprocess files need each acquisition; our own counts do not."""
        return bool(self.sinks) or self.store.mirror is not None

    def pool(self) -> Any | None:
        """The most recently attached pool of this name that is still alive."""
        return self.newest()

    # PoolObserver. Cold starts are not counted here: the caller records them with the call.
    def pool_acquired(self, pool: str, wait: float, cold_start: bool) -> None:
        i = bisect_left(LATENCY_BUCKETS, wait)
        with self.lock:
            self.counts[i] += 1
            self.sum += wait
        for sink in self.sinks:
            sink(wait)
        if self.store.mirror is not None:
            self.store.mirror.pool_waited(self, wait)

    def pool_acquired_immediately(self, pool: str) -> None:
        # Counted already (the pool's ``immediate`` tally): only the per-event consumers hear it.
        for sink in self.sinks:
            sink(0.0)
        if self.store.mirror is not None:
            self.store.mirror.pool_waited(self, 0.0)

    def pool_scaled(self, pool: str, direction: str, count: int) -> None:
        with self.lock:
            self.scaled[direction] = self.scaled.get(direction, 0) + count
        if self.store.mirror is not None:
            self.store.mirror.pool_scaled(self, direction, count)

    def snapshot(self) -> tuple[tuple[int, ...], float, dict[str, int]]:
        with self.lock:
            counts = list(self.counts)
            # A wait of 0 s is in the first bucket (le is the smallest bound).
            counts[0] += sum(tally.count for tally in self.immediate)
            return tuple(counts), self.sum, dict(self.scaled)

    def gauges(self) -> PoolGauges | None:
        """The live pool's sizes, read now; None when no pool of this name is alive."""
        pool = self.pool()
        if pool is None:
            return None
        s = pool.stats()
        return PoolGauges(
            int(s.total),
            int(s.in_use),
            int(s.available),
            int(s.waiting),
            int(pool.min_size),
            int(pool.max_size),
        )

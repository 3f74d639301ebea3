"""What is recorded under one pool name: the wait histogram, scale events, live pools."""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._metrics_series import LATENCY_BUCKETS

if TYPE_CHECKING:
    from ._metrics_store import Store

__all__ = ["SCALE_DIRECTIONS", "PoolGauges", "PoolSeries"]

SCALE_DIRECTIONS = ("up", "down")


class PoolGauges(NamedTuple):
    size: int
    in_use: int
    available: int
    waiting: int
    min_size: int
    max_size: int


class PoolSeries:
    """One pool name's wait histogram and scale counts; observes the pools of that name.

    Registered with each pool as its observer (``switchgear._observe.PoolObserver``).
    """

    __slots__ = ("__weakref__", "counts", "lock", "name", "refs", "scaled", "sinks", "store", "sum")

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.lock = threading.Lock()
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.scaled = dict.fromkeys(SCALE_DIRECTIONS, 0)
        self.refs: list[weakref.ref[Any]] = []
        self.sinks: tuple[Callable[[float], None], ...] = ()

    def attach(self, pool: Any) -> bool:
        """Remember ``pool``; True if it was not attached yet (so observe it)."""
        with self.lock:
            live = [ref for ref in self.refs if ref() is not None]
            new = not any(ref() is pool for ref in live)
            if new:
                live.append(weakref.ref(pool))
            self.refs = live
        return new

    def add_sink(self, sink: Callable[[float], None]) -> None:
        with self.lock:
            self.sinks = (*self.sinks, sink)

    def pool(self) -> Any | None:
        """The most recently attached pool of this name that is still alive."""
        for ref in reversed(self.refs):
            pool = ref()
            if pool is not None:
                return pool
        return None

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

    def pool_released(self, pool: str) -> None:
        pass  # sizes are read from the pool at scrape time

    def pool_scaled(self, pool: str, direction: str, count: int) -> None:
        with self.lock:
            self.scaled[direction] = self.scaled.get(direction, 0) + count
        if self.store.mirror is not None:
            self.store.mirror.pool_scaled(self, direction, count)

    def snapshot(self) -> tuple[tuple[int, ...], float, dict[str, int]]:
        with self.lock:
            return tuple(self.counts), self.sum, dict(self.scaled)

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

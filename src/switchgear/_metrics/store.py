"""The series of one Prometheus registry (or of the process, in multiprocess mode)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .http_series import HttpSeries
from .limit_series import LimitSeries
from .memory import read_memory
from .pool_series import PoolSeries
from .series import TICK_SECONDS, Series

__all__ = ["Mirror", "Store"]


class Mirror(Protocol):
    """Copies events somewhere else as they happen (the multiprocess files)."""

    def series_added(self, series: Series) -> None: ...
    def rejected(self, series: Series, reason: str) -> None: ...
    def transition(self, series: Series, old: str, new: str) -> None: ...
    def manual_action(self, series: Series, action: str) -> None: ...
    def tripped(self, series: Series, reason: str) -> None: ...
    def breaker_attached(self, series: Series) -> None: ...
    def pool_added(self, pool: PoolSeries) -> None: ...
    def http_added(self, http: HttpSeries) -> None: ...
    def pool_waited(self, pool: PoolSeries, wait: float) -> None: ...
    def pool_scaled(self, pool: PoolSeries, direction: str, count: int) -> None: ...
    def refresh(self, store: Store) -> None: ...
    def forked(self) -> None: ...


class Store:
    """The series of one Prometheus registry (or of the process, in multiprocess mode)."""

    __slots__ = (
        "__weakref__",
        "_next_tick",
        "_tick_hooks",
        "http",
        "limits",
        "lock",
        "memory_override",
        "memory_root",
        "mirror",
        "pool_hooks",
        "pools",
        "series",
    )

    def __init__(self, mirror: Mirror | None = None) -> None:
        self.lock = threading.RLock()
        self.series: dict[str, Series] = {}
        self.pools: dict[str, PoolSeries] = {}
        self.limits: dict[str, LimitSeries] = {}
        self.mirror = mirror
        self.memory_override: tuple[int, int] | None = None
        self.memory_root = "/"
        self._tick_hooks: list[Callable[[], bool]] = []
        self._next_tick = float("-inf")
        # Called with each new PoolSeries (OpenTelemetry wires its wait histogram).
        self.pool_hooks: list[Callable[[PoolSeries], None]] = []
        # The standard HTTP series, created when a middleware first records into this store.
        self.http: HttpSeries | None = None

    def forked(self) -> None:
        """In a forked child: fresh locks; a fork may have caught one held by another thread."""
        self.lock = threading.RLock()
        for series in self.series.values():
            series.forked()
        for pool in self.pools.values():
            pool.forked()
        for limit in self.limits.values():
            limit.forked()
        if self.http is not None:
            self.http.forked()
        if self.mirror is not None:
            self.mirror.forked()

    def series_for(
        self,
        name: str,
        bounds: tuple[float, ...],
        window: float,
        clock: Callable[[], float],
        exemplars: bool = True,
    ) -> Series:
        """The series called ``name``, created on first use; a conflicting one raises."""
        with self.lock:
            series = self.series.get(name)
            if series is None:
                series = Series(self, name, bounds, window, clock, exemplars)
                self.series[name] = series
                if self.mirror is not None:
                    self.mirror.series_added(series)
                return series
        if series.bounds != bounds:
            raise ValueError(
                f"buckets: metrics {name!r} already exist in this registry with buckets "
                f"{series.bounds!r}; same-named Metrics share their series, so they must "
                f"use the same buckets (got {bounds!r})"
            )
        if series.window.window != window:
            raise ValueError(
                f"window: metrics {name!r} already exist in this registry with a "
                f"{series.window.window!r} s window (got {window!r})"
            )
        if clock is not series.clock and clock is not time.monotonic:
            raise ValueError(
                f"clock: metrics {name!r} already exist in this registry with another clock; "
                "same-named Metrics share one window, so they must share the clock"
            )
        if series.exemplars_wanted != exemplars:
            raise ValueError(
                f"exemplars: metrics {name!r} already exist in this registry with "
                f"exemplars={series.exemplars_wanted!r}; same-named Metrics share their "
                "histogram, so they must agree"
            )
        return series

    def pool_for(self, pool: Any) -> tuple[PoolSeries, bool]:
        """The pool series for ``pool.name`` and whether ``pool`` is newly attached to it."""
        name = str(pool.name)
        with self.lock:
            entry = self.pools.get(name)
            created = entry is None
            if entry is None:
                entry = PoolSeries(self, name)
                self.pools[name] = entry
            hooks = list(self.pool_hooks)
        if created:
            if self.mirror is not None:
                self.mirror.pool_added(entry)
            for hook in hooks:
                hook(entry)
        return entry, entry.attach(pool)

    def limit_for(self, limit: Any) -> LimitSeries:
        """The limit series for ``limit.name``, with ``limit`` attached to it."""
        name = str(limit.name)
        with self.lock:
            entry = self.limits.get(name)
            if entry is None:
                entry = self.limits[name] = LimitSeries(name)
        entry.attach(limit)
        return entry

    def all_limits(self) -> list[LimitSeries]:
        with self.lock:
            return list(self.limits.values())

    def http_series(self) -> HttpSeries:
        """The standard HTTP series of this store, created on first use."""
        with self.lock:
            http = self.http
            if http is None:
                http = self.http = HttpSeries()
                created = True
            else:
                created = False
        if created and self.mirror is not None:
            self.mirror.http_added(http)
        return http

    def all_series(self) -> list[Series]:
        with self.lock:
            return list(self.series.values())

    def all_pools(self) -> list[PoolSeries]:
        with self.lock:
            return list(self.pools.values())

    def memory(self) -> tuple[int, int]:
        """``(used, limit)``: the values from ``update_memory_stats``, else read now."""
        override = self.memory_override
        if override is not None:
            return override
        return read_memory(self.memory_root)

    def on_tick(self, hook: Callable[[], bool]) -> None:
        """Run ``hook`` at each tick until it returns True."""
        with self.lock:
            self._tick_hooks.append(hook)
            self._next_tick = float("-inf")

    def tick(self) -> None:
        """Housekeeping, at most once per ``TICK_SECONDS`` of real time."""
        now = time.monotonic()
        with self.lock:
            if now < self._next_tick:
                return
            self._next_tick = now + TICK_SECONDS
            hooks = self._tick_hooks
        if hooks:
            done = [hook for hook in hooks if hook()]
            if done:
                with self.lock:
                    self._tick_hooks = [h for h in self._tick_hooks if h not in done]
        if self.mirror is not None:
            self.mirror.refresh(self)

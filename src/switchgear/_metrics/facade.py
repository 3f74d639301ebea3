"""Metrics per name: call counts, a latency histogram, sliding-window figures.

Where the numbers live and how they leave the process:

* recording (``Metrics.series``, called by ``@protected`` and the middleware) adds to
  plain per-thread counters, without a lock (:mod:`switchgear._metrics.series`);
* Prometheus reads them at scrape time through one custom collector per registry
  (:mod:`switchgear._metrics.prometheus`); with ``PROMETHEUS_MULTIPROC_DIR`` set they are
  mirrored into
  prometheus_client's files instead (:mod:`switchgear._metrics.multiprocess`);
* OpenTelemetry observes them through observable instruments (:mod:`switchgear._metrics.otel`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from .. import _validate as v
from .._limit.limiter import AdaptiveLimit
from .exposition import render_latest
from .http_series import HttpSeries
from .prefork import forked_unwarned
from .prometheus import Collector, multiprocess_mode
from .series import LATENCY_BUCKETS, REJECTION_REASONS, Series, per_call
from .store import Store

__all__ = [
    "LATENCY_BUCKETS",
    "Metrics",
    "Stats",
    "WindowStats",
    "http_series",
    "live_limits",
    "live_metrics",
    "live_pools",
    "observe_limit",
    "observe_pool",
    "render_latest",
]

logger = logging.getLogger("switchgear")


@dataclass(frozen=True, slots=True)
class Stats:
    """Totals since the metrics were created.

    ``avg_latency`` is in seconds; pool fields come from the first attached pool (else from
    ``update_pool_stats``); ``memory_limit`` is 0 when no limit is known.

    Example::

        s = metrics.stats()
        print(f"{s.error_count}/{s.request_count} failed, mean {s.avg_latency * 1e3:.1f} ms")
    """

    request_count: int
    success_count: int
    error_count: int
    cold_start_count: int
    avg_latency: float
    pool_size: int
    pool_in_use: int
    pool_available: int
    memory_used: int
    memory_limit: int


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Figures over the last ``duration`` seconds of the sliding window.

    ``duration`` is the span actually observed (shorter than the window while the metrics
    are younger than it), so ``qps == request_count / duration``. Reading resets nothing.

    Example::

        w = metrics.window_stats(10.0)
        if w.error_rate > 0.5:
            alert(f"{w.error_count} of {w.request_count} calls failed in {w.duration:.0f}s")
    """

    duration: float
    request_count: int
    error_count: int
    avg_latency: float
    qps: float
    error_rate: float


def _bounds(buckets: object) -> tuple[float, ...]:
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Iterable):
        raise TypeError(f"buckets must be a sequence of numbers, not {type(buckets).__name__}")
    bounds: list[float] = []
    for bound in buckets:
        if not isinstance(bound, (int, float)) or isinstance(bound, bool):
            raise TypeError(f"buckets must contain numbers, not {type(bound).__name__}")
        value = float(bound)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"buckets must be finite positive seconds (+Inf is added), got {bound!r}"
            )
        if bounds and value <= bounds[-1]:
            raise ValueError(
                f"buckets must be strictly increasing, got {bound!r} after {bounds[-1]!r}"
            )
        bounds.append(value)
    if not bounds:
        raise ValueError("buckets must not be empty")
    return tuple(bounds)


def _count(name: str, value: object) -> int:
    return v.integer(name, value, minimum=0)


# -- one store per registry -------------------------------------------------------------------


def observe_pool(pool: Any, registry: CollectorRegistry | None = None) -> None:
    """Export ``pool``'s gauges and wait histogram (labelled with its name) in ``registry``.

    What ``Metrics.attach(pool)`` does, without a ``Metrics``: for a component that owns a
    pool before it knows which name's metrics it belongs with (the HTTP middleware).
    """
    _observe(_store_for(registry), pool)


def observe_limit(limit: AdaptiveLimit | None, registry: CollectorRegistry | None = None) -> None:
    """Export ``limit``'s gauges (labelled with its name) in ``registry``; None: nothing.

    What ``Metrics.attach(limit)`` does, without a ``Metrics``.
    """
    if limit is not None:
        _store_for(registry).limit_for(limit)


def http_series(registry: CollectorRegistry | None, meter_provider: Any = None) -> HttpSeries:
    """The standard HTTP series of ``registry``, exported there and through ``meter_provider``.

    ``meter_provider``: as for :class:`Metrics` (None = the global one, also if set later).
    """
    from .otel import bridge_for

    store = _store_for(registry)
    http = store.http_series()
    bridge_for(meter_provider).add_http(store, http)
    return http


def live_metrics(registry: CollectorRegistry | None = None) -> list[Metrics]:
    """A ``Metrics`` for every name recorded in ``registry`` (this process), by name.

    Views onto the existing series: whatever buckets and window they were made with.
    """
    store = _store_for(registry)
    views: list[Metrics] = []
    for series in sorted(store.all_series(), key=lambda s: s.name):
        views.append(_View(store, series))
    return views


def live_pools(registry: CollectorRegistry | None = None) -> list[Any]:
    """The live pools attached to metrics in ``registry`` (this process), by name."""
    found = []
    for entry in sorted(_store_for(registry).all_pools(), key=lambda p: p.name):
        pool = entry.pool()
        if pool is not None:
            found.append(pool)
    return found


def live_limits(registry: CollectorRegistry | None = None) -> list[AdaptiveLimit]:
    """The live adaptive limits attached to metrics in ``registry`` (this process), by name."""
    found = []
    for entry in sorted(_store_for(registry).all_limits(), key=lambda e: e.name):
        limit = entry.limit()
        if isinstance(limit, AdaptiveLimit):
            found.append(limit)
    return found


def _observe(store: Store, pool: Any) -> None:
    entry, new = store.pool_for(pool)
    if new:
        pool.add_observer(entry)


_lock = threading.Lock()
_stores: weakref.WeakKeyDictionary[CollectorRegistry, Store] = weakref.WeakKeyDictionary()
_in_use = False  # a Metrics exists (or existed) in this process


def _store_for(registry: CollectorRegistry | None) -> Store:
    if multiprocess_mode():
        from . import multiprocess as _metrics_mp

        return _metrics_mp.store()
    global _in_use
    _in_use = True
    target = REGISTRY if registry is None else registry
    with _lock:
        store = _stores.get(target)
        if store is None:
            store = Store()
            target.register(Collector(store))
            _stores[target] = store
        return store


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    # Another thread may have held any of these at the fork (a scrape, a series being added).
    for registry, store in list(_stores.items()):
        store.forked()
        _fresh_registry_lock(registry)
    if _in_use and not multiprocess_mode() and forked_unwarned():
        logger.warning(
            "switchgear: metrics were created before this process was forked, and "
            "PROMETHEUS_MULTIPROC_DIR is not set: each worker counts on its own, so "
            "/metrics will jump between workers. See docs/metrics.md (multiprocess)."
        )


def _fresh_registry_lock(registry: CollectorRegistry) -> None:
    # prometheus_client does not guard its registry's lock against fork; a registry that
    # switchgear renders must not hang the child's first scrape.
    if isinstance(getattr(registry, "_lock", None), type(threading.Lock())):
        registry._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class Metrics:
    """Counts, latency histogram and sliding-window figures for one name.

    Exported as ``switchgear_*`` Prometheus series (``registry``, default: the global one)
    and OpenTelemetry instruments (``meter_provider``, default: the global one). Two
    ``Metrics`` with the same name in one registry share their series. With ``exemplars``
    (the default), a call recorded while a sampled OpenTelemetry span is current leaves its
    trace and span ids on its latency bucket (shown in the OpenMetrics exposition).

    Example::

        metrics = sg.Metrics("payments")
        start = time.monotonic()
        ok = charge(order)
        metrics.record_request(time.monotonic() - start, success=ok)

        metrics.attach(breaker)          # state, transitions, time in state
        metrics.stats().request_count    # 1
        metrics.window_stats(10.0).qps   # calls per second over the last 10 s
    """

    __slots__ = ("__weakref__", "_record", "_reject", "_store", "name", "series")

    _record: Callable[[float, bool, bool], None]
    _reject: Callable[[str], None]

    def __init__(
        self,
        name: str,
        *,
        registry: CollectorRegistry | None = None,
        meter_provider: Any = None,
        buckets: Iterable[float] = LATENCY_BUCKETS,
        window: v.Seconds = 60.0,
        clock: Callable[[], float] = time.monotonic,
        exemplars: bool = True,
    ) -> None:
        self.name = v.name("name", name)
        v.boolean("exemplars", exemplars)
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise TypeError(
                "registry must be a prometheus_client.CollectorRegistry or None, "
                f"not {type(registry).__name__}"
            )
        if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
            raise TypeError(
                "meter_provider must be an opentelemetry MeterProvider or None, "
                f"not {type(meter_provider).__name__}"
            )
        bounds = _bounds(buckets)
        span = v.seconds("window", window)
        v.clock(clock)
        from .otel import bridge_for

        # Before anything is registered: a provider that cannot make the instruments must
        # fail this constructor alone, not leave a half-made series behind.
        try:
            bridge = bridge_for(meter_provider)
        except Exception as exc:
            if meter_provider is None:
                raise
            raise TypeError(
                "meter_provider could not create switchgear's instruments "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        store = _store_for(registry)
        self._bind(store, store.series_for(self.name, bounds, span, clock, exemplars))
        bridge.add(store, self.series)

    def _bind(self, store: Store, series: Series) -> None:
        self._store = store
        self.series: Series = series
        # The hot path: the series' closures themselves, no wrapper call in between.
        self._record = series.record
        self._reject = series.reject

    def __repr__(self) -> str:
        return f"<Metrics {self.name!r}>"

    # -- recording -------------------------------------------------------------------------

    def record_request(self, duration: v.Seconds, success: bool, cold_start: bool = False) -> None:
        """Record one executed call that took ``duration`` seconds.

        ``success=False`` means its breaker counted it as a failure (``outcome="error"``);
        ``cold_start`` that it waited for a pool resource created for it.
        """
        seconds = v.seconds("duration", duration, allow_zero=True)
        self._record(seconds, bool(success), bool(cold_start))

    def record_rejection(self, reason: str) -> None:
        """Record a call that was not executed; ``reason`` is one of ``REJECTION_REASONS``."""
        if reason not in REJECTION_REASONS:
            raise ValueError(
                f"reason must be one of {', '.join(REJECTION_REASONS)}; got {reason!r}"
            )
        self._reject(reason)

    def update_pool_stats(self, size: int, in_use: int, available: int) -> None:
        """Set the pool figures by hand (used when no pool is attached)."""
        figures = (_count("size", size), _count("in_use", in_use), _count("available", available))
        self.series.pool_override = figures
        if self._store.mirror is not None:
            self._store.tick()

    def update_memory_stats(self, used: int, limit: int) -> None:
        """Set process memory figures by hand (bytes; ``limit`` 0 = no limit).

        They replace the values read from ``/proc`` and the cgroup, for every ``Metrics``
        of this registry (memory is per process, so the gauges have no labels).
        """
        self._store.memory_override = (_count("used", used), _count("limit", limit))

    def attach(self, target: Any) -> None:
        """Report a breaker's state, a pool's sizes and events, or a limit, through these metrics.

        A breaker (anything with ``add_listener``, ``state`` and ``state_durations``) must
        have this name; its transitions are counted from now on (the four it makes by itself,
        closed->open, open->half_open, half_open->open and half_open->closed, are exported at
        0 right away, so ``increase()`` sees the first trip), its state and time in each
        state are read at scrape time. A pool (``stats()``, ``min_size``, ``max_size``,
        ``add_observer``) and an :class:`~switchgear.AdaptiveLimit` (its limit, calls in
        flight, bounds and round-trip times) are labelled with their own names. All are held
        weakly: attaching does not keep them alive, and a dead one disappears from the
        exposition. Attaching the same object twice has no further effect.
        """
        if callable(getattr(target, "add_listener", None)) and callable(
            getattr(target, "state_durations", None)
        ):
            breaker_name = getattr(target, "name", None)
            if breaker_name != self.name:
                raise ValueError(
                    f"breaker {breaker_name!r} cannot report through metrics {self.name!r}: "
                    "a breaker reports through the Metrics of its own name"
                )
            self.series.attach_breaker(target)
        elif callable(getattr(target, "add_observer", None)) and callable(
            getattr(target, "stats", None)
        ):
            v.name("pool.name", getattr(target, "name", None))
            self.series.attach_pool(target)
            _observe(self._store, target)
        elif isinstance(target, AdaptiveLimit):
            self._store.limit_for(target)
        else:
            raise TypeError(
                "attach() takes a CircuitBreaker, a DynamicPool or an AdaptiveLimit, "
                f"not {type(target).__name__}"
            )

    # -- reading ---------------------------------------------------------------------------

    def stats(self) -> Stats:
        """Totals since creation, plus current pool and memory figures."""
        requests, errors, cold, latency_sum = self.series.totals()
        pool = self.series.pool()
        if pool is not None:
            s = pool.stats()
            size, in_use, available = int(s.total), int(s.in_use), int(s.available)
        else:
            size, in_use, available = self.series.pool_override or (0, 0, 0)
        used, limit = self._store.memory()
        return Stats(
            request_count=requests,
            success_count=requests - errors,
            error_count=errors,
            cold_start_count=cold,
            avg_latency=per_call(latency_sum, requests),
            pool_size=size,
            pool_in_use=in_use,
            pool_available=available,
            memory_used=used,
            memory_limit=limit,
        )

    def window_stats(self, window: v.Seconds | None = None) -> WindowStats:
        """Figures over the last ``window`` seconds (default and maximum: the configured window).

        The span is rounded up to whole slots (``window / 60`` s each).
        """
        configured = self.series.window.window
        span: float | None = None
        if window is not None:
            span = v.seconds("window", window)
            if span > configured:
                raise ValueError(
                    f"window must be <= the configured window of {configured!r} s, got {span!r}"
                )
        w = self.series.window_sums(span)
        return WindowStats(
            duration=w.covered,
            request_count=w.requests,
            error_count=w.errors,
            avg_latency=w.latency_avg,
            qps=w.qps,
            error_rate=w.error_ratio,
        )


class _View(Metrics):
    """A :class:`Metrics` onto a series of ``store`` as it is (its buckets, window and
    clock): nothing checked, nothing registered. What :func:`live_metrics` returns."""

    __slots__ = ()

    def __init__(self, store: Store, series: Series) -> None:
        self.name = series.name
        self._bind(store, series)

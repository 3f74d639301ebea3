"""Multiprocess mode (pre-fork servers with ``PROMETHEUS_MULTIPROC_DIR``).

prometheus_client's ``MultiProcessCollector`` only reads the mmap files its own metric
objects write, and ignores custom collectors. So in this mode every event is mirrored into
file-backed ``Counter``/``Histogram`` objects (summed over workers at scrape time), and the
scrape-time gauges become file-backed ``Gauge``s refreshed on events and at most once per
second (on calls, and by a daemon thread so an idle worker's gauges do not freeze).

Each gauge merges across workers as the ``merge`` of its entry in the family table says
(``multiprocess_mode``: ``livesum`` for what adds up over workers, such as pool sizes and
calls per second; ``livemax`` for the rest, such as a circuit state or the worst worker's
error ratio). "live" modes drop a worker's values once the server calls
``prometheus_client.multiprocess.mark_process_dead(pid)`` for it (gunicorn ``child_exit``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from .._breaker.breaker import storage_degraded
from .errors import contained, report
from .families import (
    FAMILIES,
    LIMIT_GAUGES,
    LIMIT_RTT_ESTIMATES,
    OVERRIDE_GAUGES,
    POOL_GAUGES,
    WINDOW_FIGURES,
)
from .http_series import ActiveKey, HttpSeries, Key
from .limit_series import LimitSeries
from .pool_series import SCALE_DIRECTIONS, PoolSeries
from .prefork import check_directory
from .series import (
    AUTOMATIC_TRANSITIONS,
    BREAKER_STATES,
    LATENCY_BUCKETS,
    MANUAL_ACTIONS,
    REJECTION_REASONS,
    TICK_SECONDS,
    Series,
)
from .store import Store

__all__ = ["MultiprocessMirror", "refresh_local", "store"]


def _counter(key: str) -> Counter:
    family = FAMILIES[key]
    return Counter(family.name, family.help, family.labels, registry=None)


def _gauge(key: str) -> Gauge:
    family = FAMILIES[key]
    mode: Any = family.merge  # every gauge of the table says how workers' values merge
    return Gauge(family.name, family.help, family.labels, registry=None, multiprocess_mode=mode)


def _histogram(key: str, buckets: Sequence[float]) -> Histogram:
    family = FAMILIES[key]
    return Histogram(family.name, family.help, family.labels, buckets=buckets, registry=None)


class MultiprocessMirror:
    """Writes every event of a :class:`Store` into prometheus_client's mmap files."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = _counter("requests")
        self.rejections = _counter("rejected")
        self.cold_starts = _counter("cold_starts")
        self.transitions = _counter("transitions")
        self.manual_actions = _counter("manual_actions")
        self.trips = _counter("trips")
        self.circuit_time = _counter("circuit_time")
        self.scale_events = _counter("scale_events")
        self.pool_wait = _histogram("pool_wait", LATENCY_BUCKETS)
        self.state = _gauge("state")
        self.degraded = _gauge("degraded")
        self.pool = {key: _gauge(key) for key in POOL_GAUGES}
        self.limit = {key: _gauge(key) for key in (*LIMIT_GAUGES, "limit_rtt")}
        self.memory_used = _gauge("memory_used")
        # Created on the first known limit: a label-less gauge exists (as 0) from its
        # creation, and "no limit" must be absent, not 0.
        self.memory_limit: Gauge | None = None
        self.window = [_gauge(key) for key in WINDOW_FIGURES]
        # Time-in-state is a counter here: remember what was already added per breaker.
        self._time_seen: dict[tuple[str, str], tuple[int, float]] = {}

    def forked(self) -> None:
        """In a forked child: a fresh lock (the parent's refresher may have held it)."""
        self._lock = threading.Lock()

    # -- events ------------------------------------------------------------------------------

    @contained("multiprocess")
    def series_added(self, series: Series) -> None:
        name = series.name
        histogram = _histogram("duration", series.bounds).labels(name)
        success = self.requests.labels(name, "success")
        error = self.requests.labels(name, "error")
        cold = self.cold_starts.labels(name)
        for reason in REJECTION_REASONS:
            self.rejections.labels(name, reason)  # exported as 0 from the start
        observe = histogram.observe

        @contained("multiprocess")
        def sink(duration: float, ok: bool, cold_start: bool) -> None:
            observe(duration)
            (success if ok else error).inc()
            if cold_start:
                cold.inc()

        series.add_sink(sink)

    @contained("multiprocess")
    def http_added(self, http: HttpSeries) -> None:
        # An absent attribute is an empty label value, which Prometheus drops at ingestion:
        # the same series as the label-less ones this process's own collector writes.
        histogram = _histogram("http_duration", http.bounds)
        active = _gauge("http_active")

        @contained("multiprocess")
        def duration(key: Key, seconds: float) -> None:
            histogram.labels(*key).observe(seconds)

        @contained("multiprocess")
        def started(key: ActiveKey, delta: int) -> None:
            active.labels(*key).inc(delta)

        http.add_sink(duration, started)

    @contained("multiprocess")
    def rejected(self, series: Series, reason: str) -> None:
        self.rejections.labels(series.name, reason).inc()

    @contained("multiprocess")
    def transition(self, series: Series, old: str, new: str) -> None:
        self.transitions.labels(series.name, old, new).inc()
        for state in BREAKER_STATES:
            self.state.labels(series.name, state).set(1.0 if state == new else 0.0)

    @contained("multiprocess")
    def tripped(self, series: Series, reason: str) -> None:
        self.trips.labels(series.name, reason).inc()

    @contained("multiprocess")
    def manual_action(self, series: Series, action: str) -> None:
        self.manual_actions.labels(series.name, action).inc()

    @contained("multiprocess")
    def breaker_attached(self, series: Series) -> None:
        for old, new in AUTOMATIC_TRANSITIONS:
            self.transitions.labels(series.name, old, new)  # exported as 0 from now on
        for action in MANUAL_ACTIONS:
            self.manual_actions.labels(series.name, action)
        self.trips.labels(series.name, "consecutive_failures")

    @contained("multiprocess")
    def pool_added(self, pool: PoolSeries) -> None:
        for direction in SCALE_DIRECTIONS:
            self.scale_events.labels(pool.name, direction)

    @contained("multiprocess")
    def pool_waited(self, pool: PoolSeries, wait: float) -> None:
        self.pool_wait.labels(pool.name).observe(wait)

    @contained("multiprocess")
    def pool_scaled(self, pool: PoolSeries, direction: str, count: int) -> None:
        self.scale_events.labels(pool.name, direction).inc(count)
        self._pool_gauges(pool)

    # -- gauges ------------------------------------------------------------------------------

    def refresh(self, store: Store) -> None:
        """Write the current gauge values of ``store`` (and time-in-state increments)."""
        try:
            with self._lock:
                for series in store.all_series():
                    self._series_gauges(series)
                reported = set()
                for pool in store.all_pools():
                    if self._pool_gauges(pool):
                        reported.add(pool.name)
                for series in store.all_series():
                    override = series.pool_override
                    if override is not None and series.name not in reported:
                        for key, value in zip(OVERRIDE_GAUGES, override, strict=True):
                            self.pool[key].labels(series.name).set(value)
                for entry in store.all_limits():
                    self._limit_gauges(entry)
                used, limit = store.memory()
                self.memory_used.set(used)
                if limit > 0:
                    if self.memory_limit is None:
                        self.memory_limit = _gauge("memory_limit")
                    self.memory_limit.set(limit)
        except Exception as error:  # a broken breaker or pool, or the directory is gone
            report("multiprocess", error)

    def _series_gauges(self, series: Series) -> None:
        name = series.name
        for gauge, value in zip(self.window, series.window_sums().figures(), strict=True):
            gauge.labels(name).set(value)
        breaker = series.breaker()
        view = series.breaker_view()
        if breaker is None or view is None:
            return
        degraded = storage_degraded(breaker)
        if degraded is not None:
            self.degraded.labels(name).set(1.0 if degraded else 0.0)
        state, durations = view
        for s in BREAKER_STATES:
            self.state.labels(name, s).set(1.0 if s == state else 0.0)
            seconds = durations.get(s, 0.0)
            seen_id, seen = self._time_seen.get((name, s), (id(breaker), 0.0))
            if seen_id != id(breaker):
                seen = 0.0  # another breaker took over the name: its time starts at 0
            if seconds > seen:
                self.circuit_time.labels(name, s).inc(seconds - seen)
            self._time_seen[(name, s)] = (id(breaker), max(seconds, seen))

    def _pool_gauges(self, pool: PoolSeries) -> bool:
        gauges = pool.gauges()
        if gauges is None:
            return False
        for key, value in zip(POOL_GAUGES, gauges, strict=True):
            self.pool[key].labels(pool.name).set(value)
        return True

    def _limit_gauges(self, entry: LimitSeries) -> None:
        gauges = entry.gauges()
        if gauges is None:
            return
        for key, value in zip(LIMIT_GAUGES, gauges, strict=True):
            self.limit[key].labels(entry.name).set(value)
        for estimate, rtt in zip(LIMIT_RTT_ESTIMATES, entry.rtts(), strict=True):
            if rtt is not None:
                self.limit["limit_rtt"].labels(entry.name, estimate).set(rtt)


# -- the process-wide store ------------------------------------------------------------------

_lock = threading.Lock()
_store: Store | None = None
_thread: threading.Thread | None = None


def store() -> Store:
    """The process's multiprocess-mode store (all registries share it: exposition is global)."""
    global _store
    with _lock:
        if _store is None:
            check_directory()
            _store = Store(MultiprocessMirror())
            _start_thread()
        return _store


def refresh_local() -> None:
    """Write this process's gauges now (before a scrape reads the files)."""
    current = _store
    if current is not None and current.mirror is not None:
        current.mirror.refresh(current)


def _run() -> None:
    while True:
        time.sleep(TICK_SECONDS)
        refresh_local()


def _start_thread() -> None:
    global _thread
    _thread = threading.Thread(target=_run, name="switchgear-metrics", daemon=True)
    _thread.start()


def _after_fork() -> None:
    # Threads do not survive fork; a pre-forked worker needs its own refresher.
    global _lock
    _lock = threading.Lock()
    if _store is not None:
        _store.forked()  # the mirror's lock too (see MultiprocessMirror.forked)
        _start_thread()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

"""Prometheus exposition: one custom collector per registry, and ``render_latest``.

The collector turns a :class:`~switchgear._metrics.series.Store` into metric families at
scrape time, so recording a call never touches prometheus_client (its pre-bound
``Histogram.observe`` + ``Counter.inc`` alone cost several times our whole hot path).
Gauges (breaker state, pool sizes, memory, sliding-window figures) are computed here too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from itertools import accumulate

from prometheus_client import REGISTRY, CollectorRegistry, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from .._breaker.breaker import storage_degraded
from .archive import scrape_guard
from .pool_series import SCALE_DIRECTIONS
from .series import BREAKER_STATES, LATENCY_BUCKETS, REJECTION_REASONS
from .store import Store

_late_dir_warned = False


def multiprocess_mode() -> bool:
    """True when metrics go to the files of ``PROMETHEUS_MULTIPROC_DIR``.

    prometheus_client picks its value storage when it is imported: a directory set later is
    not used by it, so switchgear then keeps its metrics in this process and renders them
    from here too (recording to files that nothing reads, or reading files nothing wrote,
    would lose every count).
    """
    global _late_dir_warned
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return False
    if values.ValueClass is values.MutexValue:
        if not _late_dir_warned:
            _late_dir_warned = True
            logging.getLogger("switchgear").warning(
                "switchgear: PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was "
                "imported; metrics stay in this process. Set it before the server starts."
            )
        return False
    return True


__all__ = ["HELP", "Collector", "bucket_labels", "render_latest"]

# One place for every family's HELP text, shared with the multiprocess metrics.
HELP = {
    "switchgear_requests": "Calls executed, by outcome (error: the breaker counted a failure).",
    "switchgear_rejected": "Calls not executed, by reason.",
    "switchgear_cold_starts": "Calls that waited for a pool resource created for them.",
    "switchgear_request_duration_seconds": "Duration of executed calls in seconds.",
    "switchgear_circuit_state": "Circuit breaker state: 1 for the current state, 0 for the others.",
    "switchgear_circuit_storage_degraded": (
        "1 while a shared breaker runs on local state because its storage (Redis) is unreachable."
    ),
    "switchgear_circuit_transitions": "Circuit breaker state transitions.",
    "switchgear_circuit_time_seconds": "Seconds the circuit breaker has spent in each state.",
    "switchgear_pool_size": "Resources in the pool (idle and in use).",
    "switchgear_pool_in_use": "Pool resources currently leased.",
    "switchgear_pool_available": "Idle pool resources.",
    "switchgear_pool_waiting": "Callers waiting for a pool resource.",
    "switchgear_pool_min_size": "Configured minimum pool size.",
    "switchgear_pool_max_size": "Configured maximum pool size.",
    "switchgear_pool_wait_seconds": "Seconds spent waiting in pool acquire.",
    "switchgear_pool_scale_events": "Pool resources added (up) or retired (down).",
    "switchgear_memory_used_bytes": "Resident memory of the process in bytes.",
    "switchgear_memory_limit_bytes": "Memory limit (cgroup, else RLIMIT_AS); absent when none.",
    "switchgear_window_requests_per_second": "Calls per second over the sliding window.",
    "switchgear_window_error_ratio": "Errors / calls over the sliding window (0 without calls).",
    "switchgear_window_latency_avg_seconds": "Mean call duration over the sliding window.",
}

_POOL_GAUGES = ("size", "in_use", "available", "waiting", "min_size", "max_size")
_DURATION_BUCKET = "switchgear_request_duration_seconds_bucket"
_DURATION_COUNT = "switchgear_request_duration_seconds_count"
_DURATION_SUM = "switchgear_request_duration_seconds_sum"

_le_cache: dict[tuple[float, ...], tuple[str, ...]] = {}


def bucket_labels(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The ``le`` label values for ``bounds``, ``+Inf`` included, formatted like the client."""
    labels = _le_cache.get(bounds)
    if labels is None:
        labels = (*(floatToGoString(b) for b in bounds), "+Inf")  # type: ignore[no-untyped-call]
        _le_cache[bounds] = labels
    return labels


def _counter(name: str, labels: list[str], unit: str = "") -> CounterMetricFamily:
    return CounterMetricFamily(name, HELP[name], labels=labels, unit=unit)


def _gauge(name: str, labels: list[str], unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, HELP[name], labels=labels, unit=unit)


def _histogram(name: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, HELP[name], labels=labels, unit="seconds")


def _buckets(les: tuple[str, ...], counts: Iterable[int]) -> list[tuple[str, float]]:
    return list(zip(les, map(float, accumulate(counts)), strict=True))


class _Families:
    """Fresh, empty families in exposition order, typed by kind."""

    def __init__(self) -> None:
        c, g, h = _counter, _gauge, _histogram
        self.counters = {
            "requests": c("switchgear_requests", ["name", "outcome"]),
            "rejected": c("switchgear_rejected", ["name", "reason"]),
            "cold_starts": c("switchgear_cold_starts", ["name"]),
            "transitions": c("switchgear_circuit_transitions", ["name", "from_state", "to_state"]),
            "circuit_time": c("switchgear_circuit_time_seconds", ["name", "state"], "seconds"),
            "scale_events": c("switchgear_pool_scale_events", ["pool", "direction"]),
        }
        self.histograms = {
            "duration": h("switchgear_request_duration_seconds", ["name"]),
            "pool_wait": h("switchgear_pool_wait_seconds", ["pool"]),
        }
        self.gauges = {
            "state": g("switchgear_circuit_state", ["name", "state"]),
            "degraded": g("switchgear_circuit_storage_degraded", ["name"]),
            **{key: g(f"switchgear_pool_{key}", ["pool"]) for key in _POOL_GAUGES},
            "memory_used": g("switchgear_memory_used_bytes", [], "bytes"),
            "memory_limit": g("switchgear_memory_limit_bytes", [], "bytes"),
            "qps": g("switchgear_window_requests_per_second", ["name"]),
            "error_ratio": g("switchgear_window_error_ratio", ["name"]),
            "latency_avg": g("switchgear_window_latency_avg_seconds", ["name"], "seconds"),
        }

    def all(self) -> list[Metric]:
        c, g, h = self.counters, self.gauges, self.histograms
        return [
            c["requests"],
            c["rejected"],
            c["cold_starts"],
            h["duration"],
            g["state"],
            g["degraded"],
            c["transitions"],
            c["circuit_time"],
            *(g[key] for key in _POOL_GAUGES),
            h["pool_wait"],
            c["scale_events"],
            g["memory_used"],
            g["memory_limit"],
            g["qps"],
            g["error_ratio"],
            g["latency_avg"],
        ]


class Collector:
    """A prometheus_client collector for one :class:`Store` (one per registry)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def describe(self) -> list[Metric]:
        # Names only: lets the registry catch a clash with someone else's metric without
        # running a whole scrape at registration.
        return _Families().all()

    def collect(self) -> Iterator[Metric]:
        fam = _Families()
        self._series(fam)
        self._pools(fam)
        used, limit = self._store.memory()
        fam.gauges["memory_used"].add_metric([], used)
        if limit > 0:  # no limit: absent, so used / limit yields no data rather than +Inf
            fam.gauges["memory_limit"].add_metric([], limit)
        return (family for family in fam.all() if family.samples)

    def _series(self, fam: _Families) -> None:
        # Samples are appended directly (not through add_metric, which zips label lists
        # into dicts per sample): a scrape of 100 names must stay well under 20 ms.
        c, g = fam.counters, fam.gauges
        requests = c["requests"].samples
        rejected = c["rejected"].samples
        cold_starts = c["cold_starts"].samples
        duration = fam.histograms["duration"].samples
        state_samples = g["state"].samples
        degraded_samples = g["degraded"].samples
        time_samples = c["circuit_time"].samples
        qps, error_ratio, latency_avg = (
            g["qps"].samples,
            g["error_ratio"].samples,
            g["latency_avg"].samples,
        )
        for series in self._store.all_series():
            # The breaker first: reading it applies due transitions (OPEN -> HALF_OPEN after
            # open_timeout), whose listener counts them before the snapshot is taken.
            view = series.breaker_view()
            snap = series.snapshot()
            name = series.name
            n = {"name": name}
            requests.append(
                Sample(
                    "switchgear_requests_total",
                    {"name": name, "outcome": "success"},
                    snap.requests - snap.errors,
                )
            )
            requests.append(
                Sample("switchgear_requests_total", {"name": name, "outcome": "error"}, snap.errors)
            )
            for reason in REJECTION_REASONS:
                rejected.append(
                    Sample(
                        "switchgear_rejected_total",
                        {"name": name, "reason": reason},
                        snap.rejected[reason],
                    )
                )
            cold_starts.append(Sample("switchgear_cold_starts_total", n, snap.cold_starts))
            cumulative = 0
            for le, count in zip(bucket_labels(series.bounds), snap.counts, strict=True):
                cumulative += count
                duration.append(
                    Sample(_DURATION_BUCKET, {"name": name, "le": le}, float(cumulative))
                )
            duration.append(Sample(_DURATION_COUNT, n, float(cumulative)))
            duration.append(Sample(_DURATION_SUM, n, snap.latency_sum))
            for (old, new), count in sorted(snap.transitions.items()):
                c["transitions"].add_metric([name, old, new], count)
            degraded = storage_degraded(series.breaker()) if view is not None else None
            if degraded is not None:
                flag = 1.0 if degraded else 0.0
                degraded_samples.append(Sample("switchgear_circuit_storage_degraded", n, flag))
            if view is not None:
                state, durations = view
                states = BREAKER_STATES if state in BREAKER_STATES else (*BREAKER_STATES, state)
                for s in states:
                    labels = {"name": name, "state": s}
                    value = 1.0 if s == state else 0.0
                    state_samples.append(Sample("switchgear_circuit_state", labels, value))
                    seconds = durations.get(s, 0.0)
                    time_samples.append(
                        Sample("switchgear_circuit_time_seconds_total", labels, seconds)
                    )
            w = snap.window
            qps.append(Sample("switchgear_window_requests_per_second", n, w.requests / w.covered))
            ratio = w.errors / w.requests if w.requests else 0.0
            error_ratio.append(Sample("switchgear_window_error_ratio", n, ratio))
            mean = w.latency_sum / w.requests if w.requests else 0.0
            latency_avg.append(Sample("switchgear_window_latency_avg_seconds", n, mean))

    def _pools(self, fam: _Families) -> None:
        c, g, h = fam.counters, fam.gauges, fam.histograms
        les = bucket_labels(LATENCY_BUCKETS)
        reported: set[str] = set()
        for pool in self._store.all_pools():
            counts, wait_sum, scaled = pool.snapshot()
            h["pool_wait"].add_metric([pool.name], _buckets(les, counts), wait_sum)
            for direction in SCALE_DIRECTIONS:
                c["scale_events"].add_metric([pool.name, direction], scaled.get(direction, 0))
            gauges = pool.gauges()
            if gauges is not None:
                reported.add(pool.name)
                for key, value in zip(_POOL_GAUGES, gauges, strict=True):
                    g[key].add_metric([pool.name], value)
        # update_pool_stats() figures, labelled with the Metrics name, unless a live pool of
        # that name reported already (one series per label set).
        for series in self._store.all_series():
            override = series.pool_override
            if override is not None and series.name not in reported:
                for key, value in zip(("size", "in_use", "available"), override, strict=True):
                    g[key].add_metric([series.name], value)


def render_latest(
    registry: CollectorRegistry | None = None, accept: str | None = None
) -> tuple[bytes, str]:
    """The body and content type for a ``/metrics`` response.

    ``accept`` is the request's ``Accept`` header: OpenMetrics when it asks for it, else the
    Prometheus text format. With ``PROMETHEUS_MULTIPROC_DIR`` set, every process's files are
    merged by a fresh ``MultiProcessCollector`` (``registry`` is then ignored: file-backed
    metrics are not registered anywhere); otherwise ``registry`` (default: the global one)
    is rendered.
    """
    encoder, content_type = choose_encoder(accept or "")
    if multiprocess_mode():
        from .multiprocess import refresh_local

        refresh_local()  # this worker's gauges are current even if it was idle
        target = CollectorRegistry()
        MultiProcessCollector(target)  # type: ignore[no-untyped-call]
        # No dead worker's files are folded into the archive while they are read.
        with scrape_guard(os.environ["PROMETHEUS_MULTIPROC_DIR"]):
            return encoder(target), content_type
    target = REGISTRY if registry is None else registry
    return encoder(target), content_type

"""Prometheus exposition: one custom collector per registry.

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

from prometheus_client import values
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

from .._breaker.breaker import storage_degraded
from .exemplars import Slot, exemplar_labels
from .families import (
    FAMILIES,
    HTTP_LABELS,
    LIMIT_GAUGES,
    LIMIT_RTT_ESTIMATES,
    OVERRIDE_GAUGES,
    POOL_GAUGES,
    WINDOW_FIGURES,
)
from .http_series import HttpSeries
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


__all__ = ["Collector", "bucket_labels", "multiprocess_mode"]

# Sample names of the families the hot loop of Collector._series appends to directly.
_REQUESTS = FAMILIES["requests"].sample_name
_REJECTED = FAMILIES["rejected"].sample_name
_COLD_STARTS = FAMILIES["cold_starts"].sample_name
_DURATION_BUCKET = f"{FAMILIES['duration'].name}_bucket"
_DURATION_COUNT = f"{FAMILIES['duration'].name}_count"
_DURATION_SUM = f"{FAMILIES['duration'].name}_sum"
_STATE = FAMILIES["state"].sample_name
_DEGRADED = FAMILIES["degraded"].sample_name
_CIRCUIT_TIME = FAMILIES["circuit_time"].sample_name
_WINDOW = tuple((key, FAMILIES[key].sample_name) for key in WINDOW_FIGURES)
_HTTP = FAMILIES["http_duration"].name
_HTTP_ACTIVE = FAMILIES["http_active"].sample_name

_le_cache: dict[tuple[float, ...], tuple[str, ...]] = {}


def bucket_labels(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The ``le`` label values for ``bounds``, ``+Inf`` included, formatted like the client."""
    labels = _le_cache.get(bounds)
    if labels is None:
        labels = (*(floatToGoString(b) for b in bounds), "+Inf")  # type: ignore[no-untyped-call]
        _le_cache[bounds] = labels
    return labels


def _exemplar(slot: Slot) -> Exemplar | None:
    """The OpenMetrics exemplar of a bucket's slot (None: no traced call landed there)."""
    if slot is None:
        return None
    return Exemplar(exemplar_labels(slot), slot[2], slot[3])


def _present(labels: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str]:
    """The labels whose value is not empty (an absent attribute has no label)."""
    return {label: value for label, value in zip(labels, values, strict=True) if value}


def _buckets(les: tuple[str, ...], counts: Iterable[int]) -> list[tuple[str, float]]:
    return list(zip(les, map(float, accumulate(counts)), strict=True))


class _Families:
    """Fresh, empty families, one per entry of the family table, typed by kind."""

    def __init__(self) -> None:
        self.counters: dict[str, CounterMetricFamily] = {}
        self.gauges: dict[str, GaugeMetricFamily] = {}
        self.histograms: dict[str, HistogramMetricFamily] = {}
        self._order: list[Metric] = []
        for key, f in FAMILIES.items():
            labels = list(f.labels)
            family: Metric
            if f.kind == "counter":
                family = self.counters[key] = CounterMetricFamily(
                    f.name, f.help, labels=labels, unit=f.unit
                )
            elif f.kind == "gauge":
                family = self.gauges[key] = GaugeMetricFamily(
                    f.name, f.help, labels=labels, unit=f.unit
                )
            else:
                family = self.histograms[key] = HistogramMetricFamily(
                    f.name, f.help, labels=labels, unit=f.unit
                )
            self._order.append(family)

    def all(self) -> list[Metric]:
        """Every family, in the table's order."""
        return self._order


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
        self._limits(fam)
        if self._store.http is not None:
            self._http(fam, self._store.http)
        used, limit = self._store.memory()
        fam.gauges["memory_used"].add_metric([], used)
        if limit > 0:  # no limit: absent, so used / limit yields no data rather than +Inf
            fam.gauges["memory_limit"].add_metric([], limit)
        return (family for family in fam.all() if family.samples)

    def _series(self, fam: _Families) -> None:
        # Samples are appended directly (not through add_metric, which zips label lists
        # into dicts per sample): a scrape of 100 names must stay well under 20 ms.
        requests = fam.counters["requests"].samples
        rejected = fam.counters["rejected"].samples
        cold_starts = fam.counters["cold_starts"].samples
        duration = fam.histograms["duration"].samples
        state_samples = fam.gauges["state"].samples
        degraded_samples = fam.gauges["degraded"].samples
        time_samples = fam.counters["circuit_time"].samples
        window = [(fam.gauges[key].samples, sample) for key, sample in _WINDOW]
        for series in self._store.all_series():
            # The breaker first: reading it applies due transitions (OPEN -> HALF_OPEN after
            # open_timeout), whose listener counts them before the snapshot is taken.
            view = series.breaker_view()
            snap = series.snapshot()
            name = series.name
            n = {"name": name}
            success = snap.requests - snap.errors
            requests.append(Sample(_REQUESTS, {"name": name, "outcome": "success"}, success))
            requests.append(Sample(_REQUESTS, {"name": name, "outcome": "error"}, snap.errors))
            for reason in REJECTION_REASONS:
                labels = {"name": name, "reason": reason}
                rejected.append(Sample(_REJECTED, labels, snap.rejected[reason]))
            cold_starts.append(Sample(_COLD_STARTS, n, snap.cold_starts))
            cumulative = 0
            slots = series.exemplars.slots if series.exemplars is not None else ()
            for i, (le, count) in enumerate(
                zip(bucket_labels(series.bounds), snap.counts, strict=True)
            ):
                cumulative += count
                labels = {"name": name, "le": le}
                traced = _exemplar(slots[i]) if slots else None
                duration.append(Sample(_DURATION_BUCKET, labels, float(cumulative), None, traced))
            duration.append(Sample(_DURATION_COUNT, n, float(cumulative)))
            duration.append(Sample(_DURATION_SUM, n, snap.latency_sum))
            for (old, new), count in sorted(snap.transitions.items()):
                fam.counters["transitions"].add_metric([name, old, new], count)
            for reason, count in sorted(series.trip_counts().items()):
                fam.counters["trips"].add_metric([name, reason], count)
            for action, count in sorted(series.manual_action_counts().items()):
                fam.counters["manual_actions"].add_metric([name, action], count)
            degraded = storage_degraded(series.breaker()) if view is not None else None
            if degraded is not None:
                flag = 1.0 if degraded else 0.0
                degraded_samples.append(Sample(_DEGRADED, n, flag))
            if view is not None:
                state, durations = view
                states = BREAKER_STATES if state in BREAKER_STATES else (*BREAKER_STATES, state)
                for s in states:
                    labels = {"name": name, "state": s}
                    value = 1.0 if s == state else 0.0
                    state_samples.append(Sample(_STATE, labels, value))
                    time_samples.append(Sample(_CIRCUIT_TIME, labels, durations.get(s, 0.0)))
            for (samples, sample), value in zip(window, snap.window.figures(), strict=True):
                samples.append(Sample(sample, n, value))

    def _http(self, fam: _Families, http: HttpSeries) -> None:
        durations, active = http.snapshot()
        samples = fam.histograms["http_duration"].samples
        les = bucket_labels(http.bounds)
        for key, counts in sorted(durations.items()):
            labels = _present(HTTP_LABELS, key)
            slots = http.exemplar_slots(key)
            cumulative = 0.0
            for i, le in enumerate(les):
                cumulative += counts[i]
                traced = _exemplar(slots[i]) if slots is not None else None
                bucket = {**labels, "le": le}
                samples.append(Sample(f"{_HTTP}_bucket", bucket, cumulative, None, traced))
            samples.append(Sample(f"{_HTTP}_count", labels, cumulative))
            samples.append(Sample(f"{_HTTP}_sum", labels, counts[-1]))
        gauge = fam.gauges["http_active"].samples
        for akey, n in sorted(active.items()):
            gauge.append(Sample(_HTTP_ACTIVE, _present(HTTP_LABELS[:2], akey), float(n)))

    def _pools(self, fam: _Families) -> None:
        les = bucket_labels(LATENCY_BUCKETS)
        reported: set[str] = set()
        for pool in self._store.all_pools():
            counts, wait_sum, scaled = pool.snapshot()
            fam.histograms["pool_wait"].add_metric([pool.name], _buckets(les, counts), wait_sum)
            scale_events = fam.counters["scale_events"]
            for direction in SCALE_DIRECTIONS:
                scale_events.add_metric([pool.name, direction], scaled.get(direction, 0))
            gauges = pool.gauges()
            if gauges is not None:
                reported.add(pool.name)
                for key, value in zip(POOL_GAUGES, gauges, strict=True):
                    fam.gauges[key].add_metric([pool.name], value)
        # update_pool_stats() figures, labelled with the Metrics name, unless a live pool of
        # that name reported already (one series per label set).
        for series in self._store.all_series():
            override = series.pool_override
            if override is not None and series.name not in reported:
                for key, value in zip(OVERRIDE_GAUGES, override, strict=True):
                    fam.gauges[key].add_metric([series.name], value)

    def _limits(self, fam: _Families) -> None:
        for entry in self._store.all_limits():
            gauges = entry.gauges()
            if gauges is None:
                continue
            for key, value in zip(LIMIT_GAUGES, gauges, strict=True):
                fam.gauges[key].add_metric([entry.name], value)
            for estimate, rtt in zip(LIMIT_RTT_ESTIMATES, entry.rtts(), strict=True):
                if rtt is not None:
                    fam.gauges["limit_rtt"].add_metric([entry.name, estimate], rtt)

"""An adaptive limit's gauges: the limit, calls in flight, its bounds and the RTTs it compares."""

from __future__ import annotations

import gc

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear._metrics.facade import live_limits, observe_limit
from switchgear.testing import FakeClock


def samples(registry: CollectorRegistry, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for metric in registry.collect()
        if metric.name == family
        for s in metric.samples
    }


def measured_limit(name: str, clock: FakeClock, rtt: float = 0.04) -> sg.AdaptiveLimit:
    """A limit that has completed one batch of calls (so its RTTs are known)."""
    limit = sg.AdaptiveLimit(name, initial_limit=6, min_limit=2, max_limit=9, clock=clock)
    for _ in range(12):
        limit.acquire()
        limit.release(rtt)
    clock.advance(0.2)  # past update_interval: the next release updates the policy
    limit.acquire()
    limit.release(rtt)
    assert limit.recent == pytest.approx(rtt)
    return limit


def test_prometheus_reports_limit_in_flight_bounds_and_rtts_by_the_limits_name() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    metrics = sg.Metrics("checkout", registry=registry)
    limit = measured_limit("payments-db", clock)
    metrics.attach(limit)
    limit.acquire()
    limit.acquire()
    who = (("name", "payments-db"),)
    assert samples(registry, "switchgear_limit_current") == {who: limit.limit}
    assert samples(registry, "switchgear_limit_in_flight") == {who: 2}
    assert samples(registry, "switchgear_limit_min") == {who: 2}
    assert samples(registry, "switchgear_limit_max") == {who: 9}
    rtt = samples(registry, "switchgear_limit_rtt_seconds")
    assert rtt == {
        (("estimate", "baseline"), *who): pytest.approx(0.04),
        (("estimate", "recent"), *who): pytest.approx(0.04),
    }
    limit.release(0.01)
    assert samples(registry, "switchgear_limit_in_flight") == {who: 1}


def test_rtts_are_absent_until_measured_and_a_dead_limit_disappears() -> None:
    registry = CollectorRegistry()
    limit = sg.AdaptiveLimit("fresh", clock=FakeClock())
    observe_limit(limit, registry)
    observe_limit(limit, registry)  # once is enough; again changes nothing
    assert samples(registry, "switchgear_limit_current") == {(("name", "fresh"),): 20}
    assert samples(registry, "switchgear_limit_rtt_seconds") == {}
    assert live_limits(registry) == [limit]
    del limit
    gc.collect()
    assert samples(registry, "switchgear_limit_current") == {}
    assert live_limits(registry) == []


def test_protected_exports_the_limit_it_admits_through() -> None:
    registry = CollectorRegistry()
    limit = sg.AdaptiveLimit("search-backend", initial_limit=4, min_limit=1, max_limit=8)
    metrics = sg.Metrics("search", registry=registry)

    @sg.protected("search", metrics=metrics, limit=limit)
    def search() -> int:
        return limit.in_flight

    assert search() == 1
    assert samples(registry, "switchgear_limit_current") == {(("name", "search-backend"),): 4}
    assert samples(registry, "switchgear_limit_in_flight") == {(("name", "search-backend"),): 0}


def test_attach_refuses_what_is_neither_breaker_pool_nor_limit() -> None:
    metrics = sg.Metrics("refuses", registry=CollectorRegistry())
    with pytest.raises(TypeError, match="AdaptiveLimit, not int"):
        metrics.attach(3)


def test_opentelemetry_observes_the_limit_gauges() -> None:
    reader = InMemoryMetricReader()
    metrics = sg.Metrics(
        "otel-limit",
        registry=CollectorRegistry(),
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    limit = measured_limit("otel-backend", FakeClock(), rtt=0.02)
    metrics.attach(limit)
    limit.acquire()
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, dict[tuple[tuple[str, object], ...], float]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    labels = tuple(sorted((point.attributes or {}).items()))
                    points.setdefault(metric.name, {})[labels] = point.value
    who = (("name", "otel-backend"),)
    assert points["switchgear.limit.current"] == {who: limit.limit}
    assert points["switchgear.limit.in_flight"] == {who: 1}
    assert points["switchgear.limit.min"] == {who: 2}
    assert points["switchgear.limit.max"] == {who: 9}
    assert points["switchgear.limit.rtt"] == {
        (("estimate", "baseline"), *who): pytest.approx(0.02),
        (("estimate", "recent"), *who): pytest.approx(0.02),
    }

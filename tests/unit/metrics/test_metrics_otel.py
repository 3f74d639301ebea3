"""OpenTelemetry export: SDK provider + in-memory reader; the global provider set later."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

import switchgear as sg
from tests.unit.metrics.fakes import FakeBreaker, FakePool

BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_names = itertools.count()

Points = dict[frozenset[tuple[str, Any]], Any]


def unique(prefix: str = "otel") -> str:
    return f"{prefix}-{next(_names)}"


def sdk() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]), reader


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }


def points(metric: Any) -> Points:
    return {frozenset(p.attributes.items()): p for p in metric.data.data_points}


def attrs(**labels: str) -> frozenset[tuple[str, Any]]:
    return frozenset(labels.items())


def test_duration_histogram_has_the_twelve_bounds_and_right_counts() -> None:
    provider, reader = sdk()
    m = sg.Metrics(unique(), registry=CollectorRegistry(), meter_provider=provider)
    between = [(a + b) / 2 for a, b in itertools.pairwise(BOUNDS)]
    durations = [0.0005, *BOUNDS, *between, 12.0]
    for d in durations:
        m.record_request(d, True)
    metric = collect(reader)["switchgear.request.duration"]
    assert metric.unit == "s"
    point = points(metric)[attrs(name=m.name)]
    assert tuple(point.explicit_bounds) == BOUNDS
    # Per-bucket (not cumulative): the first holds 0.0005 and 0.001; each next one its
    # bound and the midpoint below it; the last (> 10 s) the 12 s call.
    assert list(point.bucket_counts) == [2] + [2] * 11 + [1]
    assert point.count == len(durations)
    assert point.sum == pytest.approx(sum(durations))


def test_counters_and_observable_gauges_report_the_same_numbers() -> None:
    provider, reader = sdk()
    m = sg.Metrics(unique(), registry=CollectorRegistry(), meter_provider=provider)
    breaker = FakeBreaker(m.name)
    pool = FakePool(unique("pool"), min_size=1, max_size=8)
    m.attach(breaker)
    m.attach(pool)
    m.update_memory_stats(5_000, 10_000)
    m.record_request(0.01, True)
    m.record_request(0.02, False, cold_start=True)
    m.record_rejection("pool_timeout")
    breaker.move(sg.BreakerState.OPEN)
    breaker.durations[sg.BreakerState.CLOSED] = 7.0
    pool.acquired(0.003)
    pool.scaled("up", 2)

    got = collect(reader)
    n = m.name
    requests = points(got["switchgear.requests"])
    assert requests[attrs(name=n, outcome="success")].value == 1
    assert requests[attrs(name=n, outcome="error")].value == 1
    assert got["switchgear.requests"].data.is_monotonic
    rejected = points(got["switchgear.rejected"])
    assert rejected[attrs(name=n, reason="pool_timeout")].value == 1
    assert rejected[attrs(name=n, reason="circuit_open")].value == 0
    assert points(got["switchgear.cold_starts"])[attrs(name=n)].value == 1

    state = got["switchgear.circuit.state"]
    assert state.unit == ""  # not "1": exporters would rename it ..._ratio
    values = {dict(k)["state"]: p.value for k, p in points(state).items()}
    assert values == {"closed": 0, "open": 1, "half_open": 0, "forced_open": 0, "disabled": 0}
    transitions = points(got["switchgear.circuit.transitions"])
    assert transitions[attrs(name=n, from_state="closed", to_state="open")].value == 1
    time_in = points(got["switchgear.circuit.time"])
    assert got["switchgear.circuit.time"].unit == "s"
    assert time_in[attrs(name=n, state="closed")].value == 7.0

    p = pool.name
    for field, value in {"size": 3, "in_use": 2, "available": 1, "waiting": 4}.items():
        assert points(got[f"switchgear.pool.{field}"])[attrs(pool=p)].value == value
    assert points(got["switchgear.pool.min_size"])[attrs(pool=p)].value == 1
    assert points(got["switchgear.pool.max_size"])[attrs(pool=p)].value == 8
    scale = points(got["switchgear.pool.scale_events"])
    assert scale[attrs(pool=p, direction="up")].value == 2
    assert scale[attrs(pool=p, direction="down")].value == 0
    wait = points(got["switchgear.pool.wait"])[attrs(pool=p)]
    assert (wait.count, tuple(wait.explicit_bounds)) == (1, BOUNDS)

    assert points(got["switchgear.memory.used"])[frozenset()].value == 5_000
    assert points(got["switchgear.memory.limit"])[frozenset()].value == 10_000
    assert got["switchgear.memory.used"].unit == "By"
    assert points(got["switchgear.window.error_ratio"])[attrs(name=n)].value == 0.5
    avg = points(got["switchgear.window.latency_avg"])[attrs(name=n)].value
    assert avg == pytest.approx(0.015)
    qps = points(got["switchgear.window.requests_per_second"])[attrs(name=n)].value
    assert qps > 0


def test_one_set_of_instruments_per_provider(caplog: pytest.LogCaptureFixture) -> None:
    provider, reader = sdk()
    registry = CollectorRegistry()
    caplog.set_level(logging.WARNING)
    a = sg.Metrics(unique(), registry=registry, meter_provider=provider)
    b = sg.Metrics(unique(), registry=registry, meter_provider=provider)
    again = sg.Metrics(a.name, registry=registry, meter_provider=provider)
    a.record_request(0.1, True)
    b.record_request(0.1, True)
    again.record_request(0.1, True)
    assert "created already" not in caplog.text  # the SDK's duplicate-instrument warning
    requests = points(collect(reader)["switchgear.requests"])
    assert requests[attrs(name=a.name, outcome="success")].value == 2
    assert requests[attrs(name=b.name, outcome="success")].value == 1
    duration = points(collect(reader)["switchgear.request.duration"])
    assert duration[attrs(name=a.name)].count == 2


def test_no_sdk_means_no_per_call_work() -> None:
    m = sg.Metrics(unique(), registry=CollectorRegistry(), meter_provider=NoOpMeterProvider())
    m.record_request(0.1, True)
    assert m.series.sinks == ()  # the hot path has nothing to call


GLOBAL_LATER = textwrap.dedent(
    """
    import json, time
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry
    import switchgear as sg

    m = sg.Metrics("late", registry=CollectorRegistry())  # global provider: the API proxy
    m.record_request(0.3, True)
    sinks_before = len(m.series.sinks)

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    time.sleep(1.2)  # noticed on the next call after at most a second
    for d in (0.002, 0.02, 0.2):
        m.record_request(d, False)

    got = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                got[metric.name] = [
                    (dict(p.attributes), getattr(p, "value", None), getattr(p, "count", None),
                     list(getattr(p, "explicit_bounds", []) or []))
                    for p in metric.data.data_points
                ]
    print(json.dumps({"sinks_before": sinks_before, "got": got}))
    """
)


def test_global_provider_set_after_the_metrics_still_gets_data() -> None:
    result = subprocess.run(
        [sys.executable, "-c", GLOBAL_LATER], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["sinks_before"] == 0  # no SDK yet: nothing per call
    got = out["got"]
    requests = {p[0]["outcome"]: p[1] for p in got["switchgear.requests"]}
    assert requests == {"success": 1, "error": 3}  # observed from our own counts: all calls
    [(labels, _, count, bounds)] = got["switchgear.request.duration"]
    assert labels == {"name": "late"}
    assert count == 3  # the calls made after the provider was set
    assert tuple(bounds) == BOUNDS


def test_a_real_pool_reports_every_acquisition_to_the_wait_histogram() -> None:
    """Immediate acquisitions reach OpenTelemetry one by one, also when it is wired later."""
    name = unique("otelpool")
    pool: sg.DynamicPool[Any] = sg.DynamicPool(None, name=name, min_size=1, max_size=2)
    plain = sg.Metrics(unique(), registry=CollectorRegistry())
    plain.attach(pool)  # Prometheus only: the pool calls nobody on its hot path
    assert pool._core.every == ()
    pool.release(pool.acquire())
    provider, reader = sdk()
    m = sg.Metrics(unique(), registry=CollectorRegistry(), meter_provider=provider)
    m.attach(pool)
    assert pool._core.every != ()
    for _ in range(3):
        pool.release(pool.acquire())
    wait = points(collect(reader)["switchgear.pool.wait"])[attrs(pool=name)]
    assert wait.count == 3
    assert tuple(wait.bucket_counts)[:1] == (3,)
    pool.close()


def test_a_provider_that_cannot_make_instruments_fails_cleanly() -> None:
    """Named in the error, and nothing left behind: the name is free for a correct Metrics."""

    class NoMeters:
        def get_meter(self, name: str) -> None:
            return None

    registry = CollectorRegistry()
    with pytest.raises(TypeError, match="meter_provider could not create"):
        sg.Metrics("half-made", registry=registry, meter_provider=NoMeters(), buckets=[1, 2])
    metrics = sg.Metrics("half-made", registry=registry)  # other buckets: no conflict
    metrics.record_request(0.1, True)
    assert metrics.stats().request_count == 1

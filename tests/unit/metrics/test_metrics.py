"""Metrics: exposition, every family of the table, sharing, validation, window, concurrency."""

from __future__ import annotations

import gc
import itertools
import math
import subprocess
import threading
import time
import tracemalloc
import weakref
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import switchgear as sg
from switchgear._metrics import render_latest
from switchgear.testing import FakeClock
from tests.conftest import require_binary
from tests.unit.metrics.fakes import FakeBreaker, FakePool, samples, types

_names = itertools.count()
BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATES = ("closed", "open", "half_open", "forced_open", "disabled")
REASONS = ("circuit_open", "half_open_full", "pool_full", "pool_timeout")


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{next(_names)}"


def fresh(**options: Any) -> tuple[sg.Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return sg.Metrics(unique(), registry=registry, **options), registry


def key(metric: str, /, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (metric, tuple(sorted(labels.items())))


# -- histogram and counters -------------------------------------------------------------------


def test_latency_buckets_are_the_twelve_documented_bounds() -> None:
    assert sg.LATENCY_BUCKETS == BOUNDS


def test_histogram_bounds_and_cumulative_counts_at_every_bound() -> None:
    m, registry = fresh()
    between = [(a + b) / 2 for a, b in itertools.pairwise(BOUNDS)]
    durations = [0.0005, *BOUNDS, *between, 12.0]
    for d in durations:
        m.record_request(d, True)

    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    hist = families["switchgear_request_duration_seconds"]
    assert hist.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in hist.samples if s.name.endswith("_bucket")]
    assert [le for le, _ in buckets] == [*(str(b) for b in BOUNDS), "+Inf"]
    for i, bound in enumerate(BOUNDS):
        # At bound i: 0.0005, the bounds 0..i (equal to a bound is inside it: le), and the
        # i midpoints below it.
        assert buckets[i] == (str(bound), 1 + (i + 1) + i), bound
        assert buckets[i][1] == sum(1 for d in durations if d <= bound)
    assert buckets[-1] == ("+Inf", len(durations))
    # The 12 s call is in +Inf only (beyond the last bound, never dropped).
    assert buckets[-1][1] - buckets[-2][1] == 1
    by_name = {s.name: s.value for s in hist.samples if "le" not in s.labels}
    assert by_name["switchgear_request_duration_seconds_count"] == len(durations)
    assert by_name["switchgear_request_duration_seconds_sum"] == pytest.approx(sum(durations))


def test_counters_by_outcome_cold_start_and_reason() -> None:
    m, registry = fresh()
    m.record_request(0.01, True)
    m.record_request(0.02, False)
    m.record_request(timedelta(milliseconds=30), True, cold_start=True)
    m.record_rejection("pool_full")
    m.record_rejection("pool_full")
    m.series.reject("circuit_open")
    m.series.record(0.5, False, True)
    s = samples(registry)
    n = m.name
    assert s[key("switchgear_requests_total", name=n, outcome="success")] == 2
    assert s[key("switchgear_requests_total", name=n, outcome="error")] == 2
    assert s[key("switchgear_cold_starts_total", name=n)] == 2
    expected = {"circuit_open": 1, "half_open_full": 0, "pool_full": 2, "pool_timeout": 0}
    for reason, count in expected.items():
        assert s[key("switchgear_rejected_total", name=n, reason=reason)] == count
    stats = m.stats()
    assert (stats.request_count, stats.success_count, stats.error_count) == (4, 2, 2)
    assert stats.cold_start_count == 2
    assert stats.avg_latency == pytest.approx((0.01 + 0.02 + 0.03 + 0.5) / 4)


def test_every_metric_of_the_design_with_its_type_and_labels() -> None:
    m, registry = fresh()
    breaker = FakeBreaker(m.name)
    pool = FakePool("engines")
    m.attach(breaker)
    m.attach(pool)
    m.update_memory_stats(1000, 4000)
    m.record_request(0.01, True)
    breaker.move(sg.BreakerState.OPEN)
    pool.acquired(0.002)
    pool.scaled("up", 1)

    name, pool_label = frozenset({"name"}), frozenset({"pool"})
    expected = {
        "switchgear_requests": ("counter", frozenset({"name", "outcome"})),
        "switchgear_rejected": ("counter", frozenset({"name", "reason"})),
        "switchgear_cold_starts": ("counter", name),
        "switchgear_request_duration_seconds": ("histogram", name),
        "switchgear_circuit_state": ("gauge", frozenset({"name", "state"})),
        "switchgear_circuit_transitions": (
            "counter",
            frozenset({"name", "from_state", "to_state"}),
        ),
        "switchgear_circuit_time_seconds": ("counter", frozenset({"name", "state"})),
        "switchgear_circuit_manual_actions": ("counter", frozenset({"name", "action"})),
        "switchgear_circuit_trips": ("counter", frozenset({"name", "reason"})),
        "switchgear_pool_size": ("gauge", pool_label),
        "switchgear_pool_in_use": ("gauge", pool_label),
        "switchgear_pool_available": ("gauge", pool_label),
        "switchgear_pool_waiting": ("gauge", pool_label),
        "switchgear_pool_min_size": ("gauge", pool_label),
        "switchgear_pool_max_size": ("gauge", pool_label),
        "switchgear_pool_wait_seconds": ("histogram", pool_label),
        "switchgear_pool_scale_events": ("counter", frozenset({"pool", "direction"})),
        "switchgear_memory_used_bytes": ("gauge", frozenset()),
        "switchgear_memory_limit_bytes": ("gauge", frozenset()),
        "switchgear_window_requests_per_second": ("gauge", name),
        "switchgear_window_error_ratio": ("gauge", name),
        "switchgear_window_latency_avg_seconds": ("gauge", name),
    }
    assert types(registry) == expected
    text = generate_latest(registry).decode()
    for family in expected:
        assert f"# HELP {family}" in text


def test_breaker_state_transitions_and_time_in_state() -> None:
    m, registry = fresh()
    breaker = FakeBreaker(m.name)
    m.attach(breaker)
    breaker.move(sg.BreakerState.OPEN)
    breaker.move(sg.BreakerState.HALF_OPEN)
    breaker.move(sg.BreakerState.OPEN)
    breaker.durations[sg.BreakerState.CLOSED] = 12.5
    breaker.durations[sg.BreakerState.OPEN] = 60.0
    s = samples(registry)
    n = m.name
    for state in STATES:
        value = 1.0 if state == "open" else 0.0
        assert s[key("switchgear_circuit_state", name=n, state=state)] == value
    t = "switchgear_circuit_transitions_total"
    assert s[key(t, name=n, from_state="closed", to_state="open")] == 1
    assert s[key(t, name=n, from_state="open", to_state="half_open")] == 1
    assert s[key(t, name=n, from_state="half_open", to_state="open")] == 1
    c = "switchgear_circuit_time_seconds_total"
    assert s[key(c, name=n, state="closed")] == 12.5
    assert s[key(c, name=n, state="open")] == 60.0
    assert s[key(c, name=n, state="disabled")] == 0.0


def test_real_breaker_reports_its_transitions(clock: FakeClock) -> None:
    registry = CollectorRegistry()
    name = unique("real")
    m = sg.Metrics(name, registry=registry, clock=clock)
    breaker = sg.CircuitBreaker(name, failure_threshold=2, open_timeout=5.0, clock=clock)
    m.attach(breaker)
    for _ in range(2):
        breaker.record_result(False)
    clock.advance(3.0)
    s = samples(registry)
    assert s[key("switchgear_circuit_state", name=name, state="open")] == 1
    assert s[key("switchgear_circuit_time_seconds_total", name=name, state="open")] == 3.0
    clock.advance(2.0)  # open_timeout elapsed: reads HALF_OPEN without any call
    s = samples(registry)
    assert s[key("switchgear_circuit_state", name=name, state="half_open")] == 1
    t = "switchgear_circuit_transitions_total"
    assert s[key(t, name=name, from_state="closed", to_state="open")] == 1
    assert s[key(t, name=name, from_state="open", to_state="half_open")] == 1


def test_automatic_transitions_are_exported_at_zero_from_attach(clock: FakeClock) -> None:
    # increase()/rate() need a sample before the first trip: a series born at 1 hides it.
    registry = CollectorRegistry()
    name = unique("zero")
    m = sg.Metrics(name, registry=registry, clock=clock)
    t = "switchgear_circuit_transitions_total"
    assert not any(k[0] == t for k in samples(registry))  # no breaker, no transitions
    breaker = sg.CircuitBreaker(name, failure_threshold=1, open_timeout=5.0, clock=clock)
    m.attach(breaker)
    automatic = [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    automatic.append(("half_open", "closed"))
    s = samples(registry)
    got = {(dict(k[1])["from_state"], dict(k[1])["to_state"]): v for k, v in s.items() if k[0] == t}
    assert got == dict.fromkeys(automatic, 0.0)  # manual transitions only once they happen
    breaker.record_result(False)
    s = samples(registry)
    assert s[key(t, name=name, from_state="closed", to_state="open")] == 1
    assert s[key(t, name=name, from_state="half_open", to_state="closed")] == 0
    breaker.force_open()
    s = samples(registry)
    assert s[key(t, name=name, from_state="open", to_state="forced_open")] == 1
    assert key(t, name=name, from_state="closed", to_state="disabled") not in s
    m.attach(breaker)  # attaching again changes nothing
    assert samples(registry)[key(t, name=name, from_state="closed", to_state="open")] == 1


def test_attaching_twice_counts_once_and_name_must_match() -> None:
    m, registry = fresh()
    breaker = FakeBreaker(m.name)
    m.attach(breaker)
    m.attach(breaker)
    sg.Metrics(m.name, registry=registry).attach(breaker)
    assert len(breaker.listeners) == 1
    pool = FakePool("p")
    m.attach(pool)
    m.attach(pool)
    assert len(pool.observers) == 1
    with pytest.raises(ValueError, match="breaker 'other'"):
        m.attach(FakeBreaker("other"))
    with pytest.raises(TypeError, match="attach"):
        m.attach(object())


def test_attach_holds_breakers_and_pools_weakly() -> None:
    m, registry = fresh()
    breaker = FakeBreaker(m.name)
    pool = FakePool(unique("pool"))
    m.attach(breaker)
    m.attach(pool)
    breaker.move(sg.BreakerState.OPEN)
    s = samples(registry)
    assert key("switchgear_circuit_state", name=m.name, state="open") in s
    assert key("switchgear_pool_size", pool=pool.name) in s
    del breaker, pool
    gc.collect()
    s = samples(registry)
    assert not any(k[0] == "switchgear_circuit_state" for k in s)
    assert not any(k[0] == "switchgear_pool_size" for k in s)
    # Counters are history: they stay.
    t = "switchgear_circuit_transitions_total"
    assert s[key(t, name=m.name, from_state="closed", to_state="open")] == 1


def test_pool_gauges_wait_histogram_and_scale_events() -> None:
    m, registry = fresh()
    pool = FakePool(unique("pool"), min_size=2, max_size=16)
    m.attach(pool)
    pool.acquired(0.0)
    pool.acquired(0.004, cold_start=True)
    pool.acquired(0.3)
    pool.scaled("up", 3)
    pool.scaled("down", 1)
    pool.scaled("up", 2)
    s = samples(registry)
    p = pool.name
    sizes = {"size": 3, "in_use": 2, "available": 1, "waiting": 4, "min_size": 2, "max_size": 16}
    for field, value in sizes.items():
        assert s[key(f"switchgear_pool_{field}", pool=p)] == value
    w = "switchgear_pool_wait_seconds"
    assert s[key(f"{w}_bucket", pool=p, le="0.001")] == 1
    assert s[key(f"{w}_bucket", pool=p, le="0.005")] == 2
    assert s[key(f"{w}_bucket", pool=p, le="0.25")] == 2
    assert s[key(f"{w}_bucket", pool=p, le="+Inf")] == 3
    assert s[key(f"{w}_sum", pool=p)] == pytest.approx(0.304)
    assert s[key("switchgear_pool_scale_events_total", pool=p, direction="up")] == 5
    assert s[key("switchgear_pool_scale_events_total", pool=p, direction="down")] == 1
    # Cold starts are recorded with the call (by @protected), not from the pool event.
    assert s[key("switchgear_cold_starts_total", name=m.name)] == 0
    stats = m.stats()
    assert (stats.pool_size, stats.pool_in_use, stats.pool_available) == (3, 2, 1)
    pool.sizes.in_use = 3  # read at read time
    assert m.stats().pool_in_use == 3


def test_immediate_acquisitions_count_as_zero_waits_even_after_the_pool_is_gone() -> None:
    """The pool counts idle-at-once acquisitions itself; the scrape folds them in."""
    m, registry = fresh()
    name = unique("quick")
    pool: sg.DynamicPool[Any] = sg.DynamicPool(None, name=name, min_size=2, max_size=2)
    pool.release(pool.acquire())  # before attach: still counted (the counter starts with it)
    m.attach(pool)
    for _ in range(5):
        pool.release(pool.acquire())
    held = [pool.acquire(), pool.acquire()]
    w = "switchgear_pool_wait_seconds"
    s = samples(registry)
    assert s[key(f"{w}_count", pool=name)] == 8
    assert s[key(f"{w}_bucket", pool=name, le="0.001")] == 8
    assert s[key(f"{w}_sum", pool=name)] == 0.0
    for resource in held:
        pool.release(resource)
    pool.close()
    del pool, held
    gc.collect()
    s = samples(registry)
    assert s[key(f"{w}_count", pool=name)] == 8  # a counter never goes back


def test_real_pool_reports_sizes_and_waits() -> None:
    m, registry = fresh()
    pool: sg.DynamicPool[Any] = sg.DynamicPool(None, name=unique("slots"), min_size=1, max_size=3)
    m.attach(pool)
    held = [pool.acquire(), pool.acquire()]
    s = samples(registry)
    p = pool.name
    assert s[key("switchgear_pool_size", pool=p)] == 2
    assert s[key("switchgear_pool_in_use", pool=p)] == 2
    assert s[key("switchgear_pool_max_size", pool=p)] == 3
    assert s[key("switchgear_pool_wait_seconds_count", pool=p)] == 2
    assert (m.stats().pool_size, m.stats().pool_in_use) == (2, 2)
    for resource in held:
        pool.release(resource)
    pool.close()
    del pool, held
    gc.collect()
    assert key("switchgear_pool_size", pool=p) not in samples(registry)


def test_update_pool_stats_without_a_pool() -> None:
    m, registry = fresh()
    assert (m.stats().pool_size, m.stats().pool_in_use, m.stats().pool_available) == (0, 0, 0)
    m.update_pool_stats(10, 7, 3)
    stats = m.stats()
    assert (stats.pool_size, stats.pool_in_use, stats.pool_available) == (10, 7, 3)
    s = samples(registry)
    assert s[key("switchgear_pool_size", pool=m.name)] == 10
    assert s[key("switchgear_pool_in_use", pool=m.name)] == 7
    assert s[key("switchgear_pool_available", pool=m.name)] == 3
    # An attached pool wins over the hand-set figures.
    pool = FakePool("other")
    m.attach(pool)
    assert m.stats().pool_size == 3


def test_memory_gauges_and_absent_limit() -> None:
    m, registry = fresh()
    m.update_memory_stats(123_456, 0)
    s = samples(registry)
    assert s[key("switchgear_memory_used_bytes")] == 123_456
    assert key("switchgear_memory_limit_bytes") not in s  # no limit: absent, not 0
    assert (m.stats().memory_used, m.stats().memory_limit) == (123_456, 0)
    m.update_memory_stats(1_000, 2_000)
    assert samples(registry)[key("switchgear_memory_limit_bytes")] == 2_000


def test_memory_read_from_the_process_by_default() -> None:
    m, _ = fresh()
    stats = m.stats()
    assert stats.memory_used > 1_000_000  # a Python process has at least a few MB resident
    assert stats.memory_limit >= 0


# -- sliding window ---------------------------------------------------------------------------


def test_window_two_readers_see_the_same_and_reading_resets_nothing(clock: FakeClock) -> None:
    m, _ = fresh(clock=clock)
    for i in range(10):
        m.record_request(0.1, success=i % 5 != 0)
        clock.advance(1.0)
    first = m.window_stats()
    second = m.window_stats()
    assert first == second
    assert (first.request_count, first.error_count) == (10, 2)
    assert first.error_rate == first.error_count / first.request_count == 0.2
    assert first.duration == 10.0  # the metrics are 10 s old: that is the observed span
    assert first.qps == pytest.approx(1.0)
    assert first.avg_latency == pytest.approx(0.1)


def test_window_expires_old_events(clock: FakeClock) -> None:
    m, registry = fresh(clock=clock, window=60.0)
    for _ in range(30):
        m.record_request(0.2, False)
    clock.advance(30.0)
    for _ in range(10):
        m.record_request(0.4, True)
    w = m.window_stats()
    assert (w.request_count, w.error_count) == (40, 30)
    clock.advance(31.0)  # the first batch is now 61 s old
    w = m.window_stats()
    assert (w.request_count, w.error_count, w.error_rate) == (10, 0, 0.0)
    assert w.duration == 60.0
    assert w.qps == pytest.approx(10 / 60)
    assert w.avg_latency == pytest.approx(0.4)
    s = samples(registry)
    assert s[key("switchgear_window_requests_per_second", name=m.name)] == pytest.approx(10 / 60)
    assert s[key("switchgear_window_error_ratio", name=m.name)] == 0.0
    assert s[key("switchgear_window_latency_avg_seconds", name=m.name)] == pytest.approx(0.4)
    clock.advance(60.0)
    w = m.window_stats()
    assert (w.request_count, w.qps, w.error_rate, w.avg_latency) == (0, 0.0, 0.0, 0.0)
    assert m.stats().request_count == 40  # totals never expire


def test_window_over_a_shorter_span(clock: FakeClock) -> None:
    m, _ = fresh(clock=clock)
    for second in range(60):
        for _ in range(second % 3 + 1):
            m.record_request(0.01, second % 2 == 0)
        clock.advance(1.0)
    clock.advance(0.5)
    last10 = m.window_stats(10.0)
    # Slots of the last 10 s: the current (empty) one and seconds 51..59.
    expected = range(51, 60)
    assert last10.request_count == sum(s % 3 + 1 for s in expected)
    assert last10.error_count == sum(s % 3 + 1 for s in expected if s % 2)
    assert last10.duration == 10.0
    assert last10.qps == pytest.approx(last10.request_count / 10.0)
    # 60.5 s after the first call, its one-second slot has left the 60 s window.
    whole = m.window_stats(timedelta(seconds=60))
    assert whole == m.window_stats()
    assert whole.request_count == sum(s % 3 + 1 for s in range(1, 60))
    with pytest.raises(ValueError, match="window must be <="):
        m.window_stats(61.0)
    with pytest.raises(ValueError, match="window"):
        m.window_stats(0)


def test_window_with_a_real_clock_counts_recent_calls() -> None:
    m, _ = fresh(window=5.0)
    for _ in range(100):
        m.series.record(0.001, True, False)
    w = m.window_stats()
    assert w.request_count == 100
    assert 0 < w.duration <= 5.0
    assert w.qps == pytest.approx(100 / w.duration)


# -- sharing and registries -------------------------------------------------------------------


def test_same_name_in_one_registry_shares_series() -> None:
    registry = CollectorRegistry()
    name = unique()
    a = sg.Metrics(name, registry=registry)
    b = sg.Metrics(name, registry=registry)  # no duplicate-registration error
    a.record_request(0.1, True)
    b.record_request(0.2, False)
    assert a.stats() == b.stats()
    assert a.stats().request_count == 2
    s = samples(registry)
    assert s[key("switchgear_requests_total", name=name, outcome="success")] == 1
    assert s[key("switchgear_requests_total", name=name, outcome="error")] == 1


def test_separate_registries_are_independent() -> None:
    name = unique()
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    a = sg.Metrics(name, registry=r1)
    b = sg.Metrics(name, registry=r2, buckets=(1.0, 2.0))  # other buckets are fine here
    a.record_request(0.1, True)
    assert b.stats().request_count == 0
    assert samples(r2)[key("switchgear_requests_total", name=name, outcome="success")] == 0


def test_default_registry_is_the_global_one() -> None:
    name = unique("global")
    m = sg.Metrics(name)
    m.record_request(0.1, True)
    value = REGISTRY.get_sample_value(
        "switchgear_requests_total", {"name": name, "outcome": "success"}
    )
    assert value == 1.0
    body, content_type = render_latest()
    assert f'name="{name}"'.encode() in body
    assert content_type.startswith("text/plain")


def test_same_name_with_other_buckets_window_or_clock_is_refused(clock: FakeClock) -> None:
    registry = CollectorRegistry()
    name = unique()
    sg.Metrics(name, registry=registry, clock=clock)
    with pytest.raises(ValueError, match="buckets"):
        sg.Metrics(name, registry=registry, buckets=(0.1, 1.0))
    with pytest.raises(ValueError, match="window"):
        sg.Metrics(name, registry=registry, window=30.0)
    with pytest.raises(ValueError, match="clock"):
        sg.Metrics(name, registry=registry, clock=FakeClock())
    # Default clock: joins the existing series (and its clock).
    assert sg.Metrics(name, registry=registry).stats().request_count == 0


def test_custom_buckets() -> None:
    m, registry = fresh(buckets=[0.5, 1, 2])
    for d in (0.5, 0.7, 2.0, 3.0):
        m.record_request(d, True)
    s = samples(registry)
    h = "switchgear_request_duration_seconds_bucket"
    got = [s[key(h, name=m.name, le=le)] for le in ("0.5", "1.0", "2.0", "+Inf")]
    assert got == [1, 2, 3, 4]


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"buckets": []}, ValueError, "buckets must not be empty"),
        ({"buckets": (0.1, 0.1)}, ValueError, "buckets must be strictly increasing"),
        ({"buckets": (1.0, 0.5)}, ValueError, "buckets must be strictly increasing"),
        ({"buckets": (0.1, math.inf)}, ValueError, r"buckets must be finite.*\+Inf is added"),
        ({"buckets": (-1.0, 1.0)}, ValueError, "buckets must be finite positive"),
        ({"buckets": (0.0, 1.0)}, ValueError, "buckets must be finite positive"),
        ({"buckets": (math.nan,)}, ValueError, "buckets"),
        ({"buckets": "0.1"}, TypeError, "buckets"),
        ({"buckets": (0.1, "1")}, TypeError, "buckets"),
        ({"buckets": 5}, TypeError, "buckets"),
        ({"window": 0}, ValueError, "window"),
        ({"window": -1.0}, ValueError, "window"),
        ({"window": "60"}, TypeError, "window"),
        ({"clock": 5}, TypeError, "clock"),
        ({"registry": object()}, TypeError, "registry"),
        ({"meter_provider": object()}, TypeError, "meter_provider"),
    ],
)
def test_constructor_validates(options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        sg.Metrics(unique(), registry=options.pop("registry", CollectorRegistry()), **options)


@pytest.mark.parametrize("name", ["", " padded ", None, 3])
def test_name_is_validated(name: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="name"):
        sg.Metrics(name, registry=CollectorRegistry())


def test_methods_validate() -> None:
    m, _ = fresh()
    with pytest.raises(ValueError, match="duration"):
        m.record_request(-0.001, True)
    with pytest.raises(ValueError, match="duration"):
        m.record_request(math.nan, True)
    with pytest.raises(ValueError, match="duration"):
        m.record_request(math.inf, True)
    with pytest.raises(TypeError, match="duration"):
        m.record_request("1", True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reason must be one of"):
        m.record_rejection("busy")
    with pytest.raises(ValueError, match="in_use"):
        m.update_pool_stats(1, -1, 0)
    with pytest.raises(TypeError, match="size"):
        m.update_pool_stats(1.5, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        m.update_memory_stats(1, -1)
    assert m.stats().request_count == 0
    m.record_request(0, True)  # zero is a valid duration
    for reason in REASONS:
        m.record_rejection(reason)


# -- concurrency and memory -------------------------------------------------------------------


def test_eight_threads_record_exact_counts() -> None:
    m, registry = fresh()
    record = m.series.record
    calls = 50_000
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        barrier.wait()
        for i in range(calls):
            record(0.002, (i + index) % 4 != 0, i % 10 == 0)

    stop = threading.Event()
    seen: list[int] = []

    def read() -> None:  # readers never block or disturb the writers
        while not stop.is_set():
            seen.append(m.stats().request_count)
            generate_latest(registry)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    assert seen == sorted(seen)  # monotonic as seen by a reader
    total = 8 * calls
    stats = m.stats()
    assert stats.request_count == total
    assert stats.error_count == total // 4
    assert stats.cold_start_count == total // 10
    assert m.window_stats().request_count == total
    s = samples(registry)
    h = "switchgear_request_duration_seconds"
    assert s[key(f"{h}_bucket", name=m.name, le="0.001")] == 0
    assert s[key(f"{h}_bucket", name=m.name, le="0.005")] == total
    assert s[key(f"{h}_count", name=m.name)] == total
    assert s[key(f"{h}_sum", name=m.name)] == pytest.approx(0.002 * total)


def test_threads_that_come_and_go_leave_no_state_behind() -> None:
    m, _ = fresh()

    def work() -> None:
        for _ in range(10):
            m.series.record(0.01, False, True)
        m.series.reject("pool_full")

    for _ in range(20):
        batch = [threading.Thread(target=work) for _ in range(10)]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
    gc.collect()
    stats = m.stats()  # a read folds the shards of ended threads in
    assert len(m.series._shards) == 0  # every ended thread's counts were folded in
    assert (stats.request_count, stats.error_count, stats.cold_start_count) == (2000, 2000, 2000)
    assert m.series.rejections()["pool_full"] == 200


def test_metrics_of_a_dropped_registry_are_freed() -> None:
    refs = []
    for _ in range(20):
        m = sg.Metrics("short-lived", registry=CollectorRegistry())
        m.record_request(0.1, True)
        m.attach(FakeBreaker("short-lived"))
        refs.append(weakref.ref(m.series))
        del m
    gc.collect()
    assert not any(ref() is not None for ref in refs)


def test_memory_is_constant_in_the_number_of_calls() -> None:
    # A C-level clock moving 1 ms per call: 1M calls span 1000 s, so every window slot is
    # recycled many times over.
    clock = itertools.count(1000.0, 0.001).__next__
    m, _ = fresh(clock=clock)
    record = m.series.record
    durations = [0.0005, 0.003, 0.02, 0.2, 3.0, 20.0]
    tracemalloc.start()
    try:
        for i in range(100_000):
            record(durations[i % 6], i % 7 != 0, False)
        gc.collect()
        after_100k = tracemalloc.get_traced_memory()[0]
        for i in range(900_000):
            record(durations[i % 6], i % 7 != 0, False)
        gc.collect()
        after_1m = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert m.stats().request_count == 1_000_000
    assert after_1m - after_100k < 4096


# -- exposition formats -----------------------------------------------------------------------


def test_promtool_finds_no_problems() -> None:
    promtool = require_binary("promtool")
    m, registry = fresh()
    breaker = FakeBreaker(m.name)
    pool = FakePool(unique("pool"))
    m.attach(breaker)
    m.attach(pool)
    m.update_memory_stats(10_000, 20_000)
    for d in (0.001, 0.3, 12.0):
        m.record_request(d, d < 1)
    m.record_rejection("half_open_full")
    breaker.move(sg.BreakerState.FORCED_OPEN)
    pool.acquired(0.01)
    pool.scaled("down", 1)
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(registry),
        capture_output=True,
        timeout=30,
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    assert output.strip() == ""


def test_render_latest_text_and_openmetrics() -> None:
    m, registry = fresh()
    m.record_request(0.1, True)
    body, content_type = render_latest(registry)
    assert content_type.startswith("text/plain")
    assert b"switchgear_requests_total" in body
    body, content_type = render_latest(registry, accept="application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    parsed = openmetrics_families(body.decode())  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}
    assert families["switchgear_requests"].type == "counter"
    assert families["switchgear_request_duration_seconds"].unit == "seconds"
    assert families["switchgear_memory_used_bytes"].unit == "bytes"
    assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)


def test_scrape_of_100_names_is_fast() -> None:
    registry = CollectorRegistry()
    for i in range(100):
        m = sg.Metrics(f"route-{i}", registry=registry)
        m.attach(FakeBreaker(m.name))  # dies at once: exercises the weakref path too
        for d in (0.001, 0.02, 0.3):
            m.series.record(d, True, False)
    generate_latest(registry)
    start = time.perf_counter()
    for _ in range(5):
        generate_latest(registry)
    elapsed = (time.perf_counter() - start) / 5
    assert elapsed < 0.1  # the bar is 20 ms (benchmarks/bench_metrics.py); loose here for CI


def test_recorder_for_another_clock_keeps_the_series_time(clock: FakeClock) -> None:
    """A caller timing with a different clock cannot move the window: the series reads its own."""
    m, _ = fresh(clock=clock, window=60.0)
    assert m.series.recorder_for(clock) is m.series.record_at  # same clock: the end time is used
    elsewhere = FakeClock(start=10_000.0)
    record = m.series.recorder_for(elsewhere)
    for _ in range(30):
        record(elsewhere(), 0.2, False, False)
    clock.advance(30.0)
    for _ in range(10):
        record(elsewhere(), 0.4, True, False)
    assert (m.window_stats().request_count, m.window_stats().error_count) == (40, 30)
    clock.advance(31.0)  # the first batch is 61 s old by the series' clock
    w = m.window_stats()
    assert (w.request_count, w.error_count, w.avg_latency) == (10, 0, pytest.approx(0.4))

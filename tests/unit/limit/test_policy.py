"""The limit policies, driven by made-up samples on a virtual timeline: no threads, no sleeps."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchgear._limit.policy import Aimd, Gradient, Policy, Sample, Settings, median

STEP = 0.1  # seconds between two updates, as the limiter batches them
BASE = 0.02  # the dependency's RTT without load


def make(kind: str, **options: float) -> Policy:
    fields = {k: v for k, v in options.items() if k in Settings._fields}
    extra = {k: v for k, v in options.items() if k not in Settings._fields}
    s = Settings(**fields)  # type: ignore[arg-type]
    return Gradient(s, **extra) if kind == "gradient" else Aimd(s, **extra)  # type: ignore[arg-type]


def feed(
    policy: Policy, now: float, rtts: list[float], dropped: int = 0, peak: int | None = None
) -> int:
    samples = [Sample(now, rtt, False) for rtt in rtts]
    samples += [Sample(now, 1.0, True)] * dropped
    return policy.update(now, samples, policy.limit if peak is None else peak)


KINDS = st.sampled_from(["gradient", "aimd"])
BATCH = st.tuples(
    st.lists(st.floats(0.001, 2.0), max_size=30),  # rtts of calls that succeeded
    st.integers(0, 3),  # calls that failed
    st.integers(0, 300),  # peak in flight
)
BOUNDS = st.tuples(st.integers(1, 50), st.integers(0, 150)).map(lambda b: (b[0], b[0] + b[1]))


@given(KINDS, BOUNDS, st.integers(0, 200), st.lists(BATCH, max_size=400))
@settings(max_examples=150, deadline=None)
def test_the_limit_stays_within_its_bounds(
    kind: str, bounds: tuple[int, int], initial: int, batches: list[tuple[list[float], int, int]]
) -> None:
    low, high = bounds
    initial = min(high, max(low, initial))
    policy = make(kind, min_limit=low, max_limit=high, initial_limit=initial, probe_interval=5.0)
    assert low <= policy.limit <= high
    for i, (rtts, dropped, peak) in enumerate(batches):
        limit = feed(policy, i * STEP, rtts, dropped, peak)
        assert limit == policy.limit
        assert low <= limit <= high
        assert low <= policy.estimate <= high


@given(KINDS, st.lists(BATCH, max_size=200), st.lists(BATCH, min_size=1, max_size=200))
@settings(max_examples=150, deadline=None)
def test_the_limit_never_grows_while_drops_continue(
    kind: str,
    before: list[tuple[list[float], int, int]],
    during: list[tuple[list[float], int, int]],
) -> None:
    policy = make(kind, probe_interval=5.0)
    for i, (rtts, dropped, peak) in enumerate(before):
        feed(policy, i * STEP, rtts, dropped, peak)
    estimate = policy.estimate
    for i, (rtts, _, peak) in enumerate(during, start=len(before)):
        feed(policy, i * STEP, rtts, 1, peak)  # every batch has a failed call
        assert policy.estimate <= estimate
        assert policy.limit <= max(policy.estimate, policy.settings.min_limit)
        estimate = policy.estimate


@given(KINDS, st.lists(BATCH, max_size=300))
@settings(max_examples=100, deadline=None)
def test_the_limit_recovers_once_latency_is_normal_again(
    kind: str, history: list[tuple[list[float], int, int]]
) -> None:
    policy = make(kind)
    for i, (rtts, dropped, peak) in enumerate(history):
        feed(policy, i * STEP, rtts, dropped, peak)
    start = len(history) * STEP
    # Normal again: the dependency answers in BASE whatever the load. A history faster than
    # that lowered the baseline; the next probe measures it again.
    peak_limit = 0
    for i in range(1500):
        limit = feed(policy, start + i * STEP, [BASE] * 20)
        if not policy.probing:
            peak_limit = max(peak_limit, limit)
    assert peak_limit == policy.settings.max_limit
    assert policy.baseline == pytest.approx(BASE)


def queueing_rtt(limit: int, capacity: int) -> float:
    """A dependency serving ``capacity`` at once, queueing the rest, always fully loaded."""
    return BASE * max(1.0, limit / capacity)


@pytest.mark.parametrize("kind", ["gradient", "aimd"])
def test_sustained_overload_does_not_drag_the_baseline_up(kind: str) -> None:
    # Ten minutes of virtual time against a dependency that always has more work queued than
    # it can serve: RTTs are never below the no-load RTT, often above it.
    policy = make(kind, initial_limit=100)
    limits = []
    for i in range(6000):
        rtt = queueing_rtt(policy.limit, capacity=20)
        feed(policy, i * STEP, [rtt] * 20)
        limits.append(policy.limit)
    assert policy.baseline == pytest.approx(BASE)
    assert policy.probes >= 15
    steady = [limit for limit in limits[-600:] if limit > policy.settings.probe_limit]
    assert min(steady) >= 20  # never below the capacity
    assert max(steady) <= 40  # a short queue at most


@pytest.mark.parametrize("kind", ["gradient", "aimd"])
def test_a_probe_measures_a_slower_dependency_again(kind: str) -> None:
    policy = make(kind, probe_interval=10.0, probe_jitter=0.0)
    for i in range(50):
        feed(policy, i * STEP, [BASE] * 20)
    assert policy.baseline == pytest.approx(BASE)
    for i in range(50, 200):  # a deploy made it three times slower at any load
        feed(policy, i * STEP, [3 * BASE] * 20)
    assert policy.baseline == pytest.approx(3 * BASE)
    assert policy.probes == 1


def test_a_probe_counts_only_calls_it_admitted() -> None:
    policy = make("gradient", probe_interval=1.0, probe_jitter=0.0, probe_samples=5)
    for i in range(11):
        feed(policy, i * STEP, [BASE] * 20)
    assert policy.probing
    assert policy.limit == 3
    now = 11 * STEP
    # Admitted before the probe started (end - rtt < start): queued behind our own load.
    policy.update(now, [Sample(now, 0.5, False)] * 10, 3)
    assert policy.probing
    policy.update(now + STEP, [Sample(now + STEP, 0.04, False)] * 5, 3)
    assert not policy.probing
    assert policy.baseline == pytest.approx(0.04)
    assert policy.limit == int(policy.estimate)


def test_a_probe_without_calls_gives_up_after_its_timeout() -> None:
    policy = make("aimd", probe_interval=1.0, probe_jitter=0.0, probe_timeout=2.0)
    for i in range(11):
        feed(policy, i * STEP, [BASE] * 20)
    assert policy.probing
    for i in range(11, 40):
        feed(policy, i * STEP, [])
    assert not policy.probing
    assert policy.probes == 0
    assert policy.baseline == pytest.approx(BASE)


@pytest.mark.parametrize("kind", ["gradient", "aimd"])
def test_an_idle_service_does_not_raise_its_limit(kind: str) -> None:
    policy = make(kind, initial_limit=20)
    for i in range(200):
        feed(policy, i * STEP, [BASE] * 20, peak=5)  # never more than 5 in flight
    assert policy.limit <= 20


def test_gradient_shrinks_in_proportion_to_the_queue_and_keeps_a_queue_allowance() -> None:
    policy = make("gradient", initial_limit=100, smoothing=1.0, probe_interval=0.0)
    feed(policy, 0.0, [BASE] * 20)  # baseline BASE; at the limit: grows by sqrt(100)
    assert policy.limit == 110
    feed(policy, STEP, [4 * BASE] * 20)  # gradient floors at 0.5
    assert policy.estimate == pytest.approx(110 * 0.5 + math.sqrt(110))
    before = policy.estimate
    feed(policy, 2 * STEP, [1.25 * BASE] * 20)  # at the tolerance: only the allowance
    assert policy.estimate == pytest.approx(before + math.sqrt(before))


def test_aimd_adds_while_tolerable_and_multiplies_when_not() -> None:
    policy = make("aimd", initial_limit=10, probe_interval=0.0)
    feed(policy, 0.0, [BASE] * 20)
    assert policy.estimate == pytest.approx(10.5)
    feed(policy, STEP, [1.6 * BASE] * 20)
    assert policy.estimate == pytest.approx(10.5 * 0.95)
    feed(policy, 2 * STEP, [BASE] * 5, dropped=2)  # failures: backoff, once per batch
    assert policy.estimate == pytest.approx(10.5 * 0.95 * 0.9)


def test_a_summary_waits_for_enough_calls() -> None:
    policy = make("aimd", initial_limit=10, min_samples=10, probe_interval=0.0)
    feed(policy, 0.0, [BASE] * 6)
    assert math.isnan(policy.recent)
    feed(policy, STEP, [2 * BASE] * 7)
    assert policy.recent == pytest.approx(2 * BASE)  # the median of all thirteen


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5

"""AdaptiveLimit: admission, release, the policy fed on its interval, and @protected(limit=)."""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear.testing import FakeClock


def value(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    sample = registry.get_sample_value(metric, labels)
    return 0.0 if sample is None else sample


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"algorithm": "vegas"}, ValueError, "algorithm"),
        ({"algorithm": 1}, TypeError, "algorithm"),
        ({"min_limit": 0}, ValueError, "min_limit"),
        ({"max_limit": 1.5}, TypeError, "max_limit"),
        ({"initial_limit": 300}, ValueError, "initial_limit"),
        ({"initial_limit": 2, "min_limit": 5}, ValueError, "initial_limit"),
        ({"update_interval": 0}, ValueError, "update_interval"),
        ({"probe_interval": "30s"}, TypeError, "probe_interval"),
        ({"clock": 3}, TypeError, "clock"),
    ],
)
def test_bad_options_name_the_argument(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        sg.AdaptiveLimit("bad", **options)
    with pytest.raises(ValueError, match="name"):
        sg.AdaptiveLimit(" spaced ")


def test_admits_up_to_the_limit_then_rejects_with_a_retry_hint() -> None:
    limit = sg.AdaptiveLimit("db", initial_limit=3, min_limit=1, max_limit=10, clock=FakeClock())
    for _ in range(3):
        limit.acquire()
    assert limit.in_flight == 3
    with pytest.raises(sg.LimitExceededError) as info:
        limit.acquire()
    exc = info.value
    assert (exc.name, exc.limit, exc.reason) == ("db", 3, "limit")
    assert 0.0 < exc.retry_after <= 1.0
    assert isinstance(exc, sg.SwitchgearError)
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.name, copy.limit, copy.retry_after) == ("db", 3, exc.retry_after)
    limit.release(0.01)
    limit.cancel()
    assert limit.in_flight == 1
    limit.acquire()
    assert limit.in_flight == 2


def drive(limit: sg.AdaptiveLimit, clock: FakeClock, rtt: float, seconds: float) -> None:
    """Keep the limit busy for ``seconds``: each step fills it, then releases every call."""
    end = clock() + seconds
    while clock() < end:
        admitted = 0
        while admitted < limit.limit:
            limit.acquire()
            admitted += 1
        clock.advance(0.02)
        for _ in range(admitted):
            limit.release(rtt)


@pytest.mark.parametrize("algorithm", ["gradient", "aimd"])
def test_the_limit_falls_when_latency_rises_and_on_drops(algorithm: str) -> None:
    clock = FakeClock()
    limit = sg.AdaptiveLimit(
        "dep", algorithm=algorithm, initial_limit=20, max_limit=100, clock=clock
    )
    drive(limit, clock, 0.02, 3.0)  # fast, fully used: it grows
    grown = limit.limit
    assert grown > 20
    assert limit.baseline == pytest.approx(0.02)
    drive(limit, clock, 0.2, 3.0)  # ten times slower: it shrinks
    slowed = limit.limit
    assert slowed < grown
    assert limit.recent == pytest.approx(0.2)
    for _ in range(30):  # every call fails: down to the floor, never below
        limit.acquire()
        clock.advance(0.11)
        limit.release(1.0, dropped=True)
    assert limit.limit == limit.min_limit == 1


def test_protected_with_a_limit_counts_rejections_never_as_breaker_failures() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    limit = sg.AdaptiveLimit("inventory-db", initial_limit=1, min_limit=1, max_limit=1)
    breaker = sg.CircuitBreaker("inventory", failure_threshold=1, clock=clock)
    metrics = sg.Metrics("inventory", registry=registry)
    inside = threading.Event()
    leave = threading.Event()

    @sg.protected("inventory", breaker=breaker, metrics=metrics, limit=limit)
    def hold() -> str:
        inside.set()
        leave.wait(5.0)
        return "done"

    worker = threading.Thread(target=hold)
    worker.start()
    assert inside.wait(5.0)
    with pytest.raises(sg.LimitExceededError):
        hold()
    leave.set()
    worker.join()
    assert breaker.state is sg.BreakerState.CLOSED  # a rejection is not a failure
    assert limit.in_flight == 0
    assert value(registry, "switchgear_rejected_total", name="inventory", reason="limit") == 1
    assert value(registry, "switchgear_requests_total", name="inventory", outcome="success") == 1


def test_fallback_receives_the_limit_rejection_and_a_pool_refusal_frees_the_slot() -> None:
    limit = sg.AdaptiveLimit("fb", initial_limit=1, min_limit=1, max_limit=1)
    limit.acquire()  # someone else holds the only slot

    @sg.protected("fb-call", limit=limit, fallback=lambda exc: type(exc).__name__)
    def call() -> str:
        return "ran"

    assert call() == "LimitExceededError"
    limit.cancel()
    assert call() == "ran"

    pool = sg.DynamicPool(name="tiny", factory=None, min_size=0, max_size=1, max_waiting=0)
    big = sg.AdaptiveLimit("pooled", initial_limit=5, max_limit=5)
    with pool.lease():

        @sg.protected("pooled-call", limit=big, pool=pool)
        def pooled() -> str:
            return "ran"

        with pytest.raises(sg.PoolFullError):
            pooled()
    assert big.in_flight == 0  # the call never ran: its slot is free again
    assert pooled() == "ran"
    assert big.in_flight == 0


def test_failures_and_ignored_exceptions_reach_the_limit_as_drops_and_nothing() -> None:
    clock = FakeClock()
    limit = sg.AdaptiveLimit("drops", initial_limit=10, max_limit=10, clock=clock)
    breaker = sg.CircuitBreaker("drops-call", failure_threshold=100, ignore_on=KeyError)

    @sg.protected("drops-call", breaker=breaker, limit=limit)
    def call(exc: type[Exception]) -> None:
        raise exc("x")

    for _ in range(3):
        with pytest.raises(KeyError):
            call(KeyError)  # ignored: the limit learns nothing
    clock.advance(0.2)
    with pytest.raises(KeyError):
        call(KeyError)
    assert limit.limit == 10
    with pytest.raises(RuntimeError):
        call(RuntimeError)  # a failure: a drop, and an update is due: 10 * 0.9
    assert limit.limit == 9
    with pytest.raises(RuntimeError):
        call(RuntimeError)  # within the same update interval: waits for the next update
    assert limit.limit == 9
    clock.advance(0.2)
    with pytest.raises(RuntimeError):
        call(RuntimeError)
    assert limit.limit == 8  # 9 * 0.9, rounded down
    assert limit.in_flight == 0


def test_async_callers_beyond_the_limit_are_rejected_without_waiting() -> None:
    limit = sg.AdaptiveLimit("async-db", initial_limit=4, min_limit=4, max_limit=4)

    async def main() -> tuple[list[str], int]:
        gate = asyncio.Event()
        peak = 0

        @sg.protected("async-call", limit=limit)
        async def call() -> str:
            nonlocal peak
            peak = max(peak, limit.in_flight)
            await gate.wait()
            return "ok"

        async def one() -> str:
            try:
                return await call()
            except sg.LimitExceededError as exc:
                return exc.reason

        tasks = [asyncio.create_task(one()) for _ in range(10)]
        await asyncio.sleep(0.01)
        gate.set()
        return list(await asyncio.gather(*tasks)), peak

    results, peak = asyncio.run(main())
    assert sorted(results) == ["limit"] * 6 + ["ok"] * 4
    assert peak == 4
    assert limit.in_flight == 0


def test_threads_never_exceed_the_limit_and_leave_nothing_counted() -> None:
    """Eight threads hammer a fixed limit of three: at most three run at once, ever."""
    limit = sg.AdaptiveLimit("stress", initial_limit=3, min_limit=3, max_limit=3)
    lock = threading.Lock()
    running = 0
    worst = 0
    outcomes = {"ok": 0, "rejected": 0}

    @sg.protected("stress-call", limit=limit)
    def call() -> None:
        nonlocal running, worst
        with lock:
            running += 1
            worst = max(worst, running)
        for _ in range(200):
            pass
        with lock:
            running -= 1

    def work() -> None:
        for _ in range(3000):
            try:
                call()
                key = "ok"
            except sg.LimitExceededError:
                key = "rejected"
            with lock:
                outcomes[key] += 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert worst <= 3
    assert limit.in_flight == 0
    assert outcomes["ok"] + outcomes["rejected"] == 24000
    assert outcomes["ok"] > 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_no_calls_in_flight() -> None:
    """The parent's calls in flight are released in the parent; the child's slots are free."""
    limit = sg.AdaptiveLimit("forked", initial_limit=3, min_limit=3, max_limit=3)
    limit.acquire()
    limit.acquire()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        ok = limit.in_flight == 0 and limit.limit == 3
        for _ in range(3):
            limit.acquire()
        try:
            limit.acquire()
            ok = False
        except sg.LimitExceededError:
            pass
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert limit.in_flight == 2  # the parent's own count is untouched

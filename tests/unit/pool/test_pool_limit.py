"""A DynamicPool bounded by an AdaptiveLimit: never more resources out than the limit allows."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear.testing import FakeClock


def fixed(n: int, name: str = "db", clock: FakeClock | None = None) -> sg.AdaptiveLimit:
    if clock is None:
        return sg.AdaptiveLimit(name, initial_limit=n, min_limit=n, max_limit=n)
    return sg.AdaptiveLimit(name, initial_limit=n, min_limit=n, max_limit=n, clock=clock)


def test_the_limit_bounds_what_the_pool_hands_out_below_max_size() -> None:
    limit = fixed(2)
    pool = sg.DynamicPool(None, name="bounded", min_size=0, max_size=5, limit=limit)
    assert pool.limit is limit
    a, b = pool.acquire(), pool.acquire()
    assert limit.in_flight == 2
    with pytest.raises(sg.LimitExceededError) as caught:
        pool.acquire(timeout=5)  # refused at once, not after waiting in the pool's line
    assert caught.value.name == "db"
    assert pool.stats().waiting == 0
    pool.release(a)
    assert limit.in_flight == 1
    c = pool.acquire()
    assert c is a  # the idle one, reused
    pool.release(b)
    pool.release(c)
    assert limit.in_flight == 0
    assert pool.stats().in_use == 0


def test_take_returns_nothing_when_the_limit_is_full_and_keeps_no_slot() -> None:
    limit = fixed(1)
    pool = sg.DynamicPool(None, name="take", min_size=2, max_size=2, limit=limit)
    first = pool.take()
    assert first is not None
    assert limit.in_flight == 1
    from switchgear._pool.pool import MISSING

    assert pool.take() is MISSING  # an idle resource exists, but no slot
    assert limit.in_flight == 1
    assert pool.give_back(first) is True
    assert limit.in_flight == 0
    assert pool.give_back(first) is False  # twice: refused, the slot not freed again
    assert limit.in_flight == 0


def test_a_slot_taken_for_a_caller_that_got_nothing_is_freed() -> None:
    limit = fixed(3)
    pool = sg.DynamicPool(None, name="timeouts", min_size=0, max_size=1, limit=limit)
    held = pool.acquire()
    with pytest.raises(sg.PoolTimeoutError):
        pool.acquire(timeout=0)
    assert limit.in_flight == 1

    def broken() -> object:
        raise OSError("cannot connect")

    failing = sg.DynamicPool(broken, name="broken", min_size=0, max_size=2, limit=limit)
    with pytest.raises(OSError, match="cannot connect"):
        failing.acquire()
    assert limit.in_flight == 1
    pool.release(held)
    assert limit.in_flight == 0


def test_a_waiter_handed_a_resource_holds_its_own_slot() -> None:
    limit = fixed(3)
    pool = sg.DynamicPool(None, name="handover", min_size=0, max_size=1, limit=limit)
    held = pool.acquire()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=5)))
    waiter.start()
    while pool.stats().waiting == 0:
        threading.Event().wait(0.001)
    assert limit.in_flight == 2  # the holder's slot and the waiter's
    pool.release(held)
    waiter.join(5)
    assert got == [held]
    assert limit.in_flight == 1
    pool.release(got[0])
    assert limit.in_flight == 0


def test_failed_uses_lower_the_limit_and_with_it_the_resources_out() -> None:
    clock = FakeClock()
    limit = sg.AdaptiveLimit(
        "failing-db", algorithm="aimd", initial_limit=4, min_limit=1, max_limit=4, clock=clock
    )
    pool = sg.DynamicPool(None, name="failing", min_size=0, max_size=8, limit=limit)
    with pytest.raises(RuntimeError), pool.lease():
        raise RuntimeError("query failed")  # lease() tells the limit the use failed
    clock.advance(0.2)
    pool.release(pool.acquire())  # the next return runs the policy
    assert limit.limit == 3
    out = [pool.acquire() for _ in range(3)]
    with pytest.raises(sg.LimitExceededError):
        pool.acquire()
    for resource in out:
        pool.release(resource)


def test_async_acquire_is_bounded_too() -> None:
    limit = fixed(1)
    pool = sg.DynamicPool(None, name="async-bounded", min_size=0, max_size=4, limit=limit)

    async def main() -> None:
        async with pool.lease_async():
            with pytest.raises(sg.LimitExceededError):
                await pool.acquire_async()
            assert limit.in_flight == 1

    asyncio.run(main())
    assert limit.in_flight == 0


def test_protected_counts_the_pools_limit_rejection_and_refuses_the_same_limit_twice() -> None:
    registry = CollectorRegistry()
    limit = fixed(1, "search-db")
    pool = sg.DynamicPool(None, name="search-pool", min_size=0, max_size=4, limit=limit)
    metrics = sg.Metrics("search", registry=registry)
    inside, leave = threading.Event(), threading.Event()

    @sg.protected("search", pool=pool, metrics=metrics)
    def search() -> str:
        inside.set()
        leave.wait(5)
        return "found"

    worker = threading.Thread(target=search)
    worker.start()
    assert inside.wait(5)
    with pytest.raises(sg.LimitExceededError):
        search()
    leave.set()
    worker.join(5)
    rejected = registry.get_sample_value(
        "switchgear_rejected_total", {"name": "search", "reason": "limit"}
    )
    assert rejected == 1
    assert limit.in_flight == 0
    with pytest.raises(ValueError, match="bounded by limit 'search-db' already"):
        sg.protected("again", pool=pool, limit=limit)(lambda: None)


def test_a_limit_that_is_not_one_is_named() -> None:
    with pytest.raises(TypeError, match=r"limit must be a switchgear\.AdaptiveLimit, not int"):
        sg.DynamicPool(None, name="bad", limit=3)  # type: ignore[call-overload]
    assert sg.DynamicPool(None, name="plain").limit is None


def test_threads_never_hold_more_than_the_limit_and_every_slot_comes_back() -> None:
    limit = fixed(3, "stress-db")
    pool = sg.DynamicPool(None, name="stress", min_size=0, max_size=6, limit=limit)
    held = 0
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal held, peak
        for _ in range(400):
            try:
                resource = pool.acquire()
            except sg.LimitExceededError:
                continue
            with lock:
                held += 1
                peak = max(peak, held)
            time.sleep(0)  # hold it while other threads run
            with lock:
                held -= 1
            pool.release(resource)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak == 3  # reached, never passed
    assert limit.in_flight == 0
    assert pool.stats().in_use == 0
    assert limit.limit == 3

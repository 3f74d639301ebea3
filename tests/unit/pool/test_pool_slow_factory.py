"""A slow or hanging factory bounds nobody's wait beyond their timeout, and leaks nothing.

The factory blocks on an event the test releases at the end, as a hung connect would; the
resource made after its caller gave up must end up idle in the pool (or closed, if the pool
was closed meanwhile), with the size accounting exact.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import switchgear as sg

# The caller's timeout, and the slack allowed on a loaded 2-core machine.
TIMEOUT = 0.5
SLACK = 1.0


class Engine:
    def __init__(self, index: int) -> None:
        self.index = index
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class GatedFactory:
    """Makes engines, each only once ``gate`` is set (or raises ``error`` then)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.made: list[Engine] = []
        self.started = threading.Event()
        self.error: Exception | None = None

    def __call__(self) -> Engine:
        self.started.set()
        assert self.gate.wait(30), "the test never opened the gate"
        if self.error is not None:
            raise self.error
        engine = Engine(len(self.made))
        self.made.append(engine)
        return engine


@pytest.fixture
def gated() -> Iterator[GatedFactory]:
    factory = GatedFactory()
    yield factory
    factory.gate.set()  # never leave a creation thread blocked


def settled(pool: sg.DynamicPool[Engine], check: Callable[[sg.PoolStats], bool]) -> sg.PoolStats:
    deadline = time.monotonic() + 5
    while True:
        stats = pool.stats()
        if check(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.005)


def test_a_hanging_factory_cannot_outlast_the_acquire_timeout(gated: GatedFactory) -> None:
    pool = sg.DynamicPool(gated, name="hang", min_size=0, max_size=2)
    start = time.monotonic()
    with pytest.raises(sg.PoolTimeoutError):
        pool.acquire(timeout=TIMEOUT)
    took = time.monotonic() - start
    assert TIMEOUT * 0.9 <= took <= TIMEOUT + SLACK, took
    # The creation goes on; when it finishes, its resource is the pool's, idle.
    gated.gate.set()
    stats = settled(pool, lambda s: s.available == 1)
    assert (stats.total, stats.in_use, stats.available) == (1, 0, 1)
    engine = pool.acquire(timeout=TIMEOUT)
    assert engine is gated.made[0]
    pool.release(engine)
    pool.close()
    assert engine.closed == 1


def test_a_creation_that_fails_after_its_caller_left_is_logged_once(
    gated: GatedFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="switchgear")
    pool = sg.DynamicPool(gated, name="hang-fail", min_size=0, max_size=2)
    gated.error = ConnectionError("refused")
    for _ in range(2):
        with pytest.raises(sg.PoolTimeoutError):
            pool.acquire(timeout=0.05)
    gated.gate.set()
    stats = settled(pool, lambda s: s.total == 0)
    assert (stats.total, stats.in_use, stats.available) == (0, 0, 0)  # both slots given back
    logged = [r for r in caplog.records if "failed after its caller stopped waiting" in r.message]
    deadline = time.monotonic() + 5
    while len(logged) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
        logged = [r for r in caplog.records if "after its caller stopped" in r.message]
    assert len(logged) == 1
    gated.error = None
    pool.close()


def test_closing_while_a_creation_hangs_closes_its_resource_once(gated: GatedFactory) -> None:
    pool = sg.DynamicPool(gated, name="hang-close", min_size=0, max_size=2)
    with pytest.raises(sg.PoolTimeoutError):
        pool.acquire(timeout=0.05)
    pool.close()
    gated.gate.set()
    deadline = time.monotonic() + 5
    while not (gated.made and gated.made[0].closed) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [e.closed for e in gated.made] == [1]
    assert pool.stats().total == 0


def test_async_acquire_runs_a_slow_sync_factory_off_the_event_loop() -> None:
    def slow_factory() -> Engine:
        time.sleep(TIMEOUT)  # a blocking connect
        return Engine(0)

    pool = sg.DynamicPool(slow_factory, name="slow-async", min_size=0, max_size=2)

    async def main() -> tuple[float, Engine]:
        loop = asyncio.get_running_loop()
        worst = 0.0
        stop = False

        async def ticker() -> None:
            nonlocal worst
            last = loop.time()
            while not stop:
                await asyncio.sleep(0.01)
                now = loop.time()
                worst = max(worst, now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        engine = await pool.acquire_async()
        stop = True
        await ticking
        return worst, engine

    worst, engine = asyncio.run(main())
    assert isinstance(engine, Engine)
    # The loop went on ticking while the factory slept for TIMEOUT seconds.
    assert worst < TIMEOUT / 2, worst
    pool.release(engine)
    pool.close()


def test_async_acquire_timeout_bounds_a_creation(gated: GatedFactory) -> None:
    pool = sg.DynamicPool(gated, name="hang-async", min_size=0, max_size=2)

    async def main() -> float:
        start = time.monotonic()
        with pytest.raises(sg.PoolTimeoutError):
            await pool.acquire_async(timeout=TIMEOUT)
        return time.monotonic() - start

    took = asyncio.run(main())
    assert TIMEOUT * 0.9 <= took <= TIMEOUT + SLACK, took
    gated.gate.set()
    stats = settled(pool, lambda s: s.available == 1)
    assert (stats.total, stats.in_use, stats.available) == (1, 0, 1)
    pool.close()


def test_cancelling_an_async_acquire_mid_creation_leaks_nothing(gated: GatedFactory) -> None:
    pool = sg.DynamicPool(gated, name="hang-cancel", min_size=0, max_size=2)

    async def main() -> None:
        task = asyncio.create_task(pool.acquire_async())
        while not gated.started.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    gated.gate.set()
    stats = settled(pool, lambda s: s.available == 1)
    assert (stats.total, stats.in_use, stats.available) == (1, 0, 1)
    pool.close()
    assert [e.closed for e in gated.made] == [1]


def test_a_waiter_gets_a_resource_made_for_a_caller_that_gave_up(gated: GatedFactory) -> None:
    """max_size 1: the late resource goes to the caller queued behind the one that left."""
    pool = sg.DynamicPool(gated, name="hang-handoff", min_size=0, max_size=1)
    with pytest.raises(sg.PoolTimeoutError):
        pool.acquire(timeout=0.05)
    got: list[Engine] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=10)))
    waiter.start()
    settled(pool, lambda s: s.waiting == 1)
    gated.gate.set()
    waiter.join(10)
    assert got == gated.made
    pool.release(got[0])
    pool.close()


def test_an_async_factory_is_refused_by_name() -> None:
    async def connect() -> Engine:
        return Engine(0)

    class AsyncCallable:
        async def __call__(self) -> Engine:
            return Engine(0)

    for factory in (connect, AsyncCallable()):
        with pytest.raises(TypeError, match="factory"):
            sg.DynamicPool(factory, min_size=0, name="engines")

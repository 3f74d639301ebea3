"""DynamicPool: validation, the pure scaling policy, the autoscaler under a fake clock, faults,
closing, waiting and observers. Real-time and many-thread tests are in test_pool_concurrency."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import switchgear as sg
from switchgear._pool.policy import decide as _decide
from switchgear._pool.pool import Slot
from switchgear._pool.waiters import ThreadWaiter as _ThreadWaiter
from switchgear._pool.waiters import Waiter as _Waiter
from switchgear.testing import FakeClock

# Long enough that the real-time autoscaler thread never steps a fake-clock test.
NEVER = 3600.0


class Engine:
    """A resource that counts how often it was closed."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.closes = 0

    def close(self) -> None:
        self.closes += 1

    def __repr__(self) -> str:
        return f"<Engine {self.number}>"


class Factory:
    """Makes Engines; can be told to fail; remembers everything it made."""

    def __init__(self) -> None:
        self.made: list[Engine] = []
        self.fail_with: BaseException | None = None

    def __call__(self) -> Engine:
        if self.fail_with is not None:
            raise self.fail_with
        engine = Engine(len(self.made))
        self.made.append(engine)
        return engine

    def closes(self) -> list[int]:
        return [e.closes for e in self.made]


class Recorder:
    """A PoolObserver that writes down every call."""

    def __init__(self, every_acquire: bool = True) -> None:
        self.every_acquire = every_acquire
        self.calls: list[tuple[Any, ...]] = []

    def pool_acquired(self, pool: str, wait: float, cold_start: bool) -> None:
        self.calls.append(("acquired", pool, wait, cold_start))

    def pool_acquired_immediately(self, pool: str) -> None:
        self.calls.append(("immediately", pool))

    def pool_scaled(self, pool: str, direction: str, count: int) -> None:
        self.calls.append(("scaled", pool, direction, count))


@pytest.fixture
def factory() -> Factory:
    return Factory()


@pytest.fixture
def make_pool(
    factory: Factory, clock: FakeClock
) -> Iterator[Callable[..., sg.DynamicPool[Engine]]]:
    pools: list[sg.DynamicPool[Engine]] = []

    def make(**options: Any) -> sg.DynamicPool[Engine]:
        options.setdefault("clock", clock)
        options.setdefault("scale_interval", NEVER)
        options.setdefault("name", "engines")
        pool = sg.DynamicPool(factory, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def waiting_is(pool: sg.DynamicPool[Any], n: int) -> bool:
    return pool.stats().waiting == n


def sizes(pool: sg.DynamicPool[Any]) -> tuple[int, int, int, int]:
    s = pool.stats()
    return s.total, s.in_use, s.available, s.waiting


# -- construction and validation ------------------------------------------------------------


def test_defaults(factory: Factory) -> None:
    with sg.DynamicPool(factory, name="engines") as pool:
        assert (pool.name, pool.min_size, pool.max_size) == ("engines", 2, 16)
        assert (pool._core.up, pool._core.down, pool._autoscaler.interval) == (0.8, 0.3, 10.0)
        assert pool._acquire_timeout == 30.0  # bounded waiting unless asked otherwise
        assert pool._max_waiting is None
        assert sizes(pool) == (2, 0, 2, 0)
        assert len(factory.made) == 2
    with sg.DynamicPool(factory, name="forever", acquire_timeout=None) as pool:
        assert pool._acquire_timeout is None


def test_name_is_required(factory: Factory) -> None:
    with pytest.raises(TypeError, match="'name'"):
        sg.DynamicPool(factory)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("options", "error", "argument"),
    [
        ({"factory": 5}, TypeError, "factory"),
        ({"close": "nope"}, TypeError, "close"),
        ({"name": ""}, ValueError, "name"),
        ({"name": 7}, TypeError, "name"),
        ({"min_size": -1}, ValueError, "min_size"),
        ({"min_size": 1.5}, TypeError, "min_size"),
        ({"max_size": 0}, ValueError, "max_size"),
        ({"max_size": -3}, ValueError, "max_size"),
        ({"max_size": True}, TypeError, "max_size"),
        ({"min_size": 5, "max_size": 2}, ValueError, "min_size"),
        ({"scale_up_threshold": 0}, ValueError, "scale_up_threshold"),
        ({"scale_up_threshold": 1.5}, ValueError, "scale_up_threshold"),
        ({"scale_up_threshold": "high"}, TypeError, "scale_up_threshold"),
        ({"scale_down_threshold": 0.0}, ValueError, "scale_down_threshold"),
        ({"scale_down_threshold": -0.1}, ValueError, "scale_down_threshold"),
        ({"scale_down_threshold": 0.8}, ValueError, "scale_down_threshold"),
        ({"scale_up_threshold": 0.4, "scale_down_threshold": 0.5}, ValueError, "scale_down"),
        ({"scale_interval": 0}, ValueError, "scale_interval"),
        ({"scale_interval": -1.0}, ValueError, "scale_interval"),
        ({"scale_interval": "10"}, TypeError, "scale_interval"),
        ({"acquire_timeout": 0}, ValueError, "acquire_timeout"),
        ({"acquire_timeout": -0.5}, ValueError, "acquire_timeout"),
        ({"acquire_timeout": float("nan")}, ValueError, "acquire_timeout"),
        ({"max_waiting": -1}, ValueError, "max_waiting"),
        ({"max_waiting": 2.0}, TypeError, "max_waiting"),
        ({"clock": 5}, TypeError, "clock"),
    ],
)
def test_invalid_arguments_name_the_argument(
    options: dict[str, Any], error: type[Exception], argument: str
) -> None:
    options = {"factory": None, "name": "engines", **options}
    factory = options.pop("factory")
    with pytest.raises(error, match=argument):
        sg.DynamicPool(factory, **options)


def test_invalid_acquire_timeout_names_it(make_pool: Callable[..., sg.DynamicPool[Engine]]) -> None:
    pool = make_pool()
    with pytest.raises(ValueError, match="timeout"):
        pool.acquire(timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        pool.acquire(timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(pool.acquire_async(timeout=float("inf")))


def test_factory_error_in_constructor_propagates_and_closes_what_was_made() -> None:
    boom = RuntimeError("engine 3 would not start")
    made: list[Engine] = []

    def factory() -> Engine:
        if len(made) == 2:
            raise boom
        made.append(Engine(len(made)))
        return made[-1]

    with pytest.raises(RuntimeError) as info:
        sg.DynamicPool(factory, min_size=3, name="engines")
    assert info.value is boom
    assert [e.closes for e in made] == [1, 1]


def test_timedelta_options_are_accepted(factory: Factory) -> None:
    from datetime import timedelta

    with sg.DynamicPool(
        factory,
        scale_interval=timedelta(minutes=1),
        acquire_timeout=timedelta(seconds=2),
        name="engines",
    ) as pool:
        assert (pool._autoscaler.interval, pool._acquire_timeout) == (60.0, 2.0)


def test_read_only_attributes(make_pool: Callable[..., sg.DynamicPool[Engine]]) -> None:
    pool = make_pool(name="gpu", min_size=1, max_size=3)
    assert (pool.name, pool.min_size, pool.max_size) == ("gpu", 1, 3)
    with pytest.raises(AttributeError):
        pool.max_size = 9  # type: ignore[misc]


# -- the scaling policy (pure) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("util", "total", "idle", "lo", "hi", "expected"),
    [
        (1.0, 2, 0, 2, 8, 2),  # 2 of 2 busy, up 0.5 -> 4
        (0.6, 2, 0, 2, 8, 1),  # just above: at least one more
        (0.5, 2, 1, 2, 8, 0),  # on the threshold: no action
        (3.0, 4, 0, 2, 8, 4),  # 8 busy + waiting on 4 -> capped at max_size
        (1.0, 8, 0, 2, 8, 0),  # already at max_size
        (0.3, 4, 2, 2, 8, 0),  # inside the band
        (0.0, 8, 8, 2, 8, -6),  # idle: back to min_size
        (0.1, 8, 7, 0, 8, -5),  # load 0.8 -> ceil(0.8 / 0.35) = 3: mid-band
        (0.0, 8, 3, 2, 8, -3),  # never retires more than are idle
        (0.0, 2, 2, 2, 8, 0),  # never below min_size
        (0.0, 1, 0, 3, 8, 2),  # below min_size (never happens, but heals)
    ],
)
def test_decide_table(util: float, total: int, idle: int, lo: int, hi: int, expected: int) -> None:
    assert _decide(util, total, idle, lo, hi, 0.5, 0.2) == expected


@given(
    st.floats(0.0, 20.0),
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(1, 50),
    st.floats(0.05, 1.0),
    st.floats(0.01, 0.99),
)
def test_decide_properties(
    util: float, total: int, idle: int, lo: int, hi: int, up: float, down_part: float
) -> None:
    lo = min(lo, hi)
    total = max(lo, min(total, hi))
    idle = min(idle, total)
    down = up * down_part
    delta = _decide(util, total, idle, lo, hi, up, down)
    assert lo <= total + delta <= hi
    assert delta >= -idle
    if delta > 0:
        assert util > up
        # Enough to bring the interval's load under the threshold, unless capped.
        assert total + delta == hi or util * total / (total + delta) <= up + 1e-9
    if delta < 0:
        assert util < down
        if total + delta:
            assert util * total / (total + delta) < up  # not straight back above the band
    if util > up and total < hi:
        assert delta >= 1
    if down <= util <= up:
        assert delta == 0


# -- the autoscaler under a fake clock ------------------------------------------------------


def test_a_spike_at_the_end_of_an_interval_does_not_scale_up(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock
) -> None:
    pool = make_pool(min_size=2, max_size=8, scale_up_threshold=0.5, scale_down_threshold=0.2)
    clock.advance(9.0)
    held = [pool.acquire(), pool.acquire()]  # 100 % busy, but only for the last second
    clock.advance(1.0)
    assert pool.check_and_scale() == 0  # average 0.1: one sample at the tick would have seen 1.0
    assert pool.stats().total == 2
    clock.advance(10.0)  # now sustained for a whole interval
    assert pool.check_and_scale() == 2
    s = pool.stats()
    assert (s.total, s.available, s.scale_up_count, s.cold_starts) == (4, 2, 2, 0)
    for engine in held:
        pool.release(engine)


def test_a_dip_at_the_end_of_an_interval_does_not_scale_down(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock
) -> None:
    pool = make_pool(min_size=0, max_size=4)  # up 0.8, down 0.3
    held = [pool.acquire() for _ in range(4)]
    for engine in held[2:]:
        pool.release(engine)
    clock.advance(10.0)
    assert pool.check_and_scale() == 0  # 2 of 4 busy: inside the band
    clock.advance(9.0)
    for engine in held[:2]:
        pool.release(engine)
    clock.advance(1.0)
    assert pool.check_and_scale() == 0  # average 0.45, though idle right now
    clock.advance(10.0)
    assert pool.check_and_scale() == -4  # idle for a whole interval
    assert pool.stats().total == 0


def test_utilization_is_time_weighted_across_changes(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock
) -> None:
    pool = make_pool(min_size=4, max_size=8, scale_up_threshold=0.5, scale_down_threshold=0.2)
    a = pool.acquire()
    clock.advance(4.0)  # 1/4 busy for 4 s
    b, c = pool.acquire(), pool.acquire()
    clock.advance(6.0)  # 3/4 busy for 6 s -> average (1 + 4.5) / 10 = 0.55
    assert pool.check_and_scale() == 1  # load 2.2 / 0.5 -> 5 resources
    for engine in (a, b, c):
        pool.release(engine)


def test_waiting_callers_count_as_demand(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock
) -> None:
    pool = make_pool(min_size=1, max_size=2)  # up 0.8
    held = [pool.acquire(), pool.acquire()]
    clock.advance(10.0)
    pool.check_and_scale()
    waiter = threading.Thread(target=lambda: pool.release(pool.acquire()))
    waiter.start()
    wait_until(lambda: pool.stats().waiting == 1)
    clock.advance(10.0)
    # (2 in use + 1 waiting) over 2 resources for 10 s: utilization 1.5, not a capped 1.0.
    with pool._core.lock:
        pool._core.integrate()
    assert (pool._core.busy_area, pool._core.total_area) == (30.0, 20.0)
    assert pool.check_and_scale() == 0  # at max_size: nothing to add
    pool.release(held[0])
    waiter.join(5)
    pool.release(held[1])


def test_scale_down_keeps_min_size_and_never_closes_in_use(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock, factory: Factory
) -> None:
    pool = make_pool(min_size=1, max_size=8)
    engines = [pool.acquire() for _ in range(8)]
    assert pool.stats().cold_starts == 7
    for engine in engines[:7]:
        pool.release(engine)
    clock.advance(10.0)
    # 1/8 busy on average: shrink to ceil(1 / 0.55) = 2, retiring the least recently used.
    assert pool.check_and_scale() == -6
    assert factory.closes() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert pool.stats().total == 2
    clock.advance(10.0)
    pool.release(engines[7])
    pool.check_and_scale()
    clock.advance(10.0)
    assert pool.check_and_scale() == -1  # idle: down to min_size
    assert pool.stats().total == 1
    assert sum(factory.closes()) == 7
    clock.advance(10.0)
    assert pool.check_and_scale() == 0


def test_busy_at_the_check_means_nothing_to_retire(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock, factory: Factory
) -> None:
    pool = make_pool(min_size=0, max_size=4)
    for engine in [pool.acquire() for _ in range(4)]:
        pool.release(engine)
    clock.advance(9.9)
    held = [pool.acquire() for _ in range(4)]  # all busy right at the check
    clock.advance(0.1)
    assert pool.check_and_scale() == 0  # average says shrink, but nothing is idle
    assert factory.closes() == [0, 0, 0, 0]
    for engine in held:
        pool.release(engine)


def test_scale_up_never_passes_max_size(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock
) -> None:
    pool = make_pool(min_size=0, max_size=3)
    held = [pool.acquire() for _ in range(3)]
    clock.advance(10.0)
    assert pool.check_and_scale() == 0
    assert pool.stats().total == 3
    for engine in held:
        pool.release(engine)


def test_prewarm_failure_is_logged_and_accounted(
    make_pool: Callable[..., sg.DynamicPool[Engine]],
    clock: FakeClock,
    factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = make_pool(min_size=2, max_size=8, scale_up_threshold=0.5, scale_down_threshold=0.2)
    held = [pool.acquire(), pool.acquire()]
    clock.advance(10.0)
    factory.fail_with = OSError("no GPU left")
    with caplog.at_level(logging.ERROR, logger="switchgear"):
        assert pool.check_and_scale() == 0
    assert "pre-warming" in caplog.text
    assert sizes(pool) == (2, 2, 0, 0)
    assert (pool._core.size, pool._core.warming) == (2, 0)
    factory.fail_with = None
    assert pool.acquire() is factory.made[-1]  # creation is retried on demand
    for engine in held:
        pool.release(engine)


def test_empty_interval_uses_the_instant(
    make_pool: Callable[..., sg.DynamicPool[Engine]],
) -> None:
    pool = make_pool(min_size=2, max_size=4, scale_up_threshold=0.5, scale_down_threshold=0.2)
    held = [pool.acquire(), pool.acquire()]
    assert pool.check_and_scale() == 2  # no time passed: the instant (100 %) decides
    for engine in held:
        pool.release(engine)


def test_check_and_scale_after_close_does_nothing(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock
) -> None:
    pool = make_pool(min_size=2, max_size=8)
    held = [pool.acquire(), pool.acquire()]
    pool.close()
    clock.advance(10.0)
    assert pool.check_and_scale() == 0
    for engine in held:
        pool.release(engine)


# -- acquire, release, leases ---------------------------------------------------------------


def test_cold_starts_and_lifo_reuse(
    make_pool: Callable[..., sg.DynamicPool[Engine]], factory: Factory
) -> None:
    pool = make_pool(min_size=1, max_size=3)
    a, cold_a, _ = pool.acquire_timed()
    b, cold_b, _ = pool.acquire_timed()
    assert (a, cold_a, b, cold_b) == (factory.made[0], False, factory.made[1], True)
    pool.release(a)
    pool.release(b)
    assert pool.acquire() is b  # most recently used first
    assert pool.acquire() is a
    s = pool.stats()
    assert (s.total, s.in_use, s.cold_starts, s.total_requests) == (2, 2, 1, 4)
    assert (s.scale_up_count, s.scale_down_count) == (0, 0)  # on demand is not scaling


def test_lease_releases_on_error(make_pool: Callable[..., sg.DynamicPool[Engine]]) -> None:
    pool = make_pool(min_size=1, max_size=1)
    seen: list[int] = []

    def work() -> None:
        with pool.lease() as engine:
            seen.append(pool.stats().in_use)
            raise KeyError(engine)

    with pytest.raises(KeyError):
        work()
    assert seen == [1]
    assert sizes(pool) == (1, 0, 1, 0)


def test_async_lease_and_context_managers(factory: Factory) -> None:
    async def main() -> None:
        async with sg.DynamicPool(factory, min_size=1, max_size=2, name="engines") as pool:
            async with pool.lease_async() as engine:
                assert engine is factory.made[0]
                assert pool.stats().in_use == 1
            r, cold, waited = await pool.acquire_timed_async()
            r2, cold2, _ = await pool.acquire_timed_async()
            assert (r, cold, waited, cold2) == (engine, False, 0.0, True)
            pool.release(r)
            pool.release(r2)
        assert pool.closed

    asyncio.run(main())
    assert factory.closes() == [1, 1]


def test_bulkhead_hands_out_unique_slots() -> None:
    with sg.DynamicPool(None, name="db", min_size=1, max_size=3) as pool:
        slots = [pool.acquire() for _ in range(3)]
        assert all(isinstance(s, Slot) for s in slots)
        assert len({id(s) for s in slots}) == 3
        assert [s.index for s in slots] == [1, 2, 3]
        assert repr(slots[0]) == "<Slot 1>"
        with pytest.raises(sg.PoolTimeoutError):
            pool.acquire(timeout=0)
        for s in slots:
            pool.release(s)


def test_unhashable_resources_work() -> None:
    def make() -> dict[str, int]:
        return {}

    with sg.DynamicPool(make, min_size=1, max_size=2, name="engines") as pool:
        a = pool.acquire()
        b = pool.acquire()
        assert a == b
        assert a is not b
        pool.release(a)
        pool.release(b)
        assert pool.stats().available == 2


def test_release_unknown_or_twice_raises(make_pool: Callable[..., sg.DynamicPool[Engine]]) -> None:
    pool = make_pool(min_size=1, max_size=2)
    with pytest.raises(ValueError, match="not acquired from this pool"):
        pool.release(Engine(99))
    engine = pool.acquire()
    pool.release(engine)
    with pytest.raises(ValueError, match="released twice"):
        pool.release(engine)
    assert sizes(pool) == (1, 0, 1, 0)


def test_factory_returning_a_pooled_object_is_refused() -> None:
    shared = Engine(0)
    with sg.DynamicPool(lambda: shared, min_size=0, max_size=2, name="engines") as pool:
        assert pool.acquire() is shared
        with pytest.raises(ValueError, match="already in the pool"):
            pool.acquire()
        assert sizes(pool) == (1, 1, 0, 0)
    with pytest.raises(ValueError, match="same object"):
        sg.DynamicPool(lambda: shared, min_size=2, name="engines")


# -- factory faults -------------------------------------------------------------------------


def test_factory_error_reaches_the_caller_and_is_retried(
    make_pool: Callable[..., sg.DynamicPool[Engine]], factory: Factory
) -> None:
    pool = make_pool(min_size=1, max_size=3)
    held = pool.acquire()
    boom = ConnectionError("engine host down")
    factory.fail_with = boom
    with pytest.raises(ConnectionError) as info:
        pool.acquire()
    assert info.value is boom
    assert info.value.__traceback__ is not None
    assert sizes(pool) == (1, 1, 0, 0)
    assert pool._core.size == 1
    factory.fail_with = None
    fresh, cold, _ = pool.acquire_timed()
    assert cold
    assert fresh is factory.made[-1]
    s = pool.stats()
    assert (s.total, s.cold_starts, s.total_requests) == (2, 1, 3)
    pool.release(held)
    pool.release(fresh)


def test_async_factory_error_reaches_the_caller(factory: Factory) -> None:
    boom = ValueError("bad config")

    async def main() -> None:
        async with sg.DynamicPool(factory, min_size=0, max_size=1, name="engines") as pool:
            factory.fail_with = boom
            with pytest.raises(ValueError, match="bad config") as info:
                await pool.acquire_async()
            assert info.value is boom
            factory.fail_with = None
            async with pool.lease_async():
                assert sizes(pool) == (1, 1, 0, 0)

    asyncio.run(main())


def test_a_failed_creation_hands_its_slot_to_a_waiter() -> None:
    started = threading.Event()
    go = threading.Event()
    boom = RuntimeError("first start fails")
    calls: list[int] = []

    def factory() -> Engine:
        calls.append(1)
        if len(calls) == 1:
            started.set()
            go.wait(5)
            raise boom
        return Engine(len(calls))

    with sg.DynamicPool(
        factory, min_size=0, max_size=1, scale_interval=NEVER, name="engines"
    ) as pool:
        errors: list[BaseException] = []
        got: list[tuple[Engine, bool, float]] = []

        def first() -> None:
            try:
                pool.acquire()
            except RuntimeError as exc:
                errors.append(exc)

        def second() -> None:
            got.append(pool.acquire_timed())

        t1 = threading.Thread(target=first)
        t1.start()
        started.wait(5)
        t2 = threading.Thread(target=second)
        t2.start()
        wait_until(lambda: pool.stats().waiting == 1)
        go.set()
        t1.join(5)
        t2.join(5)
        assert errors == [boom]
        [(engine, cold, _)] = got
        assert cold
        assert engine.number == 2
        assert sizes(pool) == (1, 1, 0, 0)
        pool.release(engine)


# -- waiting, timeouts, fullness ------------------------------------------------------------


def test_acquire_timeout_raises_and_leaves_nothing_behind(factory: Factory) -> None:
    with sg.DynamicPool(
        factory, min_size=1, max_size=1, acquire_timeout=0.05, name="engines"
    ) as pool:
        held = pool.acquire()
        start = time.monotonic()
        with pytest.raises(sg.PoolTimeoutError) as info:
            pool.acquire()
        assert time.monotonic() - start >= 0.04
        assert isinstance(info.value, TimeoutError)
        assert (info.value.name, info.value.timeout) == ("engines", 0.05)
        with pytest.raises(sg.PoolTimeoutError):
            pool.acquire(timeout=0)  # per call, and 0 means "don't wait"
        assert sizes(pool) == (1, 1, 0, 0)
        s = pool.stats()
        assert s.total_requests == 3
        assert s.avg_wait_time > 0
        pool.release(held)
        assert pool.acquire(timeout=0) is held
        pool.release(held)


def test_async_timeout_leaves_nothing_behind(factory: Factory) -> None:
    async def main() -> None:
        async with sg.DynamicPool(factory, min_size=1, max_size=1, name="engines") as pool:
            held = await pool.acquire_async()
            with pytest.raises(sg.PoolTimeoutError):
                await pool.acquire_async(timeout=0.02)
            assert sizes(pool) == (1, 1, 0, 0)
            pool.release(held)
            assert await pool.acquire_async(timeout=0.02) is held
            pool.release(held)

    asyncio.run(main())


def test_max_waiting_rejects_at_once(factory: Factory) -> None:
    with sg.DynamicPool(factory, min_size=1, max_size=1, max_waiting=1, name="engines") as pool:
        held = pool.acquire()
        waiter = threading.Thread(target=lambda: pool.release(pool.acquire()))
        waiter.start()
        wait_until(lambda: pool.stats().waiting == 1)
        start = time.monotonic()
        with pytest.raises(sg.PoolFullError) as info:
            pool.acquire()
        assert time.monotonic() - start < 1.0
        assert (info.value.waiting, info.value.reason) == (1, "pool_full")
        pool.release(held)
        waiter.join(5)
        assert sizes(pool) == (1, 0, 1, 0)


def test_max_waiting_zero_never_waits(factory: Factory) -> None:
    with sg.DynamicPool(factory, min_size=1, max_size=1, max_waiting=0, name="engines") as pool:
        held = pool.acquire()
        with pytest.raises(sg.PoolFullError):
            pool.acquire()
        pool.release(held)


def test_thread_waiters_are_served_in_arrival_order(factory: Factory) -> None:
    with sg.DynamicPool(factory, min_size=1, max_size=1, name="engines") as pool:
        held = pool.acquire()
        order: list[int] = []

        def worker(i: int) -> None:
            with pool.lease():
                order.append(i)

        threads = []
        for i in range(5):
            t = threading.Thread(target=worker, args=(i,))
            t.start()
            threads.append(t)
            wait_until(functools.partial(waiting_is, pool, i + 1))
        pool.release(held)
        for t in threads:
            t.join(5)
        assert order == [0, 1, 2, 3, 4]


def test_task_waiters_are_served_in_arrival_order(factory: Factory) -> None:
    async def main() -> list[int]:
        async with sg.DynamicPool(factory, min_size=1, max_size=1, name="engines") as pool:
            held = await pool.acquire_async()
            order: list[int] = []

            async def worker(i: int) -> None:
                async with pool.lease_async():
                    order.append(i)
                    await asyncio.sleep(0)

            tasks = []
            for i in range(5):
                tasks.append(asyncio.create_task(worker(i)))
                await asyncio.sleep(0)
            assert pool.stats().waiting == 5
            pool.release(held)
            await asyncio.gather(*tasks)
            return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_a_resource_handed_over_as_the_wait_times_out_is_taken(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_out = threading.Event()
    handed = threading.Event()

    class LateBell:
        """Times out, then lets the test hand a resource over before the waiter looks."""

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.lock.acquire()

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            rung = self.lock.acquire(blocking, timeout)
            if not rung:
                timed_out.set()
                handed.wait(5)
            return rung

        def release(self) -> None:
            self.lock.release()

    def init(self: _ThreadWaiter) -> None:
        _Waiter.__init__(self)
        self.bell = LateBell()  # type: ignore[assignment]

    monkeypatch.setattr(_ThreadWaiter, "__init__", init)
    with sg.DynamicPool(
        factory, min_size=1, max_size=1, scale_interval=NEVER, name="engines"
    ) as pool:
        held = pool.acquire()
        got: list[object] = []

        def waiter() -> None:
            try:
                got.append(pool.acquire(timeout=0.01))
            except sg.PoolTimeoutError as exc:
                got.append(exc)

        thread = threading.Thread(target=waiter)
        thread.start()
        assert timed_out.wait(5)
        pool.release(held)  # decided under the lock: the waiter owns it now
        handed.set()
        thread.join(5)
        assert got == [held]
        assert sizes(pool) == (1, 1, 0, 0)
        pool.release(held)


def test_wait_time_is_measured_by_the_pool_clock(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock
) -> None:
    pool = make_pool(min_size=1, max_size=1)
    recorder = Recorder()
    pool.add_observer(recorder)
    held = pool.acquire()
    got: list[tuple[Engine, bool, float]] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire_timed()))
    waiter.start()
    wait_until(lambda: pool.stats().waiting == 1)
    clock.advance(2.0)
    pool.release(held)
    waiter.join(5)
    assert got == [(held, False, 2.0)]
    assert pool.stats().avg_wait_time == 1.0
    assert ("acquired", "engines", 2.0, False) in recorder.calls
    pool.release(held)


# -- cancellation ---------------------------------------------------------------------------


def test_cancelled_waiter_leaves_the_queue(factory: Factory) -> None:
    async def main() -> None:
        async with sg.DynamicPool(factory, min_size=1, max_size=1, name="engines") as pool:
            held = await pool.acquire_async()
            task = asyncio.create_task(pool.acquire_async())
            await asyncio.sleep(0)
            assert pool.stats().waiting == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert sizes(pool) == (1, 1, 0, 0)
            pool.release(held)
            assert sizes(pool) == (1, 0, 1, 0)

    asyncio.run(main())


def test_resource_handed_to_a_cancelled_waiter_goes_back(factory: Factory) -> None:
    async def main() -> None:
        async with sg.DynamicPool(factory, min_size=1, max_size=1, name="engines") as pool:
            held = await pool.acquire_async()
            doomed = asyncio.create_task(pool.acquire_async())
            await asyncio.sleep(0)
            pool.release(held)  # handed to the waiter, whose task has not run yet
            doomed.cancel()
            with pytest.raises(asyncio.CancelledError):
                await doomed
            assert sizes(pool) == (1, 0, 1, 0)
            assert await pool.acquire_async(timeout=0) is held
            pool.release(held)

    asyncio.run(main())


def test_resource_handed_to_a_cancelled_waiter_goes_to_the_next(factory: Factory) -> None:
    async def main() -> None:
        async with sg.DynamicPool(factory, min_size=1, max_size=1, name="engines") as pool:
            held = await pool.acquire_async()
            doomed = asyncio.create_task(pool.acquire_async())
            await asyncio.sleep(0)
            patient = asyncio.create_task(pool.acquire_async())
            await asyncio.sleep(0)
            pool.release(held)
            doomed.cancel()
            assert await patient is held
            with pytest.raises(asyncio.CancelledError):
                await doomed
            assert sizes(pool) == (1, 1, 0, 0)
            pool.release(held)

    asyncio.run(main())


def test_slot_handed_to_a_cancelled_waiter_is_given_back() -> None:
    started = threading.Event()
    go = threading.Event()
    calls: list[int] = []

    def factory() -> Engine:
        calls.append(1)
        if len(calls) == 1:
            started.set()
            go.wait(5)
            raise RuntimeError("no")
        return Engine(len(calls))

    async def main() -> None:
        pool = sg.DynamicPool(factory, min_size=0, max_size=1, scale_interval=NEVER, name="engines")
        failures: list[BaseException] = []

        def create() -> None:
            try:
                pool.acquire()
            except RuntimeError as exc:
                failures.append(exc)

        creator = threading.Thread(target=create)
        creator.start()
        started.wait(5)
        doomed = asyncio.create_task(pool.acquire_async())
        await asyncio.sleep(0)
        assert pool.stats().waiting == 1
        go.set()
        creator.join(5)  # its slot now belongs to the waiting task
        assert len(failures) == 1
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert sizes(pool) == (0, 0, 0, 0)
        assert (pool._core.size, pool._core.creating) == (0, 0)
        assert len(calls) == 1  # the cancelled task created nothing
        engine = await pool.acquire_async()
        pool.release(engine)
        await pool.aclose()

    asyncio.run(main())


# -- closing --------------------------------------------------------------------------------


def test_close_closes_idle_now_and_leased_on_release(factory: Factory) -> None:
    pool = sg.DynamicPool(factory, min_size=3, max_size=4, name="engines")
    held = pool.acquire()
    pool.close()
    assert pool.closed
    assert factory.closes() == [1, 1, 0]  # the held one (the last made: LIFO) stays open
    with pytest.raises(sg.PoolClosedError):
        pool.acquire()
    with pytest.raises(sg.PoolClosedError):
        asyncio.run(pool.acquire_async())
    pool.release(held)
    assert factory.closes() == [1, 1, 1]
    pool.close()  # idempotent
    assert factory.closes() == [1, 1, 1]
    assert sizes(pool) == (0, 0, 0, 0)
    assert pool._autoscaler.thread is not None
    pool._autoscaler.thread.join(2)
    assert not pool._autoscaler.thread.is_alive()


def test_close_wakes_thread_and_task_waiters(factory: Factory) -> None:
    pool = sg.DynamicPool(factory, min_size=1, max_size=1, name="engines")
    held = pool.acquire()
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            pool.acquire()
        except sg.PoolClosedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    wait_until(lambda: pool.stats().waiting == 1)

    async def main() -> None:
        task = asyncio.create_task(pool.acquire_async())
        await asyncio.sleep(0)
        assert pool.stats().waiting == 2
        await pool.aclose()
        with pytest.raises(sg.PoolClosedError):
            await task

    asyncio.run(main())
    thread.join(5)
    assert len(errors) == 1
    pool.release(held)
    assert factory.closes() == [1]


def test_close_callback_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[int] = []

    def close(engine: Engine) -> None:
        closed.append(engine.number)
        raise OSError("socket already gone")

    counter = iter(range(100))
    pool = sg.DynamicPool(lambda: Engine(next(counter)), close=close, min_size=2, name="engines")
    held = pool.acquire()
    with caplog.at_level(logging.ERROR, logger="switchgear"):
        pool.close()
        pool.release(held)
    assert sorted(closed) == [0, 1]
    logged = [r for r in caplog.records if r.getMessage().startswith("pool 'engines': closing")]
    assert len(logged) == 2
    assert all(r.exc_info and "socket already gone" in str(r.exc_info[1]) for r in logged)
    assert sizes(pool) == (0, 0, 0, 0)


def test_default_close_only_when_the_resource_has_one() -> None:
    with sg.DynamicPool(object, min_size=2, name="engines"):
        pass  # objects without close() are fine
    engines: list[Engine] = []

    def factory() -> Engine:
        engines.append(Engine(len(engines)))
        return engines[-1]

    with sg.DynamicPool(factory, min_size=2, name="engines"):
        pass
    assert [e.closes for e in engines] == [1, 1]


def test_creation_finishing_after_close_is_closed() -> None:
    started = threading.Event()
    go = threading.Event()
    made: list[Engine] = []

    def factory() -> Engine:
        started.set()
        go.wait(5)
        made.append(Engine(0))
        return made[-1]

    pool = sg.DynamicPool(factory, min_size=0, max_size=1, name="engines")
    errors: list[BaseException] = []

    def acquire() -> None:
        try:
            pool.acquire()
        except sg.PoolClosedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=acquire)
    thread.start()
    started.wait(5)
    pool.close()
    go.set()
    thread.join(5)
    assert len(errors) == 1
    assert [e.closes for e in made] == [1]
    assert sizes(pool) == (0, 0, 0, 0)


# -- observers ------------------------------------------------------------------------------


def test_observers_see_acquisitions_and_autoscaler_only(
    make_pool: Callable[..., sg.DynamicPool[Engine]], clock: FakeClock
) -> None:
    pool = make_pool(name="obs", min_size=1, max_size=4, scale_up_threshold=0.5)
    recorder = Recorder()
    pool.add_observer(recorder)
    pool.add_observer(recorder)  # once is enough
    a = pool.acquire()  # idle at once
    b = pool.acquire()  # a cold start: reported with the acquire, not as scaling
    clock.advance(10.0)
    assert pool.check_and_scale() == 2
    pool.release(a)
    pool.release(b)
    clock.advance(10.0)
    assert pool.check_and_scale() == -3
    assert recorder.calls == [
        ("immediately", "obs"),
        ("acquired", "obs", 0.0, True),
        ("scaled", "obs", "up", 2),
        ("scaled", "obs", "down", 3),
    ]
    assert pool.immediate.count == 1


def test_immediate_acquisitions_are_only_counted_unless_an_observer_asks(
    make_pool: Callable[..., sg.DynamicPool[Engine]],
) -> None:
    """The hot path calls no observer: immediate acquisitions go to a counter read later."""
    pool = make_pool(name="quiet", min_size=2, max_size=4)
    quiet, loud = Recorder(every_acquire=False), Recorder()
    pool.add_observer(quiet)
    for _ in range(3):
        pool.release(pool.acquire())
    assert quiet.calls == []
    assert pool.immediate.count == 3
    pool.add_observer(loud)
    pool.release(pool.acquire())
    assert loud.calls == [("immediately", "quiet")]
    assert quiet.calls == []
    loud.every_acquire = False
    pool.observers_changed()
    pool.release(pool.acquire())
    assert loud.calls == [("immediately", "quiet")]
    assert pool.immediate.count == 5


def test_a_failing_observer_is_logged_and_ignored(
    make_pool: Callable[..., sg.DynamicPool[Engine]], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def pool_acquired(self, pool: str, wait: float, cold_start: bool) -> None:
            raise RuntimeError("observer bug")

        def pool_acquired_immediately(self, pool: str) -> None:
            raise RuntimeError("observer bug")

    pool = make_pool(min_size=1, max_size=2)
    broken, good = Broken(), Recorder()
    pool.add_observer(broken)
    pool.add_observer(good)
    with caplog.at_level(logging.ERROR, logger="switchgear"):
        engine = pool.acquire()
    assert "observer bug" in caplog.text
    assert good.calls == [("immediately", "engines")]
    pool.release(engine)
    assert sizes(pool) == (1, 0, 1, 0)


def test_repr_and_stats_shape(make_pool: Callable[..., sg.DynamicPool[Engine]]) -> None:
    pool = make_pool(name="r", min_size=1, max_size=2)
    assert repr(pool) == "<DynamicPool 'r' total=1 in_use=0 waiting=0 min=1 max=2>"
    s = pool.stats()
    with pytest.raises(AttributeError):
        s.total = 5  # type: ignore[misc]
    assert not hasattr(s, "__dict__")
    assert isinstance(s.total, int)
    assert isinstance(s.avg_wait_time, float)

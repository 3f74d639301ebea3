"""The fast path the middleware and @protected use: ``take()`` and ``give_back()``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import switchgear as sg
from switchgear._pool.pool import MISSING
from switchgear.testing import FakeClock

# Long enough that the real-time autoscaler thread never steps a fake-clock test.
NEVER = 3600.0


class Engine:
    def __init__(self) -> None:
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


@pytest.fixture
def pool(clock: FakeClock) -> Iterator[sg.DynamicPool[Engine]]:
    pool = sg.DynamicPool(
        Engine,
        name="fast",
        min_size=2,
        max_size=4,
        scale_up_threshold=0.5,
        scale_down_threshold=0.2,
        scale_interval=NEVER,
        clock=clock,
    )
    yield pool
    pool.close()


def test_take_hands_out_idle_resources_most_recent_first(pool: sg.DynamicPool[Engine]) -> None:
    first = pool.take()
    second = pool.take()
    assert first is not MISSING
    assert second is not MISSING
    assert first is not second
    assert pool.take() is MISSING  # none idle: take never creates (acquire does)
    assert pool.stats().total == 2
    assert pool.give_back(first)
    assert pool.take() is first
    assert pool.immediate.count == 3
    assert pool.stats().total_requests == 3
    pool.give_back(first)
    pool.give_back(second)


def test_give_back_refuses_what_is_not_leased(pool: sg.DynamicPool[Engine]) -> None:
    resource = pool.take()
    assert not pool.give_back(Engine())  # foreign
    assert pool.give_back(resource)
    assert not pool.give_back(resource)  # already back
    assert pool.stats().available == 2


def test_give_back_hands_the_resource_to_a_waiting_caller(pool: sg.DynamicPool[Engine]) -> None:
    held = [pool.acquire(), pool.acquire(), pool.acquire(), pool.acquire()]  # at max_size
    got: list[Engine] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=30.0)))
    waiter.start()
    deadline = time.monotonic() + 30.0
    while pool.stats().waiting != 1:
        assert time.monotonic() < deadline, "the caller never started waiting"
        time.sleep(0.001)
    assert pool.give_back(held[0])
    waiter.join(30.0)
    assert got == [held[0]]
    assert pool.stats().available == 0
    for resource in [*got, *held[1:]]:
        pool.give_back(resource)


def test_give_back_after_close_closes_the_resource(pool: sg.DynamicPool[Engine]) -> None:
    resource = pool.take()
    pool.close()
    assert pool.give_back(resource)
    assert resource.closes == 1
    assert pool.stats().total == 0


def test_take_and_give_back_count_towards_utilization(
    pool: sg.DynamicPool[Engine], clock: FakeClock
) -> None:
    a, b = pool.take(), pool.take()
    clock.advance(3.0)  # 2 of 2 busy for 3 s
    pool.give_back(a)
    clock.advance(7.0)  # 1 of 2 busy for 7 s: average (6 + 7) / 20 = 0.65
    assert pool.check_and_scale() == 1  # above 0.5: load 1.3 / 0.5 -> 3 resources
    pool.give_back(b)
    clock.advance(10.0)  # idle for a whole interval
    assert pool.check_and_scale() == -1  # back to min_size

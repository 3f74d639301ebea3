"""Coroutine functions as listeners: scheduled, in order, once per transition, never awaited
by the caller whose call made the transition."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

import switchgear as sg
from switchgear import BreakerState, TransitionEvent
from switchgear.testing import FakeClock

OPEN, CLOSED, HALF_OPEN = BreakerState.OPEN, BreakerState.CLOSED, BreakerState.HALF_OPEN
CYCLE = [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def boom() -> None:
    raise ConnectionError("down")


def ok() -> str:
    return "ok"


def cycle(breaker: sg.CircuitBreaker, clock: FakeClock) -> None:
    """Trip, wait out open_timeout, close with one successful trial: three transitions."""
    with pytest.raises(ConnectionError):
        breaker.call(boom)
    clock.advance(breaker.open_timeout)
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


def make(clock: FakeClock, listener: Any) -> sg.CircuitBreaker:
    return sg.CircuitBreaker(
        "async",
        failure_threshold=1,
        success_threshold=1,
        open_timeout=5.0,
        clock=clock,
        on_state_change=listener,
    )


def test_on_the_running_loop_in_order_after_the_call_returned() -> None:
    seen: list[TransitionEvent] = []
    finished = asyncio.Event  # bound inside the loop below

    async def main() -> None:
        done = finished()

        async def listener(event: TransitionEvent) -> None:
            # The first event takes the longest: order must still hold.
            await asyncio.sleep({OPEN: 0.03, HALF_OPEN: 0.01}.get(event.new, 0.0))
            seen.append(event)
            if event.new is CLOSED:
                done.set()

        clock = FakeClock()
        breaker = make(clock, listener)
        cycle(breaker, clock)
        assert seen == []  # the calls did not wait for the listener
        await asyncio.wait_for(done.wait(), 5.0)

    asyncio.run(main())
    assert [(e.old, e.new) for e in seen] == CYCLE
    assert [e.reason for e in seen] == [
        "consecutive_failures",
        "open_timeout_elapsed",
        "trials_succeeded",
    ]


def test_registered_on_a_loop_for_a_breaker_used_from_threads() -> None:
    """Callers in threads never wait: the listener is blocked until they have all returned."""
    seen: list[tuple[BreakerState, BreakerState, str]] = []
    home_thread: list[str] = []

    async def main() -> None:
        release = asyncio.Event()
        all_seen = asyncio.Event()

        async def listener(old: BreakerState, new: BreakerState) -> None:  # two arguments
            await release.wait()
            seen.append((old, new, threading.current_thread().name))
            home_thread.append(threading.current_thread().name)
            if len(seen) == 6:
                all_seen.set()

        clock = FakeClock()
        breaker = sg.CircuitBreaker(
            "threads", failure_threshold=1, success_threshold=1, open_timeout=5.0, clock=clock
        )
        breaker.add_listener(listener)  # registered on this loop
        for _ in range(2):
            worker = threading.Thread(target=cycle, args=(breaker, clock))
            worker.start()
            await asyncio.to_thread(worker.join, 10.0)  # the loop keeps running meanwhile
            assert not worker.is_alive(), "a caller waited for the listener"
        assert seen == []
        release.set()
        await asyncio.wait_for(all_seen.wait(), 5.0)

    asyncio.run(main())
    assert [(old, new) for old, new, _ in seen] == CYCLE * 2
    assert set(home_thread) == {threading.main_thread().name}  # on the loop it was added on


def test_without_any_loop_on_the_librarys_own_and_errors_are_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[BreakerState] = []
    delivered = threading.Event()
    threads: set[str] = set()

    async def flaky(event: TransitionEvent) -> None:
        threads.add(threading.current_thread().name)
        if event.new is OPEN:
            raise RuntimeError("listener bug")
        seen.append(event.new)
        if event.new is CLOSED:
            delivered.set()

    clock = FakeClock()
    breaker = make(clock, flaky)
    with caplog.at_level(logging.ERROR, logger="switchgear"):
        cycle(breaker, clock)
        assert delivered.wait(5.0)
    assert seen == [HALF_OPEN, CLOSED]  # the one that raised did not stop the next
    assert threads == {"switchgear-listeners"}
    (record,) = [r for r in caplog.records if "state-change listener" in r.getMessage()]
    assert record.exc_info is not None
    assert "listener bug" in str(record.exc_info[1])


def test_an_async_listener_can_be_removed() -> None:
    calls: list[TransitionEvent] = []

    async def listener(event: TransitionEvent) -> None:
        calls.append(event)

    clock = FakeClock()
    breaker = make(clock, None)
    breaker.add_listener(listener)
    breaker.remove_listener(listener)

    async def main() -> None:
        cycle(breaker, clock)
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert calls == []


def test_many_transitions_from_many_threads_reach_the_listener_once_each_in_order() -> None:
    """Eight threads trip and reset one breaker at once; the listener sees every transition
    once, in the order the breaker made them (compared with a plain listener's record)."""
    made: list[tuple[BreakerState, BreakerState]] = []
    heard: list[tuple[BreakerState, BreakerState]] = []
    done = threading.Event()

    async def listener(event: TransitionEvent) -> None:
        await asyncio.sleep(0)
        heard.append((event.old, event.new))
        if len(heard) == len(made) and stop.is_set():
            done.set()

    stop = threading.Event()
    breaker = sg.CircuitBreaker("many", failure_threshold=1, success_threshold=1, open_timeout=5.0)
    breaker.add_listener(lambda old, new: made.append((old, new)))
    breaker.add_listener(listener)

    def work() -> None:
        for _ in range(200):
            try:
                breaker.call(boom)
            except (ConnectionError, sg.CircuitOpenError):
                pass
            breaker.reset()

    workers = [threading.Thread(target=work) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    if len(heard) != len(made):
        assert done.wait(10.0), (len(heard), len(made))
    assert len(made) > 100
    assert heard == made

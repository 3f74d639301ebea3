"""The breaker under threads and asyncio tasks: one transition per change, bounded trials,
and no lock held across the user's call."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import switchgear as sg
from switchgear._breaker.protocol import FAILURE, SUCCESS
from switchgear.testing import FakeClock


def assert_valid_chain(log: list[tuple[sg.BreakerState, sg.BreakerState]], final: str) -> None:
    """Each transition starts where the previous ended: none lost, duplicated or reordered."""
    state = "closed"
    for old, new in log:
        assert old.value == state, (old, new, state)
        assert old is not new
        state = new.value
    assert state == final


class EpisodeBreaker:
    """A breaker that records, under its own lock, which HALF_OPEN episode admitted each trial.

    The guarantee is per episode: a failed (or hung) trial reopens the breaker and ends its
    episode while the episode's other trials may still be running; the next episode's trials
    can overlap those orphans. So the counts are kept per episode, not globally.
    """

    def __init__(self, name: str, **options: Any) -> None:
        self.breaker = sg.CircuitBreaker(name, **options)
        self.episode_of: dict[int, int] = {}
        machine = self.breaker._machine
        take_trial = machine.take_trial

        def recording(now: float) -> tuple[int | None, sg.CircuitOpenError | None]:
            token, error = take_trial(now)  # called with the machine's lock held
            if token is not None:
                self.episode_of[token] = machine.gen
            return token, error

        setattr(machine, "take_trial", recording)  # noqa: B010 (an instance-level hook)
        self.admit = self.breaker.admit
        self.finish = self.breaker.finish
        self.reset = self.breaker.reset

    @property
    def state(self) -> sg.BreakerState:
        return self.breaker.state

    @property
    def _machine(self) -> Any:
        return self.breaker._machine


def episode_breaker(name: str, **options: Any) -> EpisodeBreaker:
    return EpisodeBreaker(name, **options)


class TrialCounter:
    """Trials inside the protected section, per HALF_OPEN episode."""

    def __init__(self, br: EpisodeBreaker) -> None:
        self.br = br
        self.lock = threading.Lock()
        self.inside: dict[int, int] = {}
        self.admitted: dict[int, int] = {}
        self.peak = 0
        self.trials = 0

    def enter(self, token: int) -> int:
        episode = self.br.episode_of[token]
        with self.lock:
            self.inside[episode] = self.inside.get(episode, 0) + 1
            self.admitted[episode] = self.admitted.get(episode, 0) + 1
            self.trials += 1
            self.peak = max(self.peak, self.inside[episode])
        return episode

    def leave(self, episode: int) -> None:
        with self.lock:
            self.inside[episode] -= 1

    def most_admitted(self) -> int:
        return max(self.admitted.values())


def test_threads_transitions_once_in_order_and_trials_bounded() -> None:
    log: list[tuple[sg.BreakerState, sg.BreakerState]] = []
    clock = FakeClock()
    br = episode_breaker(
        "threads",
        failure_threshold=3,
        success_threshold=2,
        half_open_max_calls=3,
        open_timeout=0.05,
        on_state_change=lambda old, new: log.append((old, new)),
        clock=clock,
    )
    counter = TrialCounter(br)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        try:
            for _ in range(20_000):
                try:
                    token = br.admit()
                except sg.CircuitOpenError:
                    # Rejections drive time: the run spans many open/half-open cycles.
                    clock.advance(0.001)
                    time.sleep(0)
                    continue
                if token is not None and token < 0:
                    episode = counter.enter(token)
                    if rng.random() < 0.5:
                        time.sleep(0)  # let other threads run while a trial is inside
                    counter.leave(episode)
                br.finish(token, FAILURE if rng.random() < 0.3 else SUCCESS, 0.0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert counter.trials > 100, "HALF_OPEN was hardly reached; the test proves nothing"
    assert counter.most_admitted() <= 3
    assert 1 <= counter.peak <= 3
    assert len(log) == br._machine.gen
    assert_valid_chain(log, br._machine.state.value)
    opens = sum(1 for _, new in log if new is sg.BreakerState.OPEN)
    assert opens > 10


def test_threads_through_public_call() -> None:
    """The same with ``call``: the listener chain stays valid and counts nothing twice."""
    log: list[tuple[sg.BreakerState, sg.BreakerState]] = []
    br = sg.CircuitBreaker(
        "threads-call",
        failure_threshold=2,
        success_threshold=1,
        open_timeout=0.0002,
        failure_rate_threshold=0.5,
        minimum_calls=5,
        window=1.0,
        on_state_change=lambda old, new: log.append((old, new)),
    )
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(10_000):
            fail = rng.random() < 0.4

            def body(fail: bool = fail) -> None:
                if fail:
                    raise RuntimeError

            try:
                br.call(body)
            except (RuntimeError, sg.CircuitOpenError):
                pass

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log) == br._machine.gen > 10
    assert_valid_chain(log, br._machine.state.value)


def test_asyncio_tasks_transitions_once_and_trials_bounded() -> None:
    log: list[tuple[sg.BreakerState, sg.BreakerState]] = []
    clock = FakeClock()
    br = episode_breaker(
        "tasks",
        failure_threshold=3,
        success_threshold=2,
        half_open_max_calls=2,
        open_timeout=0.05,
        on_state_change=lambda old, new: log.append((old, new)),
        clock=clock,
    )
    counter = TrialCounter(br)

    async def task(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(150):
            try:
                token = br.admit()
            except sg.CircuitOpenError:
                clock.advance(0.002)
                await asyncio.sleep(0)
                continue
            episode = counter.enter(token) if token is not None and token < 0 else None
            await asyncio.sleep(0)
            if episode is not None:
                counter.leave(episode)
            br.finish(token, FAILURE if rng.random() < 0.3 else SUCCESS, 0.0)

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(1000)))

    asyncio.run(main())
    assert counter.trials > 20, counter.trials
    assert counter.most_admitted() <= 2
    assert 1 <= counter.peak <= 2
    assert len(log) == br._machine.gen
    assert_valid_chain(log, br._machine.state.value)


def test_asyncio_call_async_many_tasks() -> None:
    inside = 0
    peak = 0
    br = sg.CircuitBreaker(
        "tasks-call", failure_threshold=1, success_threshold=3, open_timeout=0.01
    )
    br.force_open()
    br.reset()

    async def body() -> None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.001)
        inside -= 1

    async def main() -> None:
        await asyncio.gather(*(br.call_async(body) for _ in range(1000)))

    asyncio.run(main())
    assert peak == 1000  # nothing serializes the awaiting calls
    assert br.state is sg.BreakerState.CLOSED


def test_lock_is_not_held_across_the_call() -> None:
    """8 threads x 20 calls of a 5 ms function: ideal 100 ms; pybreaker needs ~8x."""
    br = sg.CircuitBreaker("sleepy")
    lock = threading.Lock()
    inside = 0
    peak = 0

    def sleepy() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.005)
        with lock:
            inside -= 1

    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(20):
            br.call(sleepy)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert peak == 8
    assert elapsed < 0.2, f"{elapsed:.3f}s for an ideal 0.1s"


def test_listeners_run_outside_the_lock() -> None:
    """A listener that blocks does not stop other threads from calling through the breaker."""
    release = threading.Event()
    entered = threading.Event()
    br = sg.CircuitBreaker("slow-listener", failure_threshold=1, open_timeout=100.0)

    def listener(old: sg.BreakerState, new: sg.BreakerState) -> None:
        entered.set()
        release.wait(5)

    br.add_listener(listener)

    def trip() -> None:
        try:
            br.call(_raise)
        except RuntimeError:
            pass

    t = threading.Thread(target=trip)
    t.start()
    assert entered.wait(5)
    # The breaker is usable (and already OPEN) while the listener is still running.
    assert br.state is sg.BreakerState.OPEN
    assert br.allow_request() is False
    release.set()
    t.join()


def _raise() -> None:
    raise RuntimeError

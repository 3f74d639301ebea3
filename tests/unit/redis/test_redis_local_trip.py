"""A shared breaker trusts its own failures, and a process loses nothing when it ends.

A real ``redis-server`` (see ``tests/unit/redis/test_redis.py``). Where it matters the
breakers live in separate OS processes: short-lived ones that exit right after failing, two
that trip at the
same moment, one whose Redis is gone when it exits, and a forked child.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear._breaker.storage import Outbox
from switchgear.redis import RedisStorage
from tests.unit.redis.test_redis import (
    STALENESS,
    TIMEOUT,
    RedisServer,
    boom,
    ok,
    shared,
    start_server,
    transitions,
    wait_for,
)
from tests.unit.redis.test_redis import server as server  # the module's redis-server fixture

# How long another process may take to see a change (max_staleness) plus slack for a
# loaded 2-core machine.
SEEN_WITHIN = STALENESS + 0.6


@pytest.fixture
def storage(server: RedisServer) -> Iterator[RedisStorage]:
    made = RedisStorage(server.client(), max_staleness=STALENESS, timeout=TIMEOUT)
    yield made
    made.close()


def run_script(body: str, port: int, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a fresh interpreter with ``storage`` (sync client) on ``port``."""
    prelude = f"""
        import redis
        import switchgear as sg
        from switchgear.redis import RedisStorage

        client = redis.Redis(host="127.0.0.1", port={port}, socket_timeout=0.5)
        storage = RedisStorage(client, max_staleness={STALENESS}, timeout={TIMEOUT})

        def boom():
            raise RuntimeError("boom")

        def fail(breaker, times):
            for _ in range(times):
                try:
                    breaker.call(boom)
                except (RuntimeError, sg.CircuitOpenError):
                    pass  # rejected once this process knows the fleet streak reached it
    """
    code = textwrap.dedent(prelude) + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def fleet_state(server: RedisServer, name: str) -> dict[str, str]:
    raw: dict[bytes, bytes] = server.client().hgetall(f"switchgear:{{{name}}}")  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}


# -- one process ------------------------------------------------------------------------------


def test_a_shared_breaker_rejects_at_once_after_its_own_threshold(
    storage: RedisStorage, server: RedisServer
) -> None:
    breaker = shared("tight", storage, failure_threshold=3, open_timeout=30.0)
    registry = CollectorRegistry()
    sg.Metrics("tight", registry=registry).attach(breaker)
    heard: list[tuple[str, str]] = []
    breaker.add_listener(lambda old, new: heard.append((old.value, new.value)))
    executed = rejected = 0

    def failing() -> None:
        nonlocal executed
        executed += 1
        raise RuntimeError("down")

    states = []
    for _ in range(6):
        try:
            breaker.call(failing)
        except RuntimeError:
            pass
        except sg.CircuitOpenError:
            rejected += 1
        states.append(breaker.state)
    assert (executed, rejected) == (3, 3)
    assert states[2] is sg.BreakerState.OPEN  # right after the third failure
    assert heard == [("closed", "open")]  # listeners hear of it at once
    # The trip reaches Redis as this process's proposal, and is counted here exactly once.
    assert storage.flush()
    assert fleet_state(server, "tight")["state"] == "open"
    assert fleet_state(server, "tight")["opens"] == "1"
    wait_for(lambda: transitions(registry, "tight") == {("closed", "open"): 1.0})
    with pytest.raises(sg.CircuitOpenError) as info:
        breaker.call(ok)
    assert 29.0 < info.value.retry_after <= 30.0


def test_local_failures_add_to_the_fleet_streak_last_seen(
    server: RedisServer,
) -> None:
    # Polling (push off): b refreshes every max_staleness / 2, so it sees the streak grow.
    # With push, a streak is not a transition: b learns it with its next exchange.
    a_storage = RedisStorage(server.client(), max_staleness=STALENESS, timeout=TIMEOUT)
    b_storage = RedisStorage(server.client(), max_staleness=STALENESS, timeout=TIMEOUT, push=False)
    try:
        options: dict[str, Any] = {"failure_threshold": 3, "open_timeout": 30.0}
        a = shared("streak", a_storage, **options)
        b = shared("streak", b_storage, **options)
        for _ in range(2):
            with pytest.raises(RuntimeError):
                a.call(boom)
        assert a_storage.flush()
        assert fleet_state(server, "streak")["failures"] == "2"
        # b learns the fleet streak in its next refresh (every max_staleness / 2).
        wait_for(lambda: b._machine.failures == 2, SEEN_WITHIN)
        with pytest.raises(RuntimeError):
            b.call(boom)
        assert b.state is sg.BreakerState.OPEN  # 2 seen + 1 here: no wait for Redis
        with pytest.raises(sg.CircuitOpenError):
            b.call(ok)
    finally:
        a_storage.close()
        b_storage.close()


def test_with_push_a_failure_on_top_of_an_unseen_streak_trips_in_redis(
    server: RedisServer,
) -> None:
    hosts = [RedisStorage(server.client(), max_staleness=10.0, timeout=TIMEOUT) for _ in "ab"]
    try:
        options: dict[str, Any] = {"failure_threshold": 3, "open_timeout": 30.0}
        a, b = (shared("unseen-streak", s, **options) for s in hosts)
        wait_for(lambda: all(s._ledger.push_up for s in hosts), 5.0)
        wait_for(lambda: b._machine.linked, 5.0)  # type: ignore[attr-defined]
        for _ in range(2):
            with pytest.raises(RuntimeError):
                a.call(boom)
        assert hosts[0].flush()
        assert fleet_state(server, "unseen-streak")["failures"] == "2"
        with pytest.raises(RuntimeError):
            b.call(boom)  # b saw no streak: its one failure goes to Redis, which trips
        wait_for(lambda: a.state is b.state is sg.BreakerState.OPEN, 1.0)
    finally:
        for s in hosts:
            s.close()


def test_rate_rules_stay_with_the_fleet_window(storage: RedisStorage) -> None:
    """One process's calls are not the fleet's window: a rate trip waits for Redis."""
    breaker = shared(
        "rates",
        storage,
        failure_threshold=1000,
        failure_rate_threshold=0.5,
        minimum_calls=4,
        open_timeout=30.0,
    )
    wait_for(lambda: breaker._machine.linked)  # type: ignore[attr-defined]
    for success in (False, True, False, True):
        breaker.record_result(success)
    assert breaker.state is sg.BreakerState.CLOSED  # not decided alone
    assert storage.flush()
    wait_for(lambda: breaker.state is sg.BreakerState.OPEN)


def test_flush_and_close_send_batched_outcomes(storage: RedisStorage, server: RedisServer) -> None:
    breaker = shared("batched", storage, failure_rate_threshold=0.9, minimum_calls=1000)
    wait_for(lambda: breaker._machine.linked)  # type: ignore[attr-defined]
    for _ in range(25):
        breaker.record_result(True)  # successes for the rate rule wait for the next refresh
    assert storage.flush()
    assert window_calls(server, "batched") == 25
    with pytest.raises(ValueError, match="timeout"):
        storage.flush(timeout=-1)


def window_calls(server: RedisServer, name: str) -> int:
    window: dict[bytes, bytes] = server.client().hgetall(f"switchgear:{{{name}}}:window")  # type: ignore[assignment]
    return sum(int(v) for k, v in window.items() if k.endswith(b":c"))


# -- short-lived processes --------------------------------------------------------------------


def test_a_process_that_trips_and_exits_trips_the_fleet(
    storage: RedisStorage, server: RedisServer
) -> None:
    watcher = shared("cron", storage, failure_threshold=3, open_timeout=30.0)
    wait_for(lambda: watcher._machine.linked)  # type: ignore[attr-defined]
    run_script(
        """
        breaker = sg.CircuitBreaker("cron", failure_threshold=3, open_timeout=30.0, storage=storage)
        fail(breaker, 3)
        assert breaker.state is sg.BreakerState.OPEN
        """,  # and exits at once: nothing but the exit flush writes the trip
        server.port,
    )
    exited = time.monotonic()
    wait_for(lambda: watcher.state is sg.BreakerState.OPEN, SEEN_WITHIN)
    assert time.monotonic() - exited <= SEEN_WITHIN
    assert fleet_state(server, "cron")["opens"] == "1"


def test_short_lived_processes_add_up_to_a_fleet_trip(server: RedisServer) -> None:
    body = """
        breaker = sg.CircuitBreaker("jobs", failure_threshold=5, open_timeout=30.0, storage=storage)
        fail(breaker, 2)
    """
    run_script(body, server.port)
    first = fleet_state(server, "jobs")
    assert (first["state"], first["failures"]) == ("closed", "2")
    run_script(body, server.port)
    assert fleet_state(server, "jobs")["failures"] == "4"
    run_script(body, server.port)
    assert fleet_state(server, "jobs")["state"] == "open"


def test_an_asyncio_process_that_trips_and_exits_trips_the_fleet(server: RedisServer) -> None:
    run_script(
        f"""
        import asyncio
        import redis.asyncio

        async def main():
            client = redis.asyncio.Redis(host="127.0.0.1", port={server.port})
            storage = RedisStorage(client, max_staleness={STALENESS}, timeout={TIMEOUT})
            breaker = sg.CircuitBreaker("lambda", failure_threshold=2, storage=storage)

            async def aboom():
                raise RuntimeError("boom")

            for _ in range(2):
                try:
                    await breaker.call_async(aboom)
                except RuntimeError:
                    pass
            assert breaker.state is sg.BreakerState.OPEN

        asyncio.run(main())  # the loop ends with the trip unsent: the exit flush sends it
        """,
        server.port,
    )
    assert fleet_state(server, "lambda")["state"] == "open"


def test_exit_is_not_held_up_when_redis_is_gone(tmp_path_factory: pytest.TempPathFactory) -> None:
    own = start_server(tmp_path_factory)
    timeout = 0.25
    code = textwrap.dedent(
        f"""
        import sys, time
        import redis
        import switchgear as sg
        from switchgear.redis import RedisStorage

        client = redis.Redis(host="127.0.0.1", port={own.port}, socket_timeout=5,
                             socket_connect_timeout=5)
        storage = RedisStorage(client, max_staleness=1.0, timeout={timeout})
        breaker = sg.CircuitBreaker("gone", failure_threshold=100, storage=storage)
        breaker.call(lambda: None)
        while not breaker._machine.linked:
            time.sleep(0.01)
        print("ready", flush=True)
        sys.stdin.readline()

        def boom():
            raise RuntimeError("boom")

        try:
            breaker.call(boom)  # a write is pending when the interpreter exits
        except RuntimeError:
            pass
        print(time.monotonic(), flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        # Stopped without closing the sockets: the worker's connection hangs, no refusal.
        assert own.process is not None
        own.process.send_signal(19)  # SIGSTOP
        proc.stdin.write("go\n")
        proc.stdin.flush()
        last_line = float(proc.stdout.readline())
        proc.wait(10)
        took = time.monotonic() - last_line
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        assert took <= timeout + 0.5, took
    finally:
        if proc.poll() is None:
            proc.kill()
        if own.process is not None:
            own.process.send_signal(18)  # SIGCONT, so it can be killed cleanly
        own.kill()


# -- two processes trip at the same moment ----------------------------------------------------


def _trip_at_barrier(
    conn: Connection, port: int, barrier: Any
) -> None:  # pragma: no cover - runs in the children
    import switchgear as sg
    from switchgear.redis import RedisStorage

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
    storage = RedisStorage(client, max_staleness=STALENESS, timeout=TIMEOUT)
    registry = CollectorRegistry()
    breaker = sg.CircuitBreaker("together", failure_threshold=3, open_timeout=30.0, storage=storage)
    sg.Metrics("together", registry=registry).attach(breaker)
    assert breaker.state is sg.BreakerState.CLOSED  # reading it attaches
    while not breaker._machine.linked:  # type: ignore[attr-defined]
        time.sleep(0.005)
    barrier.wait(30)
    for _ in range(3):
        try:
            breaker.call(boom)
        except RuntimeError:
            pass
    state_after = breaker.state.value
    storage.flush()
    # Both adopt one episode: the same deadline for the end of OPEN (Redis's clock).
    deadline = time.time() + 30.0
    while time.time() < deadline:
        try:
            breaker.call(ok)
        except sg.CircuitOpenError as exc:
            reopen_at = time.time() + exc.retry_after
            break
        time.sleep(0.005)
    time.sleep(STALENESS)  # one refresh more: the loser's answer has arrived by now
    conn.send((state_after, transitions(registry, "together"), reopen_at))
    storage.close()


def test_two_processes_tripping_together_make_one_fleet_trip(server: RedisServer) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    pipes = [ctx.Pipe() for _ in range(2)]
    procs = [
        ctx.Process(target=_trip_at_barrier, args=(child, server.port, barrier), daemon=True)
        for _, child in pipes
    ]
    for proc in procs:
        proc.start()
    try:
        results = []
        for parent, _ in pipes:
            assert parent.poll(60), "a process did not report"
            results.append(parent.recv())
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    assert [state for state, _, _ in results] == ["open", "open"]
    counted = sum(c.get(("closed", "open"), 0.0) for _, c, _ in results)
    assert counted == 1.0, results
    state = fleet_state(server, "together")
    assert (state["state"], state["epoch"], state["opens"]) == ("open", "1", "1")
    first, second = (reopen_at for _, _, reopen_at in results)
    assert abs(first - second) < 0.5, results  # one episode, one deadline


# -- fork ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_send_the_parents_pending_outcomes(
    storage: RedisStorage, server: RedisServer
) -> None:
    breaker = shared("forked", storage, failure_rate_threshold=0.9, minimum_calls=1000)
    wait_for(lambda: breaker._machine.linked)  # type: ignore[attr-defined]
    for _ in range(10):
        breaker.record_result(True)  # batched: pending in this process's outbox
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            storage.flush()
            storage.close()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert storage.flush()
    assert window_calls(server, "forked") == 10  # sent once, by the parent


def test_flush_waits_for_nothing_when_nothing_is_pending(storage: RedisStorage) -> None:
    breaker = shared("idle", storage)
    wait_for(lambda: breaker._machine.linked)  # type: ignore[attr-defined]
    start = time.monotonic()
    assert storage.flush()
    assert time.monotonic() - start < 0.2


# -- an unsent outbox, resent -------------------------------------------------------------------


def _encode(outcomes: list[bool]) -> Outbox:
    """What a linked breaker's outbox says after these outcomes (see its counting)."""
    out = Outbox()
    for success in outcomes:
        if not success:
            out.streak += 1
        else:
            if out.reset:
                out.peak = max(out.peak, out.streak)
            else:
                out.lead = out.streak
            out.reset = True
            out.streak = 0
    return out


@given(st.lists(st.booleans(), max_size=12), st.lists(st.booleans(), max_size=12))
def test_an_unsent_outbox_merged_with_the_next_says_what_both_said(
    first: list[bool], second: list[bool]
) -> None:
    merged = _encode(first).then(_encode(second))
    whole = _encode(first + second)
    fields = ("reset", "streak", "lead", "peak")
    assert [getattr(merged, f) for f in fields] == [getattr(whole, f) for f in fields]

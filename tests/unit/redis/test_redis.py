"""Shared breaker state in Redis, in one process: several storages stand for several hosts.

A real ``redis-server`` is started on a free 127.0.0.1 port (no persistence); the fault
tests get their own server so they can kill and restart it. Waits poll with deadlines.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear._http.endpoints import _breaker_status
from switchgear.redis import RedisStorage
from tests.conftest import require_binary

STALENESS = 0.2  # max_staleness used by these tests
TIMEOUT = 0.1  # storage timeout used by these tests
BOUND = STALENESS + TIMEOUT + 0.4  # staleness bound plus slack for a loaded machine


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 (no persistence) that tests can kill and restart."""

    def __init__(self, binary: str, workdir: Path, *extra: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.extra = extra  # more redis-server arguments
        secret = extra.index("--requirepass") + 1 if "--requirepass" in extra else None
        self.password = None if secret is None else extra[secret]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
                *("--enable-debug-command", "yes"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = self.client()
        deadline = time.monotonic() + 10.0
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        probe.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def client(self, **options: Any) -> redis.Redis:
        options.setdefault("socket_timeout", 0.5)
        options.setdefault("socket_connect_timeout", 0.5)
        options.setdefault("password", self.password)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)


def start_server(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    binary = require_binary("redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = start_server(tmp_path_factory)
    yield srv
    srv.kill()


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = start_server(tmp_path_factory)
    yield srv
    srv.kill()


@pytest.fixture
def storages(server: RedisServer) -> Iterator[Callable[..., RedisStorage]]:
    """Make storages (one per simulated host), each with its own client; closed afterwards."""
    made: list[RedisStorage] = []

    def make(**options: Any) -> RedisStorage:
        options.setdefault("max_staleness", STALENESS)
        options.setdefault("timeout", TIMEOUT)
        storage = RedisStorage(server.client(), **options)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()


def wait_for(predicate: Callable[[], bool], timeout: float = BOUND) -> float:
    """Poll ``predicate`` until it holds; return the seconds it took (fail at the deadline)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout:.2f}s")
        time.sleep(0.005)
    return time.monotonic() - start


def boom() -> None:
    raise RuntimeError("boom")


def ok() -> str:
    return "ok"


def fail(breaker: sg.CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(RuntimeError):
            breaker.call(boom)


def transitions(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if (
                sample.name == "switchgear_circuit_transitions_total"
                and sample.labels["name"] == name
                and sample.value
            ):
                key = (sample.labels["from_state"], sample.labels["to_state"])
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def shared(name: str, storage: RedisStorage, **options: Any) -> sg.CircuitBreaker:
    """A breaker on ``storage`` for a name the store has no state for yet (so: CLOSED)."""
    breaker = sg.CircuitBreaker(name, storage=storage, **options)
    assert breaker.state is sg.BreakerState.CLOSED  # reading it attaches, as a call would
    return breaker


# -- bad input (no server needed) ---------------------------------------------------------


def test_bad_arguments_name_the_argument() -> None:
    client = redis.Redis(port=1)
    with pytest.raises(TypeError, match="client"):
        RedisStorage(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="client"):
        RedisStorage("redis://localhost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key_prefix"):
        RedisStorage(client, key_prefix="")
    with pytest.raises(TypeError, match="key_prefix"):
        RedisStorage(client, key_prefix=b"x:")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key_prefix"):
        RedisStorage(client, key_prefix="a{b}:")
    with pytest.raises(TypeError, match="positional"):  # the options are keyword-only
        RedisStorage(client, "x:")  # type: ignore[call-arg]
    for bad in (0, -1.0, float("nan"), float("inf"), 31):
        with pytest.raises(ValueError, match="timeout"):
            RedisStorage(client, timeout=bad)
    with pytest.raises(TypeError, match="timeout"):
        RedisStorage(client, timeout="1s")  # type: ignore[arg-type]
    for bad in (0, -0.5, 61):
        with pytest.raises(ValueError, match="max_staleness"):
            RedisStorage(client, max_staleness=bad)
    with pytest.raises(ValueError, match="key_ttl"):
        RedisStorage(client, key_ttl=0.5)
    storage = RedisStorage(client, key_ttl=10, max_staleness=timedelta(milliseconds=500))
    assert storage.max_staleness == 0.5
    with pytest.raises(ValueError, match="key_ttl"):
        sg.CircuitBreaker("x", open_timeout=30.0, storage=storage)
    with pytest.raises(ValueError, match="storage"):
        sg.CircuitBreaker("x", storage="redis://localhost")
    with pytest.raises(ValueError, match="storage"):
        sg.CircuitBreaker("x", storage=client)


def test_one_breaker_class_and_one_storage_class_whatever_the_client() -> None:
    local = sg.CircuitBreaker("local")
    assert type(local) is sg.CircuitBreaker
    assert local.storage is None
    assert local.storage_degraded is False
    storage = RedisStorage(redis.Redis(port=1, socket_timeout=0.1))
    breaker = sg.CircuitBreaker("remote", storage=storage)
    assert type(breaker) is sg.CircuitBreaker
    assert breaker.storage is storage
    assert type(storage) is RedisStorage
    assert type(RedisStorage(redis.asyncio.Redis(port=1))) is RedisStorage


# -- sharing --------------------------------------------------------------------------------


def test_failures_in_two_processes_trip_both_and_count_once(
    storages: Callable[..., RedisStorage], server: RedisServer
) -> None:
    options: dict[str, Any] = {"failure_threshold": 4, "open_timeout": 30.0}
    regs = [CollectorRegistry(), CollectorRegistry()]
    a = shared("trip", storages(), **options)
    b = shared("trip", storages(), **options)
    for breaker, registry in zip((a, b), regs, strict=True):
        sg.Metrics("trip", registry=registry).attach(breaker)
    seen: list[tuple[str, str]] = []
    b.add_listener(lambda old, new: seen.append((old.value, new.value)))
    wait_for(lambda: not a.storage_degraded and server.client().exists("switchgear:{trip}") == 1)
    for breaker in (a, b, a, b):
        fail(breaker)
        time.sleep(0.02)  # each failure reaches Redis in one round trip; keep them apart
    wait_for(lambda: a.state is sg.BreakerState.OPEN and b.state is sg.BreakerState.OPEN)
    with pytest.raises(sg.CircuitOpenError) as info:
        a.call(ok)
    assert 29.0 < info.value.retry_after <= 30.0
    counted = [transitions(r, "trip") for r in regs]
    assert sum(c.get(("closed", "open"), 0) for c in counted) == 1
    # The process that did not make the trip still tells its listeners.
    assert seen == [("closed", "open")]
    assert server.client().hget("switchgear:{trip}", "opens") == b"1"


def test_half_open_permits_are_fleet_wide_and_success_closes_everywhere(
    storages: Callable[..., RedisStorage],
) -> None:
    options: dict[str, Any] = {
        "failure_threshold": 1,
        "success_threshold": 2,
        "half_open_max_calls": 2,
        "open_timeout": 1.0,  # longer than the probing below: no probe counts as hung
    }
    fleet = [shared("probe", storages(), **options) for _ in range(3)]
    wait_for(lambda: not any(b.storage_degraded for b in fleet) and fleet[0]._machine.linked)  # type: ignore[attr-defined]
    fail(fleet[0])
    wait_for(lambda: all(b.state is sg.BreakerState.OPEN for b in fleet))
    wait_for(lambda: all(b.state is sg.BreakerState.HALF_OPEN for b in fleet), 2.0)
    admitted: list[sg.CircuitBreaker] = []
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        for breaker in fleet:
            if breaker.allow_request():
                admitted.append(breaker)
        time.sleep(0.005)
    assert 1 <= len(admitted) <= 2
    for breaker in admitted:
        breaker.record_result(True)
    if len(admitted) == 1:  # one probe so far: the second success comes from a new permit
        wait_for(lambda: fleet[0].allow_request(), 2.0)
        fleet[0].record_result(True)
    wait_for(lambda: all(b.state is sg.BreakerState.CLOSED for b in fleet))


def test_a_half_open_breaker_with_sparse_calls_still_closes(
    storages: Callable[..., RedisStorage],
) -> None:
    """Calls further apart than a refresh: the permit a rejected call asked for must wait."""
    options: dict[str, Any] = {"failure_threshold": 1, "success_threshold": 1, "open_timeout": 1.0}
    breaker = shared("sparse", storages(), **options)
    wait_for(lambda: breaker._machine.linked)  # type: ignore[attr-defined]
    fail(breaker)
    wait_for(lambda: breaker.state is sg.BreakerState.HALF_OPEN, 2.0)
    seen: list[str] = []
    for _ in range(4):
        try:
            seen.append(breaker.call(ok))
        except sg.CircuitOpenError as exc:
            seen.append(exc.reason)
        if breaker.state is sg.BreakerState.CLOSED:
            break
        time.sleep(3 * STALENESS / 2)  # three refresh periods between calls
    assert seen[-1] == "ok", seen
    assert breaker.state is sg.BreakerState.CLOSED


def _is_open(breaker: sg.CircuitBreaker) -> bool:
    return breaker.state is sg.BreakerState.OPEN


def test_a_run_of_failures_batched_with_a_success_still_trips(
    storages: Callable[..., RedisStorage],
) -> None:
    """Outcomes faster than a round trip reach the store in one exchange, order lost."""
    runs: list[tuple[str, list[bool]]] = [("lead", []), ("peak", [True])]
    for name, before in runs:
        breaker: Any = shared(name, storages(), failure_threshold=3, open_timeout=30.0)
        wait_for(functools.partial(getattr, breaker._machine, "linked"))
        for success in [*before, False, False, False, True]:
            breaker.record_result(success)  # microseconds apart: one batch for the worker
        wait_for(functools.partial(_is_open, breaker))


def test_healthy_closed_breaker_does_no_network_io_per_call(
    storages: Callable[..., RedisStorage], server: RedisServer
) -> None:
    breaker = shared("quiet", storages())
    wait_for(lambda: breaker._machine.linked)  # type: ignore[attr-defined]
    probe = server.client()
    before = int(probe.info("stats")["total_commands_processed"])
    calls = 0
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        for _ in range(1000):
            breaker.call(ok)
        calls += 1000
    after = int(probe.info("stats")["total_commands_processed"])
    # Only the periodic refreshes (one every max_staleness / 2: about 5 here, with slack for
    # a loaded machine and for other clients' housekeeping), never one per call.
    assert calls >= 10_000
    assert after - before <= 50, (after - before, calls)


def test_manual_commands_propagate_and_are_counted_by_their_issuer(
    storages: Callable[..., RedisStorage],
) -> None:
    regs = [CollectorRegistry(), CollectorRegistry()]
    a = shared("manual", storages())
    b = shared("manual", storages())
    for breaker, registry in zip((a, b), regs, strict=True):
        sg.Metrics("manual", registry=registry).attach(breaker)
    a.force_open()
    assert a.state is sg.BreakerState.FORCED_OPEN  # at once, here
    wait_for(lambda: b.state is sg.BreakerState.FORCED_OPEN)
    b.reset()
    wait_for(lambda: a.state is sg.BreakerState.CLOSED)
    b.disable()
    wait_for(lambda: a.state is sg.BreakerState.DISABLED)
    b.reset()
    wait_for(lambda: a.state is sg.BreakerState.CLOSED)
    assert transitions(regs[0], "manual") == {("closed", "forced_open"): 1}
    assert transitions(regs[1], "manual") == {
        ("forced_open", "closed"): 1,
        ("closed", "disabled"): 1,
        ("disabled", "closed"): 1,
    }


def test_failure_rate_rule_is_evaluated_over_the_fleet(
    storages: Callable[..., RedisStorage],
) -> None:
    options: dict[str, Any] = {
        "failure_threshold": 100,
        "failure_rate_threshold": 0.5,
        "minimum_calls": 8,
        "window": 10.0,
    }
    a = shared("rate", storages(), **options)
    b = shared("rate", storages(), **options)
    wait_for(lambda: a._machine.linked and b._machine.linked)  # type: ignore[attr-defined]
    for _ in range(2):
        for breaker in (a, b):
            breaker.call(ok)
            fail(breaker)
    wait_for(lambda: a.state is sg.BreakerState.OPEN and b.state is sg.BreakerState.OPEN)


def test_key_layout_and_expiry(storages: Callable[..., RedisStorage], server: RedisServer) -> None:
    storage = storages(key_prefix="shop:", key_ttl=5.0)
    breaker = shared("GET /items/{id}", storage, open_timeout=1.0, failure_threshold=1)
    fail(breaker)
    assert breaker.state is sg.BreakerState.OPEN  # tripped here at once
    assert storage.flush()  # and proposed to Redis
    probe = server.client()
    key = "shop:{GET /items/{id}}"
    assert probe.hget(key, "state") == b"open"
    assert 0 < probe.pttl(key) <= 5000


def test_protected_and_middleware_options_take_a_shared_breaker(
    storages: Callable[..., RedisStorage], server: RedisServer
) -> None:
    storage = storages()
    breaker = sg.CircuitBreaker("protected-shared", failure_threshold=2, storage=storage)
    registry = CollectorRegistry()

    @sg.protected(
        "protected-shared",
        breaker=breaker,
        metrics=sg.Metrics("protected-shared", registry=registry),
    )
    def flaky() -> None:
        raise RuntimeError("down")

    peer = shared("protected-shared", storages(), failure_threshold=2)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            flaky()
        time.sleep(0.02)
    wait_for(lambda: peer.state is sg.BreakerState.OPEN)
    assert transitions(registry, "protected-shared") == {("closed", "open"): 1}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    sg.ASGIMiddleware(app, breaker_options={"storage": storage, "failure_threshold": 3})
    time.sleep(0.05)
    # Building the middleware validates the options without writing anything to Redis.
    assert not server.client().keys("switchgear:{breaker_options}*")


# -- faults ----------------------------------------------------------------------------------


def test_redis_killed_then_restarted(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    storage = RedisStorage(own_server.client(), max_staleness=STALENESS, timeout=TIMEOUT)
    other = RedisStorage(own_server.client(), max_staleness=STALENESS, timeout=TIMEOUT)
    try:
        options: dict[str, Any] = {"failure_threshold": 3, "open_timeout": 30.0}
        breaker = shared("fault", storage, **options)
        registry = CollectorRegistry()
        sg.Metrics("fault", registry=registry).attach(breaker)
        degraded = "switchgear_circuit_storage_degraded"
        wait_for(lambda: breaker._machine.linked)  # type: ignore[attr-defined]
        assert registry.get_sample_value(degraded, {"name": "fault"}) == 0.0
        assert _breaker_status(breaker) == {"state": "closed", "storage_degraded": False}
        caplog.set_level(logging.WARNING, logger="switchgear")
        own_server.kill()
        worst = 0.0
        start = time.monotonic()
        while not breaker.storage_degraded:
            t0 = time.perf_counter()
            breaker.call(ok)
            worst = max(worst, time.perf_counter() - t0)
            assert time.monotonic() - start < BOUND, "degraded mode not entered in time"
        assert worst < 0.05  # calls never waited for the dead server
        assert storage.degraded
        assert registry.get_sample_value(degraded, {"name": "fault"}) == 1.0
        assert _breaker_status(breaker)["storage_degraded"] is True
        # Local decisions while Redis is away.
        fail(breaker, 3)
        assert breaker.state is sg.BreakerState.OPEN
        for _ in range(200):
            with pytest.raises(sg.CircuitOpenError):
                breaker.call(ok)
        time.sleep(3 * STALENESS)  # several failed reconnection rounds
        outages = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(outages) == 1, [r.getMessage() for r in caplog.records]

        own_server.start()  # empty: the restart lost every key
        wait_for(lambda: not breaker.storage_degraded, 5.0)
        assert not storage.degraded
        assert registry.get_sample_value(degraded, {"name": "fault"}) == 0.0
        # The first process back seeds Redis with its state...
        assert own_server.client().hget("switchgear:{fault}", "state") == b"open"
        # Not shared(): the store already holds OPEN, so a new breaker reads its local CLOSED
        # only until its first exchange, which its storage's worker may finish before the
        # first read returns (it raced on a busy machine). Reading the state attaches it.
        peer = sg.CircuitBreaker("fault", storage=other, **options)
        assert peer.state in (sg.BreakerState.CLOSED, sg.BreakerState.OPEN)
        wait_for(lambda: peer.state is sg.BreakerState.OPEN)
        # ...and from then on Redis's state wins again.
        peer.reset()
        wait_for(lambda: breaker.state is sg.BreakerState.CLOSED)
    finally:
        storage.close()
        other.close()


def test_slow_redis_does_not_stall_callers(own_server: RedisServer) -> None:
    storage = RedisStorage(
        own_server.client(socket_timeout=TIMEOUT), max_staleness=STALENESS, timeout=TIMEOUT
    )
    try:
        breaker = shared("slow", storage, failure_threshold=1000)
        wait_for(lambda: breaker._machine.linked)  # type: ignore[attr-defined]
        blocker: Any = own_server.client(socket_timeout=5)
        sleeper = threading.Thread(target=blocker.execute_command, args=("DEBUG", "SLEEP", "1.0"))
        sleeper.start()
        worst = 0.0
        went_degraded = False
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            breaker.call(ok)
            with pytest.raises(RuntimeError):
                breaker.call(boom)  # failures want a write: still no wait
            worst = max(worst, time.perf_counter() - t0)
            went_degraded = went_degraded or breaker.storage_degraded
            time.sleep(0.001)
        sleeper.join()
        assert worst < 0.05
        assert went_degraded
        wait_for(lambda: not breaker.storage_degraded, 5.0)
    finally:
        storage.close()


# -- asyncio client --------------------------------------------------------------------------


async def async_wait_for(predicate: Callable[[], bool], timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout:.2f}s"
        await asyncio.sleep(0.005)


def test_asyncio_client_shares_state(server: RedisServer) -> None:
    options: dict[str, Any] = {
        "failure_threshold": 2,
        "success_threshold": 1,
        "open_timeout": 0.3,
    }
    sync_storage = RedisStorage(server.client(), max_staleness=STALENESS, timeout=TIMEOUT)
    peer = shared("async", sync_storage, **options)

    async def boom_async() -> None:
        raise RuntimeError("boom")

    async def ok_async() -> str:
        return "ok"

    async def retry(call: Callable[[], Awaitable[str]]) -> str:
        deadline = time.monotonic() + 2.0
        while True:
            try:
                return await call()
            except sg.CircuitOpenError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)

    async def main() -> None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
        storage = RedisStorage(client, max_staleness=STALENESS, timeout=TIMEOUT)
        breaker = sg.CircuitBreaker("async", storage=storage, **options)
        assert await breaker.call_async(ok_async) == "ok"
        await async_wait_for(lambda: breaker._machine.linked)  # type: ignore[attr-defined]
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await breaker.call_async(boom_async)
            await asyncio.sleep(0.02)
        await async_wait_for(lambda: peer.state is sg.BreakerState.OPEN)
        await async_wait_for(lambda: breaker.state is sg.BreakerState.OPEN)
        await async_wait_for(lambda: breaker.state is sg.BreakerState.HALF_OPEN, 2.0)
        assert await retry(lambda: breaker.call_async(ok_async)) == "ok"
        await async_wait_for(lambda: peer.state is sg.BreakerState.CLOSED)
        peer.force_open()
        await async_wait_for(lambda: breaker.state is sg.BreakerState.FORCED_OPEN)
        await storage.aclose()
        await client.aclose()

    try:
        asyncio.run(main())
    finally:
        sync_storage.close()


def test_asyncio_client_keeps_sharing_in_the_next_event_loop(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncio.run() twice (a CLI, a test suite): the worker restarts in the second loop."""
    sync_storage = RedisStorage(server.client(), max_staleness=STALENESS, timeout=TIMEOUT)
    peer = shared("loops", sync_storage)
    client = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
    storage = RedisStorage(client, max_staleness=STALENESS, timeout=TIMEOUT)
    breaker: Any = sg.CircuitBreaker("loops", storage=storage)

    async def ok_async() -> str:
        return "ok"

    async def first() -> None:
        assert await breaker.call_async(ok_async) == "ok"
        await async_wait_for(lambda: bool(breaker._machine.linked))

    async def second() -> None:
        assert await breaker.call_async(ok_async) == "ok"  # attaches again in this loop
        peer.force_open()
        await async_wait_for(lambda: breaker.state is sg.BreakerState.FORCED_OPEN)
        assert not breaker.storage_degraded
        await storage.aclose()
        await client.aclose()

    try:
        with caplog.at_level(logging.WARNING, logger="switchgear"):
            asyncio.run(first())
            asyncio.run(second())
        assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
    finally:
        sync_storage.close()

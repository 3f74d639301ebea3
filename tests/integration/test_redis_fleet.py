"""Four real processes share breakers through one redis-server.

The processes (``multiprocessing`` spawn) live for the whole module and run commands sent
over pipes, so the interpreter start-up is paid once. Each keeps its own prometheus
registry and reports the transitions it counted; the sum over the fleet must equal the
transitions Redis made (its ``epoch``), and the trips Redis counted (``opens``).
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

from tests.unit.redis.test_redis import RedisServer, start_server

STALENESS = 0.4
TIMEOUT = 0.2
# A process sees a fleet-wide change within max_staleness (plus slack for 2 busy cores).
BOUND = STALENESS + 0.4
PROCESSES = 4


# -- the child process --------------------------------------------------------------------


def _child(conn: Connection, port: int) -> None:  # pragma: no cover - runs in the children
    import redis
    from prometheus_client import CollectorRegistry

    import switchgear as sg
    from switchgear.redis import RedisStorage

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
    storage = RedisStorage(client, max_staleness=STALENESS, timeout=TIMEOUT)
    registry = CollectorRegistry()
    breakers: dict[str, sg.CircuitBreaker] = {}

    def boom() -> None:
        raise RuntimeError("boom")

    def make(name: str, options: dict[str, Any]) -> None:
        breaker = sg.CircuitBreaker(name, storage=storage, **options)
        sg.Metrics(name, registry=registry).attach(breaker)
        assert breaker.state is not None  # reading it attaches to the storage now
        breakers[name] = breaker

    def fail(name: str) -> None:
        try:
            breakers[name].call(boom)
        except RuntimeError:
            pass

    def wait_state(name: str, state: str, timeout: float) -> float | None:
        start = time.monotonic()
        while breakers[name].state.value != state:
            if time.monotonic() - start > timeout:
                return None
            time.sleep(0.002)
        return time.monotonic() - start

    def probe(name: str, seconds: float) -> int:
        """Once HALF_OPEN, try to start trial calls for ``seconds``; keep them running."""
        breaker = breakers[name]
        if wait_state(name, "half_open", 10.0) is None:
            return -1
        admitted = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if breaker.allow_request():
                admitted += 1
            time.sleep(0.003)
        return admitted

    def fail_trial(name: str, timeout: float) -> bool:
        """Take a trial permit as soon as one is granted here, and fail that trial call."""
        breaker = breakers[name]
        deadline = time.monotonic() + timeout
        while not breaker.allow_request():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.003)
        breaker.record_result(False)
        return True

    def wait_interval(name: str, seconds: float, timeout: float) -> float | None:
        """Seconds until this process's breaker lasts ``seconds`` when OPEN (None: never)."""
        start = time.monotonic()
        while breakers[name].current_open_timeout != seconds:
            if time.monotonic() - start > timeout:
                return None
            time.sleep(0.002)
        return time.monotonic() - start

    def settle(name: str, count: int) -> None:
        for _ in range(count):
            breakers[name].record_result(True)

    def hammer(name: str, threads: int, seconds: float, seed: int) -> dict[str, int]:
        """``threads`` threads call through the breaker; failures come in 150 ms waves."""
        breaker = breakers[name]
        counts = {"ok": 0, "failed": 0, "rejected": 0}
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        def work(rng: random.Random) -> None:
            local = {"ok": 0, "failed": 0, "rejected": 0}

            def call() -> None:
                # Wall-clock waves, so all processes fail (and recover) together.
                if int(time.time() / 0.15) % 2 == 0 and rng.random() < 0.9:
                    raise RuntimeError("wave")

            while time.monotonic() < deadline:
                try:
                    breaker.call(call)
                    local["ok"] += 1
                except RuntimeError:
                    local["failed"] += 1
                except sg.CircuitOpenError:
                    local["rejected"] += 1
                time.sleep(0.001)
            with lock:
                for key, value in local.items():
                    counts[key] += value

        pool = [
            threading.Thread(target=work, args=(random.Random(seed * 100 + i),))
            for i in range(threads)
        ]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return counts

    def transitions(name: str) -> dict[str, float]:
        counts: dict[str, float] = {}
        for metric in registry.collect():
            for sample in metric.samples:
                if (
                    sample.name == "switchgear_circuit_transitions_total"
                    and sample.labels["name"] == name
                    and sample.value
                ):
                    key = f"{sample.labels['from_state']}>{sample.labels['to_state']}"
                    counts[key] = counts.get(key, 0.0) + sample.value
        return counts

    def status(name: str) -> dict[str, Any]:
        breaker = breakers[name]
        return {"state": breaker.state.value, "degraded": breaker.storage_degraded}

    commands: dict[str, Callable[..., Any]] = {
        "make": make,
        "fail": fail,
        "wait_state": wait_state,
        "probe": probe,
        "settle": settle,
        "fail_trial": fail_trial,
        "wait_interval": wait_interval,
        "hammer": hammer,
        "transitions": transitions,
        "status": status,
    }
    while True:
        command, args = conn.recv()
        if command == "stop":
            break
        try:
            conn.send(("ok", commands[command](*args)))
        except Exception as exc:
            conn.send(("error", repr(exc)))
    storage.close()


class Fleet:
    """Sends one command to some or all processes and gathers the answers."""

    def __init__(self, port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(PROCESSES):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_child, args=(child, port), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def send(self, index: int, command: str, *args: Any) -> None:
        self.conns[index].send((command, args))

    def recv(self, index: int, timeout: float = 30.0) -> Any:
        conn = self.conns[index]
        assert conn.poll(timeout), f"process {index} did not answer {timeout}s"
        status, value = conn.recv()
        assert status == "ok", f"process {index}: {value}"
        return value

    def one(self, index: int, command: str, *args: Any) -> Any:
        self.send(index, command, *args)
        return self.recv(index)

    def all(self, command: str, *args: Any) -> list[Any]:
        for i in range(PROCESSES):
            self.send(i, command, *args)
        return [self.recv(i) for i in range(PROCESSES)]

    def stop(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("stop", ()))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = start_server(tmp_path_factory)
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def fleet(server: RedisServer) -> Iterator[Fleet]:
    processes = Fleet(server.port)
    yield processes
    processes.stop()


def fleet_counts(fleet: Fleet, name: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for counts in fleet.all("transitions", name):
        for key, value in counts.items():
            total[key] = total.get(key, 0.0) + value
    return total


def test_failures_spread_over_processes_trip_all_within_the_bound(
    fleet: Fleet, server: RedisServer
) -> None:
    fleet.all("make", "spread", {"failure_threshold": 8, "open_timeout": 30.0})
    for _ in range(2):
        for i in range(PROCESSES):
            fleet.one(i, "fail", "spread")
            time.sleep(0.01)  # one failure at a time, so the fleet-wide streak is exact
    elapsed = fleet.all("wait_state", "spread", "open", 5.0)
    assert all(e is not None and e <= BOUND for e in elapsed), elapsed
    assert fleet_counts(fleet, "spread") == {"closed>open": 1}
    assert server.client().hget("switchgear:{spread}", "opens") == b"1"


def test_half_open_admits_at_most_max_calls_fleet_wide_then_closes_everywhere(
    fleet: Fleet, server: RedisServer
) -> None:
    options = {
        "failure_threshold": 4,
        "success_threshold": 2,
        "half_open_max_calls": 3,
        "open_timeout": 1.5,  # longer than the probing: no trial counts as hung
    }
    fleet.all("make", "herd", options)
    for i in range(PROCESSES):
        fleet.one(i, "fail", "herd")
        time.sleep(0.01)
    admitted = fleet.all("probe", "herd", 0.5)
    assert -1 not in admitted, "a process never saw HALF_OPEN"
    assert 2 <= sum(admitted) <= 3, admitted
    for i, count in enumerate(admitted):
        fleet.send(i, "settle", "herd", count)
    for i in range(PROCESSES):
        fleet.recv(i)
    elapsed = fleet.all("wait_state", "herd", "closed", 5.0)
    assert all(e is not None and e <= BOUND for e in elapsed), elapsed
    assert fleet_counts(fleet, "herd") == {
        "closed>open": 1,
        "open>half_open": 1,
        "half_open>closed": 1,
    }


def test_the_fleet_backs_off_together_and_closing_resets_it(
    fleet: Fleet, server: RedisServer
) -> None:
    """The open interval lives in Redis: a trial failed in any process lengthens it for all."""
    base, longest = 0.4, 1.6
    options = {
        "failure_threshold": 1,
        "success_threshold": 1,
        "open_timeout": base,
        "backoff_factor": 2.0,
        "max_open_timeout": longest,
    }
    fleet.all("make", "backoff", options)
    fleet.one(0, "fail", "backoff")
    assert all(e is not None for e in fleet.all("wait_state", "backoff", "open", 5.0))
    for k, expected in enumerate((0.8, 1.6, 1.6), start=1):
        prober = k % PROCESSES  # a different process fails each trial
        started = time.monotonic()
        assert fleet.one(prober, "fail_trial", "backoff", 10.0)
        waited = fleet.all("wait_interval", "backoff", expected, BOUND)
        assert None not in waited, (k, waited)
        state = server.client().hmget("switchgear:{backoff}", "backoffs", "interval")
        assert state == [str(k).encode(), str(round(expected * 1000)).encode()]
        # Nobody probes again before the longer interval is over.
        half_open = fleet.all("wait_state", "backoff", "half_open", expected + 5.0)
        assert None not in half_open
        assert time.monotonic() - started >= expected - 0.05, (k, half_open)
    deadline = time.monotonic() + 10.0
    while fleet.one(3, "probe", "backoff", 0.05) == 0:  # until a permit is granted here
        assert time.monotonic() < deadline, "no trial permit for process 3"
    fleet.one(3, "settle", "backoff", 1)  # the trial succeeds: closed everywhere
    assert None not in fleet.all("wait_state", "backoff", "closed", BOUND)
    assert None not in fleet.all("wait_interval", "backoff", base, BOUND)
    assert server.client().hmget("switchgear:{backoff}", "backoffs", "interval") == [b"0", b"400"]


def test_eight_threads_in_four_processes_count_every_transition_once(
    fleet: Fleet, server: RedisServer
) -> None:
    options = {
        "failure_threshold": 3,
        "success_threshold": 2,
        "half_open_max_calls": 2,
        "open_timeout": 0.1,
    }
    fleet.all("make", "hammer", options)
    for i in range(PROCESSES):
        fleet.send(i, "hammer", "hammer", 8, 2.0, i)
    results = [fleet.recv(i) for i in range(PROCESSES)]
    assert sum(r["failed"] for r in results) > 0
    assert sum(r["rejected"] for r in results) > 0
    assert not any(s["degraded"] for s in fleet.all("status", "hammer"))
    probe = server.client()
    # Quiet now: let the last results and time-based transitions settle, then compare.
    deadline = time.monotonic() + 5.0
    while True:
        epoch = int(probe.hget("switchgear:{hammer}", "epoch") or 0)
        opens = int(probe.hget("switchgear:{hammer}", "opens") or 0)
        counts = fleet_counts(fleet, "hammer")
        if sum(counts.values()) == epoch or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert opens >= 2, "the waves should trip the breaker several times"
    assert sum(counts.values()) == epoch, (counts, epoch)
    assert counts.get("closed>open", 0) + counts.get("half_open>open", 0) == opens

"""Shared breakers on a real 3-primary Redis Cluster started on 127.0.0.1 for these tests.

``redis-server --cluster-enabled yes`` three times, then ``redis-cli --cluster create``. The
cluster serves the slots it still covers when a primary is gone
(``cluster-require-full-coverage no``), which is what lets one node's breakers fall back to
local state while the others keep sharing theirs. Two storages, each with its own cluster
client, stand for two processes.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

import switchgear as sg
from switchgear.redis import RedisStorage
from tests.conftest import require_binary

pytestmark = pytest.mark.timeout(120)

STALENESS = 0.4
PUSHED = 1.0  # a change pushed arrives within this on a busy machine (a few ms when idle)


class Cluster:
    """Three primaries, no replicas; a node can be stopped and started again."""

    def __init__(self, server: str, cli: str, root: Path) -> None:
        self.server, self.cli, self.root = server, cli, root
        self.ports = cluster_ports(3)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start_node(self, port: int) -> None:
        workdir = self.root / str(port)
        workdir.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                *(self.server, "--port", str(port), "--bind", "127.0.0.1"),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no"),
                *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _pings(port), 10.0)

    def stop_node(self, port: int) -> None:
        process = self.processes.pop(port)
        process.kill()
        process.wait(10)

    def create(self) -> None:
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            [
                *(self.cli, "--cluster", "create"),
                *(f"127.0.0.1:{p}" for p in self.ports),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()

    def wait_ok(self) -> None:
        def ok() -> bool:
            for port in self.processes:
                info = redis.Redis(port=port, socket_timeout=1).cluster("info")
                if info.get("cluster_state") != "ok":
                    return False
            return True

        wait_until(ok, 20.0)

    def client(self) -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports],  # type: ignore[no-untyped-call]
            socket_timeout=0.25,
            socket_connect_timeout=0.25,
            retry=Retry(NoBackoff(), 0),
        )

    def stop(self) -> None:
        for port in list(self.processes):
            self.stop_node(port)


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free and valid too."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < count:
        port = rng.randrange(20000, 40000)
        if port in ports:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        ports.append(port)
    return ports


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout:.1f}s")
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(
        require_binary("redis-server"), require_binary("redis-cli"), tmp_path_factory.mktemp("rc")
    )
    try:
        c.create()
        yield c
    finally:
        c.stop()


@pytest.fixture
def hosts(cluster: Cluster) -> Iterator[list[RedisStorage]]:
    made = [
        RedisStorage(cluster.client(), max_staleness=STALENESS, timeout=0.2, key_prefix=prefix)
        for prefix in ("cl:", "cl:")
    ]
    yield made
    for storage in made:
        storage.close()


def spread(storage: RedisStorage, count: int) -> dict[int, str]:
    """One breaker name per primary, by the port that owns its keys."""
    by_port: dict[int, str] = {}
    i = 0
    while len(by_port) < count:
        name = f"cluster-{i}"
        port = storage.client.get_node_from_key(f"cl:{{{name}}}").port
        by_port.setdefault(port, name)
        i += 1
    return by_port


def linked(breaker: sg.CircuitBreaker) -> bool:
    """Whether the breaker decides with the store (its first exchange came back)."""
    machine: Any = breaker._machine
    return bool(machine.linked)


def fleets(hosts: list[RedisStorage], names: list[str], **options: Any) -> list[dict[str, Any]]:
    made = [{n: sg.CircuitBreaker(n, storage=s, **options) for n in names} for s in hosts]
    for fleet in made:
        for breaker in fleet.values():
            assert breaker.state is sg.BreakerState.CLOSED  # attaches it
    wait_until(lambda: all(s._ledger.push_up for s in hosts), 5.0)
    wait_until(lambda: all(linked(b) for f in made for b in f.values()), 5.0)
    return made


def test_breakers_on_every_node_trip_probe_and_close_as_one(hosts: list[RedisStorage]) -> None:
    names = list(spread(hosts[0], 3).values())
    options = {"failure_threshold": 1, "success_threshold": 1, "open_timeout": 0.5}
    a, b = fleets(hosts, names, **options)
    for name in names:
        a[name].record_result(False)
    wait_until(lambda: all(b[n].state is sg.BreakerState.OPEN for n in names), PUSHED)
    wait_until(lambda: all(b[n].state is sg.BreakerState.HALF_OPEN for n in names), 2.0)
    for name in names:  # one probe each, from either process, closes it for both
        wait_until(lambda n=name: b[n].allow_request(), 2.0)  # type: ignore[misc]
        b[name].record_result(True)
    wait_until(lambda: all(a[n].state is sg.BreakerState.CLOSED for n in names), PUSHED)


def test_a_lost_primary_degrades_only_its_breakers_until_it_returns(
    cluster: Cluster, hosts: list[RedisStorage]
) -> None:
    by_port = spread(hosts[0], 3)
    names = list(by_port.values())
    a, b = fleets(hosts, names, failure_threshold=1, open_timeout=60.0)
    victim_port = next(p for p in by_port if p != cluster.ports[0])  # keep the first node
    victim, others = by_port[victim_port], [n for p, n in by_port.items() if p != victim_port]
    cluster.stop_node(victim_port)
    try:
        wait_until(lambda: a[victim].storage_degraded and b[victim].storage_degraded, 3.0)
        assert not any(a[n].storage_degraded or b[n].storage_degraded for n in others)
        # The others still share state: a trip still reaches the other process.
        a[others[0]].record_result(False)
        wait_until(lambda: b[others[0]].state is sg.BreakerState.OPEN, PUSHED + 1.0)
        # The lost node's breaker decides locally meanwhile.
        b[victim].record_result(False)
        assert b[victim].state is sg.BreakerState.OPEN
    finally:
        cluster.start_node(victim_port)
    cluster.wait_ok()
    # Back: both processes share the victim's state again. The restarted node lost it; the
    # first process to reach it seeds it (its local state), the other adopts that.
    wait_until(lambda: not a[victim].storage_degraded and not b[victim].storage_degraded, 10.0)
    wait_until(lambda: a[victim].state is b[victim].state, PUSHED + 1.0)
    a[victim].force_open()  # and a command from either side reaches the other again
    wait_until(lambda: b[victim].state is sg.BreakerState.FORCED_OPEN, PUSHED + 1.0)
    b[victim].reset()
    wait_until(lambda: a[victim].state is sg.BreakerState.CLOSED, PUSHED + 1.0)


def test_asyncio_cluster_client(cluster: Cluster) -> None:
    async def main() -> None:
        def client() -> redis.asyncio.cluster.RedisCluster:
            return redis.asyncio.cluster.RedisCluster(
                startup_nodes=[
                    redis.asyncio.cluster.ClusterNode("127.0.0.1", p) for p in cluster.ports
                ],
                socket_timeout=0.25,
            )

        hosts = [RedisStorage(client(), max_staleness=STALENESS, key_prefix="acl:") for _ in "ab"]
        a, b = (sg.CircuitBreaker("acl-trip", storage=s, failure_threshold=1) for s in hosts)
        assert a.state is b.state is sg.BreakerState.CLOSED
        deadline = time.monotonic() + 5.0
        while not (linked(a) and linked(b)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        a.record_result(False)
        while b.state is not sg.BreakerState.OPEN:
            assert time.monotonic() < deadline + 2 * STALENESS
            await asyncio.sleep(0.005)
        for s in hosts:
            await s.aclose()

    asyncio.run(main())

"""Two processes' shared breakers, driven by hypothesis against what sharing must guarantee.

Each simulated process (one ``RedisStorage`` each, on a real ``redis-server``) fails,
succeeds and flushes in any order. Whatever the interleaving:

* a process whose own failures in a row reach the threshold rejects its next call at once
  (sharing never protects less than a breaker alone);
* once both have written everything and refreshed, they agree with Redis;
* the transitions the two count add up to the transitions Redis made, and its trips.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear.redis import RedisStorage
from tests.unit.redis.test_redis import RedisServer, start_server, transitions

THRESHOLD = 3
STALENESS = 0.1
_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = start_server(tmp_path_factory)
    yield srv
    srv.kill()


def boom() -> None:
    raise RuntimeError("down")


def test_two_processes_share_a_breaker_under_any_interleaving(server: RedisServer) -> None:
    class TwoProcesses(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.name = f"stateful-{next(_names)}"
            self.storages = [
                RedisStorage(server.client(), max_staleness=STALENESS, timeout=0.5)
                for _ in range(2)
            ]
            self.registries = [CollectorRegistry(), CollectorRegistry()]
            self.breakers = []
            for storage, registry in zip(self.storages, self.registries, strict=True):
                breaker = sg.CircuitBreaker(
                    self.name, failure_threshold=THRESHOLD, open_timeout=60.0, storage=storage
                )
                sg.Metrics(self.name, registry=registry).attach(breaker)
                assert breaker.state is sg.BreakerState.CLOSED  # attaches
                self.breakers.append(breaker)
            self.own_run = [0, 0]  # each process's own failures in a row

        @rule(who=st.integers(0, 1), failing=st.booleans())
        def call(self, who: int, failing: bool) -> None:
            breaker = self.breakers[who]
            must_reject = self.own_run[who] >= THRESHOLD
            try:
                breaker.call(boom if failing else _ok)
            except sg.CircuitOpenError:
                return
            except RuntimeError:
                self.own_run[who] += 1
            else:
                self.own_run[who] = 0
            assert not must_reject, "a process ran a call after its own threshold of failures"

        @rule(who=st.integers(0, 1))
        def flush(self, who: int) -> None:
            assert self.storages[who].flush(timeout=2.0)

        def teardown(self) -> None:
            try:
                for storage in self.storages:
                    assert storage.flush(timeout=2.0)
                key = f"switchgear:{{{self.name}}}"
                probe = server.client()
                fleet = probe.hget(key, "state")
                if fleet is not None:
                    # Both adopt the fleet's state within a refresh or two.
                    deadline = time.monotonic() + 5.0
                    while any(b.state.value.encode() != fleet for b in self.breakers):
                        assert time.monotonic() < deadline, (fleet, self.breakers)
                        time.sleep(0.01)
                    opens = int(probe.hget(key, "opens") or 0)
                    epoch = int(probe.hget(key, "epoch") or 0)
                    counted: dict[Any, float] = {}
                    for registry in self.registries:
                        for move, count in transitions(registry, self.name).items():
                            counted[move] = counted.get(move, 0.0) + count
                    assert sum(counted.values()) == epoch, (counted, epoch)
                    assert counted.get(("closed", "open"), 0.0) == opens, (counted, opens)
            finally:
                for storage in self.storages:
                    storage.close()

    TwoProcesses.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    TwoProcesses.TestCase().runTest()


def _ok() -> str:
    return "ok"

"""Transitions pushed, not polled: announcements over Redis pub/sub, against a real server.

The staleness bound here is long (``max_staleness`` 10 s: a poll would take 5 s), so a change
that arrives in well under a second arrived by push. The idle-load test counts what Redis
executed (``INFO commandstats``). The rules of :class:`Listening` are tested on their own
with a plain ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

import switchgear as sg
from switchgear._breaker.storage import Ledger
from switchgear._redis.listener import Listening
from switchgear.redis import RedisStorage
from tests.conftest import require_binary
from tests.unit.redis.test_redis import RedisServer, fail, shared, wait_for

LONG = 10.0  # max_staleness: a refresh by polling would take max_staleness / 2 = 5 s
PUSHED = 1.0  # a change pushed arrives within this, even on a busy machine (3 ms idle)


def pushing(*storage: RedisStorage) -> None:
    wait_for(lambda: all(s._ledger.push_up for s in storage), 5.0)


def commands(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}", {})
    return int(entry.get("calls", 0)) if isinstance(entry, dict) else 0


def test_a_trip_and_a_reset_reach_every_process_by_push(
    storages: Callable[..., RedisStorage],
) -> None:
    hosts = [storages(max_staleness=LONG) for _ in range(3)]
    fleet = [shared("push-trip", s, failure_threshold=1, open_timeout=60.0) for s in hosts]
    pushing(*hosts)
    wait_for(lambda: all(b._machine.linked for b in fleet), 5.0)  # type: ignore[attr-defined]
    fail(fleet[0])
    took = wait_for(lambda: all(b.state is sg.BreakerState.OPEN for b in fleet), PUSHED)
    assert took < PUSHED
    fleet[2].reset()  # a manual command is announced too
    wait_for(lambda: all(b.state is sg.BreakerState.CLOSED for b in fleet), PUSHED)


def test_idle_breakers_cost_one_ping_per_storage(tmp_path: Path) -> None:
    # A password keeps out any client of another test that outlived it and found this
    # server on the port its own server had: only this test's commands are counted.
    own_server = RedisServer(require_binary("redis-server"), tmp_path, "--requirepass", "idle")
    own_server.start()
    probe = own_server.client()
    # A staleness bound a busy 2-core machine keeps (a ping late by more than max_staleness +
    # timeout would make the breakers go local and ask again, which is the point elsewhere).
    hosts = [RedisStorage(own_server.client(), max_staleness=1.0, timeout=0.3) for _ in range(2)]
    polled = RedisStorage(own_server.client(), max_staleness=0.2, timeout=0.1, push=False)
    try:
        idle = [shared(f"idle-{i}", s) for s in hosts for i in range(40)]
        pushing(*hosts)
        wait_for(lambda: all(b._machine.due_at > time.monotonic() + 60 for b in idle), 5.0)  # type: ignore[attr-defined]

        def quiet() -> bool:  # the last rounds, taken before the check above, have landed
            before = commands(probe, "evalsha")
            time.sleep(0.3)
            return commands(probe, "evalsha") == before

        wait_for(quiet, 10.0)
        probe.config_resetstat()
        time.sleep(3.0)  # a rate: real seconds of idleness
        exchanges, pings = commands(probe, "evalsha"), commands(probe, "ping")
        # 80 idle breakers: no exchange at all, one ping per storage per max_staleness / 2.
        assert exchanges == 0
        assert 4 <= pings <= 2 * (3.0 / 0.5) + 4

        without = [shared(f"polled-{i}", polled) for i in range(40)]
        wait_for(lambda: all(b._machine.linked for b in without), 5.0)  # type: ignore[attr-defined]
        probe.config_resetstat()
        time.sleep(1.0)
        # Without push, each breaker refreshes itself every max_staleness / 2.
        assert commands(probe, "evalsha") >= 40 * (1.0 / 0.1) / 2
    finally:
        for s in [*hosts, polled]:
            s.close()
        own_server.kill()


def test_a_change_missed_while_the_subscription_was_cut_is_caught_up(
    storages: Callable[..., RedisStorage], server: RedisServer
) -> None:
    hosts = [storages(max_staleness=LONG) for _ in range(2)]
    a, b = (shared("push-cut", s, failure_threshold=1, open_timeout=60.0) for s in hosts)
    pushing(*hosts)
    wait_for(lambda: a._machine.linked and b._machine.linked, 5.0)  # type: ignore[attr-defined]
    admin = server.client()
    admin.client_kill_filter(_type="pubsub")  # every subscription cut, announcements lost
    fail(a)  # announced while nobody listens
    # The listener resubscribes; a fresh subscription refreshes every breaker once.
    wait_for(lambda: b.state is sg.BreakerState.OPEN, PUSHED + 1.0)


def test_without_push_a_change_arrives_within_the_staleness_bound(
    storages: Callable[..., RedisStorage],
) -> None:
    hosts = [storages(max_staleness=0.4, push=False) for _ in range(2)]
    a, b = (shared("push-off", s, failure_threshold=1, open_timeout=60.0) for s in hosts)
    wait_for(lambda: a._machine.linked and b._machine.linked, 5.0)  # type: ignore[attr-defined]
    assert not any(s._ledger.push_up for s in hosts)
    fail(a)
    wait_for(lambda: b.state is sg.BreakerState.OPEN, 0.4 + 0.1 + 0.5)


def test_asyncio_clients_hear_announcements_too(server: RedisServer) -> None:
    async def main() -> float:
        hosts = [
            RedisStorage(redis.asyncio.Redis(port=server.port), max_staleness=LONG, timeout=0.2)
            for _ in range(2)
        ]
        a, b = (sg.CircuitBreaker("push-async", storage=s, failure_threshold=1) for s in hosts)
        assert a.state is b.state is sg.BreakerState.CLOSED  # attach inside the loop
        deadline = time.monotonic() + 5.0
        while not (all(s._ledger.push_up for s in hosts) and a._machine.linked):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        with pytest.raises(ConnectionError):
            await a.call_async(_down)
        start = time.monotonic()
        while b.state is not sg.BreakerState.OPEN:
            assert time.monotonic() - start < PUSHED
            await asyncio.sleep(0.002)
        took = time.monotonic() - start
        for s in hosts:
            await s.aclose()
        return took

    assert asyncio.run(main()) < PUSHED


async def _down() -> None:
    raise ConnectionError("down")


def test_bad_push_argument_is_named() -> None:
    with pytest.raises(TypeError, match="push must be a bool"):
        RedisStorage(redis.Redis(port=1, socket_timeout=0.1), push="yes")  # type: ignore[arg-type]


# -- the listener's rules, without a server ----------------------------------------------------


class Peer:
    """A breaker as the ledger sees it, recording what it was told."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.told: list[int | None] = []

    def storage_invalidate(self, epoch: int | None) -> None:
        self.told.append(epoch)


def listening_with(*names: str) -> tuple[Listening, Ledger, list[Peer]]:
    ledger = Ledger(object(), max_staleness=1.0, timeout=0.25, key_ttl=100.0)  # type: ignore[arg-type]
    peers = [Peer(n) for n in names]
    for p in peers:
        ledger.add(p)  # type: ignore[arg-type]
    return Listening(ledger, "shop:"), ledger, peers


def test_messages_mark_the_named_breakers_and_subscriptions_mark_all() -> None:
    listening, ledger, (pay, search) = listening_with("payments", "search")
    assert listening.message({"type": "subscribe", "data": 1}) is True
    assert ledger.push_up
    assert pay.told == search.told == [None]  # everything may have changed meanwhile
    message: dict[str, Any] = {"type": "message", "data": b"7 shop:{payments}"}
    assert listening.message(message) is True
    assert (pay.told, search.told) == ([None, 7], [None])
    # Another prefix, another breaker, or noise: nothing to do.
    for data in (b"7 other:{payments}", b"8 shop:{nobody}", b"x shop:{payments}", b"junk"):
        assert listening.message({"type": "message", "data": data}) is False
    assert pay.told == [None, 7]
    assert listening.lost() is True  # push down: everyone refreshes and polls again
    assert not ledger.push_up
    assert pay.told == [None, 7, None]
    assert listening.lost() is False  # already down: nothing new


def test_pings_are_paced_and_an_unanswered_one_means_lost() -> None:
    listening, ledger, _ = listening_with("payments")
    assert listening.ping_due(0.0)
    listening.pinged(0.0)
    assert not listening.ping_due(0.1)  # one at a time
    assert listening.wait(0.1) == pytest.approx(0.15)  # until the answer is overdue
    assert not listening.overdue(0.25)
    assert listening.overdue(0.2501)
    ledger.last_ok = -100.0
    listening.message({"type": "pong", "data": b""})
    assert ledger.last_ok > 0  # the store answered
    assert not listening.overdue(10.0)
    assert not listening.ping_due(0.49)
    assert listening.ping_due(0.5)  # every max_staleness / 2


def test_the_process_that_did_not_trip_hears_an_adopted_event(
    storages: Callable[..., RedisStorage],
) -> None:
    hosts = [storages(max_staleness=LONG) for _ in range(2)]
    a, b = (shared("push-adopted", s, failure_threshold=1, open_timeout=60.0) for s in hosts)
    heard: list[sg.TransitionEvent] = []
    b.add_listener(heard.append)
    pushing(*hosts)
    wait_for(lambda: a._machine.linked and b._machine.linked, 5.0)  # type: ignore[attr-defined]
    fail(a)
    wait_for(lambda: b.state is sg.BreakerState.OPEN, PUSHED)
    assert a.transitions()[-1].reason == "consecutive_failures"
    (event,) = heard
    assert (event.old, event.new, event.reason) == (
        sg.BreakerState.CLOSED,
        sg.BreakerState.OPEN,
        "adopted",
    )

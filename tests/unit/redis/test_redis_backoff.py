"""The open backoff's jitter, decided once in Redis for the whole fleet."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import switchgear as sg
from switchgear.redis import RedisStorage
from tests.unit.redis.test_redis import RedisServer, fail, shared, wait_for


def test_the_store_draws_the_jittered_interval_once_and_every_process_adopts_it(
    storages: Callable[..., RedisStorage], server: RedisServer
) -> None:
    options = {
        "failure_threshold": 1,
        "open_timeout": 10.0,  # long enough that a loaded machine never sees the period end
        "backoff_factor": 2.0,
        "backoff_jitter": 0.5,
    }
    a = shared("jitter", storages(), **options)
    b = shared("jitter", storages(), **options)
    wait_for(lambda: a._machine.linked and b._machine.linked)  # type: ignore[attr-defined]
    tripped = time.monotonic()
    fail(a)
    client = server.client()
    # The trip reaches the store after fail() returns; the hash holds an interval (the
    # undrawn open_timeout) before it, so wait for the trip itself.
    wait_for(lambda: client.hget("switchgear:{jitter}", "state") == b"open")
    stored = int(client.hget("switchgear:{jitter}", "interval") or 0) / 1000.0
    assert 5.0 <= stored <= 10.0  # open_timeout, less up to half of it
    # What is asserted is that both adopt the one value; how soon is the staleness tests' job.
    wait_for(lambda: a.current_open_timeout == stored == b.current_open_timeout, timeout=5.0)
    with pytest.raises(sg.CircuitOpenError) as info:
        b.call(lambda: None)
    # The time left of the stored interval (not of open_timeout): at most the interval, less
    # at most what has passed since the trip.
    assert stored - (time.monotonic() - tripped) - 0.01 <= info.value.retry_after <= stored

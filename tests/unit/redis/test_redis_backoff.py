"""The open backoff's jitter, decided once in Redis for the whole fleet."""

from __future__ import annotations

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
        "open_timeout": 2.0,
        "backoff_factor": 2.0,
        "backoff_jitter": 0.5,
    }
    a = shared("jitter", storages(), **options)
    b = shared("jitter", storages(), **options)
    wait_for(lambda: a._machine.linked and b._machine.linked)  # type: ignore[attr-defined]
    fail(a)
    client = server.client()
    wait_for(lambda: client.hget("switchgear:{jitter}", "interval") is not None)
    stored = int(client.hget("switchgear:{jitter}", "interval") or 0) / 1000.0
    assert 1.0 < stored <= 2.0  # open_timeout, less up to half of it
    wait_for(lambda: a.current_open_timeout == stored == b.current_open_timeout)
    with pytest.raises(sg.CircuitOpenError) as info:
        b.call(lambda: None)
    assert stored - 0.5 < info.value.retry_after <= stored

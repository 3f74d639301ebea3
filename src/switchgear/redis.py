"""Shared circuit-breaker state in Redis: breakers with one name trip, probe and close as one.

Example::

    import redis
    import switchgear as sg
    from switchgear.redis import RedisStorage

    storage = RedisStorage(redis.Redis(host="redis", socket_timeout=0.25), key_prefix="shop:")
    breaker = sg.CircuitBreaker("payments", failure_threshold=5, storage=storage)

See ``docs/redis.md`` for the key layout, the staleness bound and degraded mode.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from . import _validate as v
from ._breaker.storage import Driver as _Driver
from ._breaker.storage import Ledger as _Ledger
from ._breaker.storage import Storage as _Storage
from ._redis.task_driver import TaskDriver as _TaskDriver
from ._redis.thread_driver import ThreadDriver as _ThreadDriver

__all__ = ["RedisStorage"]

_CLIENTS = (
    redis.Redis,
    redis.asyncio.Redis,
    redis.cluster.RedisCluster,
    redis.asyncio.cluster.RedisCluster,
)


def _connection_kwargs(client: Any) -> dict[str, Any]:
    """The options the client makes its connections with (a cluster's: its nodes')."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        pool = getattr(client, "nodes_manager", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    return kwargs if isinstance(kwargs, dict) else {}


logger = logging.getLogger("switchgear")


class RedisStorage(_Storage):
    """Keeps the state of breakers in Redis so that many processes and hosts share it.

    ``client`` is a redis-py client, ``redis.Redis`` or ``redis.asyncio.Redis``; pass the
    storage to breakers as ``CircuitBreaker(name, storage=storage)`` (also through
    ``@protected(breaker=...)`` and the middleware's ``breaker_options``). One storage
    serves any number of breakers; a breaker's Redis keys are ``<key_prefix>{<name>}...``.

    * ``max_staleness`` (seconds, default 1.0): the longest a process may act on state it
      read from Redis. Transitions are pushed to every process as they happen (see
      ``push``); without the push, every breaker re-reads its state every
      ``max_staleness / 2``.
      Outcomes that matter (failures, a success ending a failure streak, trial results,
      manual commands) are written at once by a background worker, never on the caller's
      thread; successes for rate rules are batched for at most ``max_staleness / 2``.
    * ``timeout`` (seconds, default 0.25): the longest one exchange with Redis may take.
      After ``max_staleness + timeout`` without an answer, breakers decide on local state
      (degraded mode: ``storage.degraded``, ``breaker.storage_degraded``, one log line) and
      adopt Redis's state again as soon as it answers. Calls never wait for Redis.
    * ``key_ttl`` (seconds, default 86400): keys expire this long after their last write.
    * ``push`` (default True): listen for the transitions other processes make (Redis
      pub/sub, one connection per storage) and refresh a breaker the moment it changes. An
      idle breaker then costs Redis nothing: one ``PING`` per storage every
      ``max_staleness / 2`` replaces the per-breaker refresh, which comes back only while the
      subscription is down. ``push=False`` always refreshes every breaker every
      ``max_staleness / 2`` (for a Redis that refuses pub/sub).

    With a synchronous client the exchanges run on a daemon thread (give the client a
    ``socket_timeout`` so that thread cannot hang on a dead connection); with an asyncio
    client they run in a task on the event loop the breakers are first used from.

    Example::

        storage = RedisStorage(redis.asyncio.Redis(), max_staleness=0.5)
        breaker = sg.CircuitBreaker("search", storage=storage)
        result = await breaker.call_async(search, query)
    """

    client: Any
    key_prefix: str

    def __init__(
        self,
        client: redis.Redis
        | redis.asyncio.Redis
        | redis.cluster.RedisCluster
        | redis.asyncio.cluster.RedisCluster,
        *,
        key_prefix: str = "switchgear:",
        max_staleness: v.Seconds = 1.0,
        timeout: v.Seconds = 0.25,
        key_ttl: v.Seconds = 86400.0,
        push: bool = True,
    ) -> None:
        if not isinstance(client, _CLIENTS):
            raise TypeError(
                "client must be a redis.Redis or redis.asyncio.Redis client (or their "
                f"RedisCluster), not {type(client).__name__}"
            )
        if not isinstance(key_prefix, str):
            raise TypeError(f"key_prefix must be a str, not {type(key_prefix).__name__}")
        if not key_prefix:
            raise ValueError("key_prefix must be a non-empty string, got ''")
        if "{" in key_prefix or "}" in key_prefix:
            raise ValueError(
                f"key_prefix must not contain braces (the breaker name is the key's hash "
                f"tag), got {key_prefix!r}"
            )
        staleness = v.seconds("max_staleness", max_staleness)
        if staleness > 60.0:
            raise ValueError(f"max_staleness must be <= 60 seconds, got {staleness!r}")
        op_timeout = v.seconds("timeout", timeout)
        if op_timeout > 30.0:
            raise ValueError(f"timeout must be <= 30 seconds, got {op_timeout!r}")
        v.boolean("push", push)
        ttl = v.seconds("key_ttl", key_ttl)
        if ttl < 1.0:
            raise ValueError(f"key_ttl must be >= 1 second, got {ttl!r}")
        self.client = client
        self.key_prefix = key_prefix
        driver: Callable[[_Ledger], _Driver]
        if isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            driver = functools.partial(_TaskDriver, client, key_prefix, push=push)
        else:
            driver = functools.partial(_ThreadDriver, client, key_prefix, push=push)
        super().__init__(driver, max_staleness=staleness, timeout=op_timeout, key_ttl=ttl)
        sync = isinstance(client, (redis.Redis, redis.cluster.RedisCluster))
        if sync and _connection_kwargs(client).get("socket_timeout") is None:
            logger.warning(
                "switchgear: the Redis client of %r has no socket_timeout; its worker "
                "thread could hang on a dead connection (calls are never blocked, but "
                "state would not resynchronize until the OS gives up)",
                self,
            )

    def __repr__(self) -> str:
        kwargs = _connection_kwargs(self.client)
        where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        default_node = getattr(self.client, "get_default_node", None)
        if callable(default_node):  # a cluster: name the node it was started from
            where = f"cluster {getattr(default_node(), 'name', '?')}"
        return f"RedisStorage({where}, key_prefix={self.key_prefix!r})"

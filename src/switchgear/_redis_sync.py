"""The worker thread that keeps breakers in sync through a synchronous ``redis.Redis``.

One daemon thread per storage sleeps until a breaker has something to write (or the next
refresh is due), then sends every pending exchange in one pipeline: one round trip per
round, however many breakers share the client. The thread restarts in a forked child
(pre-fork servers), where the parent's thread does not exist.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any

from redis.exceptions import NoScriptError

from ._redis_scripts import EXCHANGE, EXCHANGE_SHA, exchange_args, keys_for, parse_reply
from ._storage import Outbox, Peer, Reply
from .redis import RedisStorage

__all__ = ["SyncRedisStorage"]

logger = logging.getLogger("switchgear")

_live: weakref.WeakSet[SyncRedisStorage] = weakref.WeakSet()


class SyncRedisStorage(RedisStorage):
    """Storage driver for ``redis.Redis``: the I/O runs on a daemon thread."""

    def __init__(self, client: Any, **options: Any) -> None:
        super().__init__(client, **options)
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        _live.add(self)

    def wake(self) -> None:
        self._event.set()

    def close(self) -> None:
        self._closed = True
        self._event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + 1.0)

    def _start(self) -> bool:
        if self._closed:
            return False
        thread = self._thread
        if thread is not None and thread.is_alive():
            return True
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="switchgear-redis", daemon=True
                )
                self._thread.start()
        return True

    def _after_fork(self) -> None:
        self._thread = None
        self._start_lock = threading.Lock()
        self._event = threading.Event()
        if self._live_peers() and not self._closed:
            self._start()

    def _run(self) -> None:
        event = self._event
        while not self._closed:
            work = self._plan(time.monotonic())
            if work:
                try:
                    replies = self._exchange(work)
                except Exception as exc:  # any failure means "decide locally", never a crash
                    self._failed(work, exc)
                else:
                    self._delivered(work, replies)
            event.wait(self._next_wait(time.monotonic()))
            event.clear()

    def _exchange(self, work: list[tuple[Peer, Outbox]]) -> list[Reply]:
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for peer, outbox in work:
                keys = keys_for(self.key_prefix, peer.name)
                pipe.evalsha(
                    EXCHANGE_SHA, 3, *keys, *exchange_args(peer.rules, outbox, self.key_ttl)
                )
            raw = pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in raw):
                # The script cache is empty (new or restarted server): every call of this
                # round failed before running, so loading and resending is safe.
                self.client.script_load(EXCHANGE)
                continue
            for r in raw:
                if isinstance(r, Exception):
                    raise r
            return [parse_reply(r) for r in raw]
        raise AssertionError("unreachable")


def _restart_after_fork() -> None:
    for storage in list(_live):
        storage._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_after_fork)

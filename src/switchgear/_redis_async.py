"""The worker task that keeps breakers in sync through an asyncio ``redis.asyncio.Redis``.

An asyncio client belongs to one event loop, so the worker is a task on the loop the
breakers are used from, started by the first call made inside a running loop. Each round is
bounded by ``timeout`` (``asyncio.wait_for``), so a slow server delays only this task; the
breakers' callers never await it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from redis.exceptions import NoScriptError

from ._redis_scripts import EXCHANGE, EXCHANGE_SHA, exchange_args, keys_for, parse_reply
from ._storage import Outbox, Peer, Reply
from .redis import RedisStorage

__all__ = ["AsyncRedisStorage"]


class AsyncRedisStorage(RedisStorage):
    """Storage driver for ``redis.asyncio.Redis``: the I/O runs in a task on the caller's loop."""

    def __init__(self, client: Any, **options: Any) -> None:
        super().__init__(client, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def _start(self) -> bool:
        if self._closed:
            return False
        task = self._task
        if task is not None and not task.done():
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False  # not in a loop: breakers use local state until a call is made in one
        if self._loop is not None and self._loop is not loop:
            # A new loop (the last asyncio.run() returned): the client's connections belong
            # to the closed one, so the pool starts afresh instead of failing once on them.
            with contextlib.suppress(Exception):
                self.client.connection_pool.reset()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._event = asyncio.Event()
        self._task = loop.create_task(self._run(), name="switchgear-redis")
        return True

    def wake(self) -> None:
        loop, event, task = self._loop, self._event, self._task
        if loop is None or event is None or task is None or task.done():
            return
        if threading.get_ident() == self._loop_thread:
            event.set()
        else:
            # A closed loop refuses; the next call in a running loop restarts the worker.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        self._closed = True
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(task.cancel)

    async def aclose(self) -> None:
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            await self._rounds()
        finally:
            if not self._closed:
                # The loop is ending (asyncio.run() returned): the breakers attach again
                # from the next running loop, which starts a worker there.
                for peer in self._live_peers():
                    peer._storage_stopped()

    async def _rounds(self) -> None:
        event = self._event
        assert event is not None
        while not self._closed:
            work = self._plan(time.monotonic())
            if work:
                try:
                    replies = await asyncio.wait_for(self._exchange(work), self.timeout)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any failure means "decide locally", never a crash
                    self._failed(work, exc)
                else:
                    self._delivered(work, replies)
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(event.wait(), self._next_wait(time.monotonic()))
            event.clear()

    async def _exchange(self, work: list[tuple[Peer, Outbox]]) -> list[Reply]:
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for peer, outbox in work:
                keys = keys_for(self.key_prefix, peer.name)
                pipe.evalsha(
                    EXCHANGE_SHA, 3, *keys, *exchange_args(peer.rules, outbox, self.key_ttl)
                )
            raw = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in raw):
                await self.client.script_load(EXCHANGE)
                continue
            for r in raw:
                if isinstance(r, Exception):
                    raise r
            return [parse_reply(r) for r in raw]
        raise AssertionError("unreachable")

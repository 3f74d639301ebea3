"""The worker task that keeps breakers in sync through an asyncio ``redis.asyncio.Redis``.

An asyncio client belongs to one event loop, so the worker is a task on the loop the
breakers are used from, started by the first call made inside a running loop. Each round is
bounded by ``timeout`` (``asyncio.wait_for``), so a slow server delays only this task; the
breakers' callers never await it.

``await aflush()`` asks the task for a round that sends everything pending. Outside the
worker's loop (another thread, or after the loop ended, as at interpreter exit) ``flush()``
runs one round in a private event loop on a helper thread, bounded by the timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from typing import Any

from .._breaker.storage import Ledger, Outbox, Peer, Reply
from .cluster import is_cluster, members, quiet, round_groups
from .codec import EXCHANGE, queue, replies
from .listener import Listening, listen_task

__all__ = ["TaskDriver"]


class TaskDriver:
    """Storage driver for ``redis.asyncio.Redis``: the I/O runs in a task on the caller's loop."""

    def __init__(self, client: Any, key_prefix: str, ledger: Ledger, push: bool = True) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.ledger = ledger
        self.push = push
        self.cluster = is_cluster(client)
        self._heard: dict[str, float] = {}  # cluster node -> when it last answered
        self._listener: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._flush_waiters: list[asyncio.Future[bool]] = []
        self._closed = False

    def start(self) -> bool:
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
        self._flush_waiters = []
        self._task = loop.create_task(self._run(), name="switchgear-redis")
        if self.push:
            listening = Listening(self.ledger, self.key_prefix)
            self._listener = loop.create_task(
                listen_task(self.client, listening, self.wake, self._stopped),
                name="switchgear-redis-listener",
            )
        return True

    def _stopped(self) -> bool:
        return self._closed

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

    async def aflush(self, limit: float) -> bool:
        loop = asyncio.get_running_loop()
        task, event = self._task, self._event
        try:
            if task is not None and not task.done() and event is not None and self._loop is loop:
                waiter: asyncio.Future[bool] = loop.create_future()
                self._flush_waiters.append(waiter)
                event.set()
                return await asyncio.wait_for(waiter, limit)
            if self._loop is not None and self._loop is not loop:
                with contextlib.suppress(Exception):
                    self.client.connection_pool.reset()
                self._loop = loop
            return await asyncio.wait_for(self._round(force=True), limit)
        except (asyncio.TimeoutError, TimeoutError):
            return False

    def flush(self, limit: float) -> bool:
        loop = self._loop
        if loop is not None and loop.is_running() and not loop.is_closed():
            if threading.get_ident() == self._loop_thread:
                raise RuntimeError(
                    "flush() would block the event loop that sends the writes; "
                    "use await storage.aflush()"
                )
            future = asyncio.run_coroutine_threadsafe(self.aflush(limit), loop)
            try:
                return future.result(limit + 0.5)
            except concurrent.futures.TimeoutError:
                return False
        # The worker's loop has ended: one round in a private loop, on a helper thread so that
        # it cannot clash with a loop running on the caller's thread.
        result: list[bool] = []
        helper = threading.Thread(
            target=lambda: result.append(asyncio.run(self.aflush(limit))),
            name="switchgear-redis-flush",
            daemon=True,
        )
        helper.start()
        helper.join(limit + 0.5)
        return bool(result and result[0])

    def close(self) -> None:
        if not self._closed and not (
            self._loop is not None
            and self._loop.is_running()
            and threading.get_ident() == self._loop_thread
        ):
            self.flush(self.ledger.timeout)
        self._stop()

    async def aclose(self) -> None:
        if not self._closed:
            await self.aflush(self.ledger.timeout)
        self._stop()
        for task in (self._task, self._listener):
            if task is not None and not task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _stop(self) -> None:
        self._closed = True
        loop = self._loop
        for task in (self._task, self._listener):
            if task is not None and loop is not None and not task.done():
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(task.cancel)

    def exit(self, timeout: float) -> None:
        if not self._closed:
            self.flush(timeout)
        self._closed = True

    def forked(self) -> None:
        """A forked child has no running loop of the parent's: the next call starts a task."""

    async def _run(self) -> None:
        try:
            await self._rounds()
        finally:
            for waiter in self._flush_waiters:
                if not waiter.done():
                    waiter.set_result(False)
            self._flush_waiters = []
            if not self._closed:
                # The loop is ending (asyncio.run() returned): the breakers attach again
                # from the next running loop, which starts a worker there.
                self.ledger.stopped()

    async def _rounds(self) -> None:
        event = self._event
        assert event is not None
        while not self._closed:
            # Cleared before looking for work, so a wake() during the round is not lost.
            event.clear()
            waiters, self._flush_waiters = self._flush_waiters, []
            ok = await self._round(force=bool(waiters))
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(ok)
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(event.wait(), self.ledger.next_wait(time.monotonic()))

    async def _round(self, force: bool) -> bool:
        """One round of exchanges, each bounded by ``timeout``; False if Redis (or a node of
        a cluster) did not answer."""
        work = self.ledger.plan(time.monotonic(), force)
        ok = True
        for where, node, group in round_groups(self.client, self.key_prefix, work):
            try:
                replies = await asyncio.wait_for(self._exchange(group), self.ledger.timeout)
            except asyncio.CancelledError:
                # The loop is ending (asyncio.run() returned): keep the writes for the next
                # loop or the exit flush. Resending is safe: a trip is a compare-and-set,
                # and a reply lost here only costs the count of a transition it made.
                self.ledger.unsent(group)
                raise
            except Exception as exc:  # any failure means "decide locally", never a crash
                # On a cluster only the failed node's breakers decide locally.
                members = self._members(where) if self.cluster else None
                self.ledger.failed(group, exc, node, members)
                ok = False
                continue
            self._heard[where] = time.monotonic()
            self.ledger.delivered(group, replies, node)
        if self.cluster:
            await self._ping_quiet_nodes()
        return ok

    def _members(self, where: str) -> list[Peer]:
        """The breakers whose keys the cluster node ``where`` holds."""
        return members(self.client, self.key_prefix, self.ledger.live_peers(), where)

    async def _ping_quiet_nodes(self) -> None:
        """Ping each primary not heard from for max_staleness / 2 (idle breakers send nothing)."""
        now = time.monotonic()
        for node in quiet(self.client, self._heard, now, self.ledger.max_staleness / 2):
            try:
                await asyncio.wait_for(self.client.ping(target_nodes=node), self.ledger.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.ledger.failed([], exc, node.name, self._members(node.name))
            else:
                self._heard[node.name] = now

    async def _exchange(self, work: list[tuple[Peer, Outbox]]) -> list[Reply]:
        for _ in range(2):
            pipe = self.client.pipeline(transaction=False)
            queue(pipe, work, self.key_prefix, self.ledger.key_ttl)
            answers = replies(await pipe.execute(raise_on_error=False))
            if answers is not None:
                return answers
            # The script cache is empty (a new or restarted server): load it and resend.
            await self.client.script_load(EXCHANGE)
        raise RuntimeError("Redis refused the exchange script twice")

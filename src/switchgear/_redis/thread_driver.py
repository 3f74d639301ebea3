"""The worker thread that keeps breakers in sync through a synchronous ``redis.Redis``.

One daemon thread per storage sleeps until a breaker has something to write (or the next
refresh is due), then sends every pending exchange in one pipeline: one round trip per
round, however many breakers share the client. A second thread listens for the store's
announcements (:mod:`.listener`). Both restart in a forked child (pre-fork servers), where
the parent's threads do not exist.

``flush()`` asks the thread for a round that sends everything pending and waits for it,
bounded by its timeout; with no thread running (closed, or exiting) the round runs on the
caller's thread instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from .._breaker.storage import Ledger, Outbox, Peer, Reply
from .cluster import is_cluster, members, quiet, round_groups
from .codec import EXCHANGE, queue, replies
from .listener import Listening, listen_thread

__all__ = ["ThreadDriver"]

logger = logging.getLogger("switchgear")


class ThreadDriver:
    """Storage driver for ``redis.Redis``: the I/O runs on a daemon thread."""

    def __init__(self, client: Any, key_prefix: str, ledger: Ledger, push: bool = True) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.ledger = ledger
        self.push = push
        self.cluster = is_cluster(client)
        self._heard: dict[str, float] = {}  # cluster node -> when it last answered
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._pause = threading.Event()  # set to cut a listener's pause short (closing)
        self._start_lock = threading.Lock()
        self._round_lock = threading.Lock()  # one round at a time: the worker's or a flush's
        self._flushes = threading.Condition()
        self._flush_asked = 0  # flush requests so far
        self._flush_done = 0  # requests answered by a completed round
        self._flush_ok = True  # whether that round reached the store
        self._closed = False

    def wake(self) -> None:
        self._event.set()

    def flush(self, limit: float) -> bool:
        with self._flushes:
            self._flush_asked += 1
            ticket = self._flush_asked
        thread = self._thread
        if thread is threading.current_thread():
            # Called from a listener run by the worker itself: its next round sends it all.
            self._event.set()
            return False
        if thread is None or not thread.is_alive():
            # No worker to ask: send from here (bounded by the client's socket timeout).
            if not self._round_lock.acquire(timeout=limit):
                return False
            try:
                return self._round(force=True)
            finally:
                self._round_lock.release()
        self._event.set()
        with self._flushes:
            answered = self._flushes.wait_for(lambda: self._flush_done >= ticket, limit)
            return answered and self._flush_ok

    async def aflush(self, limit: float) -> bool:
        return await asyncio.to_thread(self.flush, limit)

    def close(self) -> None:
        if not self._closed:
            self.flush(self.ledger.timeout)
        self._closed = True
        self._event.set()
        self._pause.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.ledger.timeout + 1.0)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def exit(self, timeout: float) -> None:
        if not self._closed:
            self.flush(timeout)
        # Not joined: a worker stuck on a dead connection must not hold up the exit.
        self._closed = True
        self._event.set()
        self._pause.set()

    def start(self) -> bool:
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
            if self.push and (self._listener is None or not self._listener.is_alive()):
                listening = Listening(self.ledger, self.key_prefix)
                self._listener = threading.Thread(
                    target=listen_thread,
                    args=(self.client, listening, self.wake, self._stopped, self._pause),
                    name="switchgear-redis-listener",
                    daemon=True,
                )
                self._listener.start()
        return True

    def _stopped(self) -> bool:
        return self._closed

    def forked(self) -> None:
        self._heard = {}
        self._thread = None
        self._listener = None
        self._pause = threading.Event()
        self._start_lock = threading.Lock()
        self._round_lock = threading.Lock()
        self._flushes = threading.Condition()
        self._flush_asked = self._flush_done = 0
        self._event = threading.Event()
        if self.ledger.live_peers() and not self._closed:
            self.start()

    def _run(self) -> None:
        event = self._event
        while True:
            # Cleared before looking for work, so a wake() during the round is not lost.
            event.clear()
            with self._flushes:
                asked = self._flush_asked
            flushing = asked > self._flush_done
            with self._round_lock:
                ok = self._round(force=flushing)
            if flushing:
                with self._flushes:
                    self._flush_done = asked
                    self._flush_ok = ok
                    self._flushes.notify_all()
            if self._closed:
                return
            event.wait(self.ledger.next_wait(time.monotonic()))

    def _round(self, force: bool) -> bool:
        """One round of exchanges; False if the store (or a node of it) did not answer."""
        work = self.ledger.plan(time.monotonic(), force)
        ok = True
        for where, node, group in round_groups(self.client, self.key_prefix, work):
            try:
                replies = self._exchange(group)
            except Exception as exc:  # those breakers decide locally, never a crash
                # On a cluster only the failed node's breakers decide locally.
                members = self._members(where) if self.cluster else None
                self.ledger.failed(group, exc, node, members)
                ok = False
                continue
            self._heard[where] = time.monotonic()
            self.ledger.delivered(group, replies, node)
        if self.cluster:
            self._ping_quiet_nodes()
        return ok

    def _members(self, where: str) -> list[Peer]:
        """The breakers whose keys the cluster node ``where`` holds."""
        return members(self.client, self.key_prefix, self.ledger.live_peers(), where)

    def _ping_quiet_nodes(self) -> None:
        """Ping each primary not heard from for max_staleness / 2 (idle breakers send nothing)."""
        now = time.monotonic()
        for node in quiet(self.client, self._heard, now, self.ledger.max_staleness / 2):
            try:
                self.client.ping(target_nodes=node)
            except Exception as exc:
                self.ledger.failed([], exc, node.name, self._members(node.name))
            else:
                self._heard[node.name] = now

    def _exchange(self, work: list[tuple[Peer, Outbox]]) -> list[Reply]:
        for _ in range(2):
            pipe = self.client.pipeline(transaction=False)
            queue(pipe, work, self.key_prefix, self.ledger.key_ttl)
            answers = replies(pipe.execute(raise_on_error=False))
            if answers is not None:
                return answers
            # The script cache is empty (a new or restarted server): load it and resend.
            self.client.script_load(EXCHANGE)
        raise RuntimeError("Redis refused the exchange script twice")

"""The listener of a storage's announcements: Redis pub/sub, a thread or an asyncio task.

The exchange script announces every transition on ``<prefix>events``. One subscription per
storage (one connection, whatever the number of breakers) hears them and marks the breakers
named for a refresh. It also proves the store alive with one ``PING`` on that connection every
``max_staleness / 2``; that single command replaces the per-breaker refresh while the
subscription holds, so an idle process costs Redis two commands a second at most.

What is missed while the subscription is down is caught twice over: the breakers go back to
refreshing themselves every ``max_staleness / 2`` the moment it is known to be down, and each
(re)subscription refreshes every breaker once. redis-py reconnects a subscription on its own;
the confirmation Redis sends for each subscription tells this listener that it happened.

:class:`Listening` decides (no I/O); :func:`listen_thread` and :func:`listen_task` are the
sync and asyncio loops around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._breaker.storage import Ledger
from .codec import EVENTS, announcement

__all__ = ["Listening", "listen_task", "listen_thread"]


class Listening:
    """What one subscription's messages and silences mean for the ledger. No I/O."""

    def __init__(self, ledger: Ledger, key_prefix: str) -> None:
        self.ledger = ledger
        self.key_prefix = key_prefix
        self.channel = key_prefix + EVENTS
        self.interval = ledger.max_staleness / 2
        self.pinged_at: float | None = None  # a ping awaiting its answer
        self.next_ping = 0.0

    def message(self, message: Mapping[str, Any] | None) -> bool:
        """Apply one message; True when the worker should run a round now."""
        if message is None:
            return False
        kind = message.get("type")
        if kind == "subscribe":
            self.ledger.pushed_up(True)
            return True
        if kind == "pong":
            self.pinged_at = None
            self.ledger.alive()
            return False
        if kind == "message":
            found = announcement(self.key_prefix, message.get("data"))
            return found is not None and self.ledger.announced(*found)
        return False

    def ping_due(self, now: float) -> bool:
        return self.pinged_at is None and now >= self.next_ping

    def pinged(self, now: float) -> None:
        self.pinged_at = now
        self.next_ping = now + self.interval

    def overdue(self, now: float) -> bool:
        """The last ping went unanswered for longer than one exchange may take."""
        return self.pinged_at is not None and now - self.pinged_at > self.ledger.timeout

    def wait(self, now: float) -> float:
        """How long to wait for a message before the next ping or the ping's deadline."""
        if self.pinged_at is not None:
            until = self.pinged_at + self.ledger.timeout - now
        else:
            until = self.next_ping - now
        return min(max(until, 0.001), self.interval)

    def lost(self) -> bool:
        """The subscription failed; True when the worker should run a round now."""
        self.pinged_at = None
        self.next_ping = 0.0
        if self.ledger.push_up:
            self.ledger.pushed_up(False)
            return True
        return False


class _Silent(Exception):
    """The subscription's ping went unanswered."""


def listen_thread(
    client: Any,
    listening: Listening,
    wake: Callable[[], None],
    stopped: Callable[[], bool],
    pause: threading.Event,
) -> None:
    """The thread's loop: subscribe, apply messages, ping; after a failure, wait, retry."""
    while not stopped():
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(listening.channel)
            while not stopped():
                now = time.monotonic()
                if listening.overdue(now):
                    raise _Silent
                if listening.ping_due(now):
                    pubsub.ping()
                    listening.pinged(now)
                if listening.message(pubsub.get_message(timeout=listening.wait(now))):
                    wake()
        except Exception:  # any failure: poll until subscribed again, never crash
            if listening.lost():
                wake()
            pause.wait(listening.interval)
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()
    if listening.lost():
        wake()


async def listen_task(
    client: Any, listening: Listening, wake: Callable[[], None], stopped: Callable[[], bool]
) -> None:
    """The task's loop, as :func:`listen_thread` on the event loop."""
    try:
        while not stopped():
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(listening.channel)
                while not stopped():
                    now = time.monotonic()
                    if listening.overdue(now):
                        raise _Silent
                    if listening.ping_due(now):
                        await pubsub.ping()
                        listening.pinged(now)
                    message = await pubsub.get_message(timeout=listening.wait(now))
                    if listening.message(message):
                        wake()
            except asyncio.CancelledError:
                raise
            except Exception:  # any failure: poll until subscribed again, never crash
                if listening.lost():
                    wake()
                await asyncio.sleep(listening.interval)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
    finally:
        if listening.lost():
            wake()

"""Waiters queued on a :class:`~switchgear.DynamicPool`, and how they are woken.

A waiter's outcome (``state``/``value``) is decided under the pool lock; the bell (a held
``threading.Lock`` or an ``asyncio.Future`` of the waiter's own loop) only wakes it.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from typing import Any

__all__ = [
    "CREATE",
    "ERROR",
    "GONE",
    "PENDING",
    "RESOURCE",
    "Creation",
    "TaskWaiter",
    "ThreadWaiter",
    "Waiter",
    "WaiterState",
    "ring_future",
]


class WaiterState(enum.Enum):
    """A waiter's outcome, decided under the pool lock."""

    PENDING = enum.auto()  # still queued
    RESOURCE = enum.auto()  # handed a resource (already counted as leased)
    CREATE = enum.auto()  # handed a reserved slot: create the resource yourself (a cold start)
    ERROR = enum.auto()  # woken with an exception (pool closed, timed out)
    GONE = enum.auto()  # left the queue; nothing to give back


# Module-level names for the members: a global load and an ``is`` on the paths that hand
# resources over, instead of an attribute lookup on the enum class each time.
PENDING = WaiterState.PENDING
RESOURCE = WaiterState.RESOURCE
CREATE = WaiterState.CREATE
ERROR = WaiterState.ERROR
GONE = WaiterState.GONE


class Waiter:
    __slots__ = ("state", "value")

    def __init__(self) -> None:
        self.state = PENDING
        self.value: Any = None


class ThreadWaiter(Waiter):
    __slots__ = ("bell",)

    def __init__(self) -> None:
        super().__init__()
        self.bell = threading.Lock()
        self.bell.acquire()  # held until rung: the waiting thread blocks acquiring it again


class TaskWaiter(Waiter):
    __slots__ = ("bell", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.bell: asyncio.Future[None] = loop.create_future()


def ring_future(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Creation:
    """A cold start run on its own thread, so that the caller's timeout bounds the wait.

    ``finished`` and ``abandoned`` are decided under the pool lock: either the caller takes
    the outcome, or it gave up first and the creating thread hands the resource to the pool.
    ``done`` (threads) and ``notify`` (an event loop's future) only wake the caller.
    """

    __slots__ = ("abandoned", "done", "error", "finished", "notify", "resource")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.notify: Any = None  # called once finished, from the creating thread
        self.finished = False
        self.abandoned = False
        self.resource: Any = None
        self.error: BaseException | None = None

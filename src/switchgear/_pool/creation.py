"""Cold starts: creating a resource into a slot reserved for a caller.

A real factory may be slow or hang, so a caller with a timeout waits for it on another
thread, and a coroutine never runs it on its event loop. Whoever stops waiting first loses
the race decided under the pool lock (see :class:`~switchgear._pool.waiters.Creation`): the
caller takes the outcome, or the creating thread hands the resource to the pool.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import threading
from typing import Any, TypeVar

from .._errors import PoolClosedError, PoolTimeoutError
from .core import PoolCore, logger
from .waiters import Creation, ring_future

__all__ = ["create_off_loop", "create_reserved", "create_within"]

T = TypeVar("T")

_TIMEOUT_MAX = threading.TIMEOUT_MAX  # Event.wait overflows beyond it


def create_reserved(core: PoolCore[T]) -> T:
    """Create a resource into a reserved slot (reserved by the caller or handed to it).

    The slot is given back if the factory fails, returns an object the pool already holds,
    or the pool closes meanwhile.
    """
    if core.closed:
        core.unreserve()
        raise PoolClosedError(core.name)
    try:
        resource = core.factory()
    except BaseException:
        core.unreserve()
        raise
    with core.lock:
        core.integrate()
        duplicate = core.holds(resource)
        doomed = core.closed and not duplicate
        if duplicate or doomed:
            waiter = core.pass_slot()
        else:
            waiter = None
            core.creating -= 1
            core.leased[id(resource)] = resource
            core.cold_starts += 1
    if waiter is not None:
        core.ring(waiter)
    if duplicate:
        raise ValueError("factory returned an object that is already in the pool")
    if doomed:
        core.close_resource(resource)
        raise PoolClosedError(core.name)
    return resource


def create_within(core: PoolCore[T], limit: float | None, start: float) -> T:
    """A cold start for a thread caller, bounded by what is left of its ``limit``.

    ``timeout=0`` asks never to wait in line; the cold start it may trigger is made here,
    as with no timeout (a positive timeout is what bounds a slow factory).
    """
    if not limit or core.instant:
        return create_reserved(core)
    creation = _start(core, Creation())
    remaining = max(limit - (core.clock() - start), 0.0)
    try:
        finished = creation.done.wait(min(remaining, _TIMEOUT_MAX))
    except BaseException:  # KeyboardInterrupt
        _walk_away(core, creation)
        raise
    if not finished and _give_up(core, creation):
        raise PoolTimeoutError(core.name, limit)
    resource: T = _created(creation)
    return resource


async def create_off_loop(
    core: PoolCore[T], limit: float | None, start: float, loop: asyncio.AbstractEventLoop
) -> T:
    """A cold start for a coroutine: the factory never runs on the event loop."""
    if core.instant:
        return create_reserved(core)
    woken: asyncio.Future[None] = loop.create_future()
    creation = Creation()
    creation.notify = lambda: _wake_loop(loop, woken)
    _start(core, creation)
    try:
        if not limit:  # no timeout, or timeout=0 (never wait in line): as in create_within
            await asyncio.shield(woken)
        else:
            remaining = max(limit - (core.clock() - start), 0.0)
            await asyncio.wait_for(asyncio.shield(woken), remaining)
    except (asyncio.TimeoutError, TimeoutError):
        if _give_up(core, creation):
            raise PoolTimeoutError(core.name, limit or 0.0) from None
    except BaseException:  # cancelled
        _walk_away(core, creation)
        raise
    resource: T = _created(creation)
    return resource


def _wake_loop(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(ring_future, future)


def _start(core: PoolCore[Any], creation: Creation) -> Creation:
    # The low-level start: threading.Thread.start() waits until the new thread runs,
    # which on a busy machine can hold an event loop for a scheduler slice or more.
    _thread.start_new_thread(_run, (core, creation))
    return creation


def _run(core: PoolCore[Any], creation: Creation) -> None:
    resource: Any = None
    error: BaseException | None = None
    try:
        resource = create_reserved(core)
    except BaseException as exc:
        error = exc
    with core.lock:
        creation.finished = True
        creation.resource, creation.error = resource, error
        abandoned = creation.abandoned
    if abandoned:
        if error is None:
            core.give_back(resource)  # to a waiter, idle, or closed if the pool closed
        elif not isinstance(error, PoolClosedError) and not core.late_failure_logged:
            core.late_failure_logged = True  # once per pool: a broken factory repeats
            logger.error(
                "pool %r: a resource creation failed after its caller stopped waiting",
                core.name,
                exc_info=error,
            )
    creation.done.set()
    if creation.notify is not None:
        creation.notify()


def _give_up(core: PoolCore[Any], creation: Creation) -> bool:
    """The caller stops waiting; False if the creation finished first (take it)."""
    with core.lock:
        if creation.finished:
            return False
        creation.abandoned = True
        return True


def _walk_away(core: PoolCore[Any], creation: Creation) -> None:
    """The caller leaves for good: what is made, now or later, goes to the pool."""
    if not _give_up(core, creation) and creation.error is None:
        core.give_back(creation.resource)


def _created(creation: Creation) -> Any:
    if creation.error is not None:
        raise creation.error
    return creation.resource

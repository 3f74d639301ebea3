"""Coroutine functions as state-change listeners: scheduled, never awaited by the breaker.

A breaker tells its listeners of a transition on the thread that made it, after its lock is
released. A coroutine listener cannot run there: it is wrapped in an :class:`AsyncListener`
that queues the event and makes sure one *drainer* task awaits the listener for each queued
event in turn, so one listener sees the transitions in order, each after the previous call
has finished, and a slow listener never holds up a call. The drainer runs on

1. the event loop running in the thread of the transition, if there is one;
2. else the loop that was running where the listener was registered, if it still runs
   (a breaker used from worker threads of an asyncio application);
3. else a loop of the library's own, in one daemon thread started on first use.

An exception from the listener is logged (as for a plain listener) and the next event is
still delivered.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from .events import TransitionEvent, takes_event

__all__ = ["AsyncListener", "listener_for", "wrapped"]

logger = logging.getLogger("switchgear")

# How long interpreter exit waits for the library's own loop to finish the listeners queued.
_EXIT_WAIT = 1.0


class AsyncListener:
    """One coroutine listener of one breaker, with its queue of events not yet delivered."""

    def __init__(self, fn: Callable[..., Coroutine[Any, Any, object]], breaker: str) -> None:
        self.wrapped = fn
        self.breaker = breaker
        self.one_arg = takes_event(fn)
        try:
            self.home: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.home = None
        self.lock = threading.Lock()
        self.queue: deque[TransitionEvent] = deque()
        self.drainer_loop: asyncio.AbstractEventLoop | None = None  # while a drainer is out
        self.drainer: object = None  # a strong reference: a loop keeps only weak ones

    def __call__(self, event: TransitionEvent) -> None:
        with self.lock:
            self.queue.append(event)
            if self.drainer_loop is not None and not self.drainer_loop.is_closed():
                return  # the drainer out there takes this one too
            loop, here = _loop_for(self.home)
            self.drainer_loop = loop
            if here:
                self.drainer = loop.create_task(self.drain())
                return
        try:
            future = asyncio.run_coroutine_threadsafe(self.drain(), loop)
        except RuntimeError:  # closed between the check and the call: our own loop then
            future = asyncio.run_coroutine_threadsafe(self.drain(), _own_loop())
            with self.lock:
                self.drainer_loop = _own
        with self.lock:
            self.drainer = future
        _outstanding[future] = self.drainer_loop or loop
        future.add_done_callback(_forget)

    async def drain(self) -> None:
        while True:
            with self.lock:
                if not self.queue:
                    self.drainer_loop = None
                    self.drainer = None
                    return
                event = self.queue.popleft()
            try:
                if self.one_arg:
                    await self.wrapped(event)
                else:
                    await self.wrapped(event.old, event.new)
            except Exception:
                logger.exception(
                    "switchgear: state-change listener %r of breaker %r failed",
                    self.wrapped,
                    self.breaker,
                )

    def __repr__(self) -> str:
        return f"<AsyncListener {self.wrapped!r}>"


def listener_for(fn: Callable[..., Any], breaker: str) -> Callable[..., Any]:
    """``fn`` itself, or an :class:`AsyncListener` for a coroutine function."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (an object whose __call__ is async)
    ):
        return AsyncListener(fn, breaker)
    return fn


def wrapped(listener: object) -> object:
    """The function the user registered (unwraps an :class:`AsyncListener`)."""
    return listener.wrapped if isinstance(listener, AsyncListener) else listener


def _loop_for(home: asyncio.AbstractEventLoop | None) -> tuple[asyncio.AbstractEventLoop, bool]:
    """The loop a drainer runs on, and whether it is running in this thread."""
    try:
        return asyncio.get_running_loop(), True
    except RuntimeError:
        pass
    if home is not None and home.is_running() and not home.is_closed():
        return home, False
    return _own_loop(), False


# -- the library's own loop, for listeners with no loop of the application's to run on -------
_own: asyncio.AbstractEventLoop | None = None
_own_lock = threading.Lock()
# Drainers started from outside their loop, by the loop they run on (for the wait at exit).
_outstanding: dict[concurrent.futures.Future[None], asyncio.AbstractEventLoop] = {}


def _forget(future: concurrent.futures.Future[None]) -> None:
    _outstanding.pop(future, None)


def _own_loop() -> asyncio.AbstractEventLoop:
    global _own
    with _own_lock:
        if _own is None or _own.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="switchgear-listeners", daemon=True
            )
            thread.start()
            _own = loop
        return _own


def _finish_at_exit() -> None:
    """Give listeners already queued a moment to run before the interpreter goes."""
    pending = [f for f, loop in list(_outstanding.items()) if loop.is_running()]
    if pending:
        concurrent.futures.wait(pending, timeout=_EXIT_WAIT)


def _forget_in_child() -> None:
    # The thread running our loop does not exist in a forked child; start another on use.
    global _own, _own_lock
    _own = None
    _own_lock = threading.Lock()
    _outstanding.clear()


atexit.register(_finish_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)

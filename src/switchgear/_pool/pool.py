"""DynamicPool: a bounded pool of resources with cold starts, fair waiting and an autoscaler.

Design notes (why, not what):

* One short ``threading.Lock`` guards the size accounting. Resources are never created or
  closed while it is held: a slot is *reserved* under the lock (``_size``), the factory runs
  without it, and the result is filed (or the reservation given back) under the lock again.
  ``_size == len(_idle) + len(_leased) + _creating + _warming`` at every unlock.
* Waiters queue in FIFO order and a released resource is *handed* to the oldest waiter under
  the lock (it never passes through the idle list), so nobody can barge past a waiter and no
  wakeup is lost. A waiter's outcome (a resource, a reserved slot to create into, or an
  error) is decided under the lock; the thread lock or asyncio future it sleeps on is only the
  doorbell. So a waiter that times out or is cancelled looks at its outcome under the lock
  and gives back whatever it was handed: nothing leaks.
* Async waiters sleep on an ``asyncio.Future`` of their own loop, rung with
  ``call_soon_threadsafe`` from other threads: the event loop never blocks on the pool.
* Idle resources are reused LIFO, so under light load the same few stay warm and the rest sit
  idle long enough for the autoscaler to retire them.
* Utilization is integrated over time by the pool's clock at every change of state, so the
  autoscaler sees the average of the interval, not whatever the last instant looked like
  (the seed sampled once per tick, which aliases bursts). The decision is the pure function
  :func:`_decide`. Slow paths fold the area up to "now" before they change anything
  (``_integrate``); the two hot paths (take an idle resource, put one back) only note
  ``±(now - _t_last)`` in ``_busy_shift``, which ``_integrate`` subtracts (integration by
  parts), so the fast path stays one lock, a pop, a dict store and a clock read.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

from .. import _validate as v
from .._errors import PoolClosedError, PoolFullError, PoolTimeoutError
from .observer import PoolObserver, Tally
from .policy import decide as _decide
from .waiters import CREATE as _CREATE
from .waiters import ERROR as _ERROR
from .waiters import GONE as _GONE
from .waiters import PENDING as _PENDING
from .waiters import RESOURCE as _RESOURCE
from .waiters import Creation as _Creation
from .waiters import TaskWaiter as _TaskWaiter
from .waiters import ThreadWaiter as _ThreadWaiter
from .waiters import Waiter as _Waiter
from .waiters import WaiterState as _WaiterState
from .waiters import ring_future as _ring_future

__all__ = ["DynamicPool", "PoolStats", "Slot"]

logger = logging.getLogger("switchgear")

T = TypeVar("T")

MISSING: Any = object()

_TIMEOUT_MAX = threading.TIMEOUT_MAX  # Lock.acquire overflows beyond it


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a :class:`DynamicPool` (the seed's ``DynamicPoolStats``).

    ``total == in_use + available``; ``in_use`` includes resources being created for a caller.
    ``total_requests`` counts finished ``acquire`` calls, including the ones that failed;
    ``avg_wait_time`` is the mean seconds they spent in ``acquire``. ``scale_up_count`` and
    ``scale_down_count`` count *resources* the autoscaler added and retired (on-demand
    creations are ``cold_starts``, not scale-ups).

    Example::

        s = pool.stats()
        print(f"{s.in_use}/{s.total} busy, {s.waiting} waiting, {s.cold_starts} cold starts")
    """

    total: int
    in_use: int
    available: int
    waiting: int
    total_requests: int
    avg_wait_time: float
    scale_up_count: int
    scale_down_count: int
    cold_starts: int


class Slot:
    """A bulkhead permit: what a pool built without a factory hands out (unique per slot)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<Slot {self.index}>"


def _autoscale(ref: weakref.ref[DynamicPool[Any]], stop: threading.Event, interval: float) -> None:
    # Holds the pool only while stepping it, so an abandoned pool can be collected.
    while not stop.wait(interval):
        pool = ref()
        if pool is None:
            return
        try:
            pool.check_and_scale()
        except Exception:
            logger.exception("pool %r: autoscaler step failed", pool.name)
        finally:
            del pool


_live_pools: weakref.WeakSet[DynamicPool[Any]] = weakref.WeakSet()


def _wake_loop(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_ring_future, future)


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class DynamicPool(Generic[T]):
    """A pool of resources made by ``factory``, between ``min_size`` and ``max_size`` of them.

    ``acquire`` takes an idle resource (the most recently used one), creates one if none is
    idle and the pool is below ``max_size`` (a *cold start*), and otherwise waits in line,
    bounded by ``acquire_timeout`` and ``max_waiting``. Every ``scale_interval`` seconds an
    autoscaler thread pre-warms resources when the interval's average utilization
    ``(in_use + waiting) / total`` was above ``scale_up_threshold`` and retires idle ones when
    it was below ``scale_down_threshold``. With ``factory=None`` the pool hands out
    :class:`Slot` permits: a bulkhead.

    Example::

        engines = sg.DynamicPool(make_engine, name="engines", min_size=2, max_size=16)
        with engines.lease() as engine:
            engine.run(job)

        async with engines.lease_async() as engine:
            await engine.run_async(job)

        bulkhead = sg.DynamicPool(None, name="db", min_size=0, max_size=10, max_waiting=50)
    """

    @overload
    def __init__(
        self: DynamicPool[Slot],
        factory: None = None,
        *,
        close: Callable[[Slot], object] | None = None,
        name: str = "engines",
        min_size: int = 2,
        max_size: int = 16,
        scale_up_threshold: float = 0.8,
        scale_down_threshold: float = 0.3,
        scale_interval: float | timedelta = 10.0,
        acquire_timeout: float | timedelta | None = None,
        max_waiting: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None: ...

    @overload
    def __init__(
        self,
        factory: Callable[[], T],
        *,
        close: Callable[[T], object] | None = None,
        name: str = "engines",
        min_size: int = 2,
        max_size: int = 16,
        scale_up_threshold: float = 0.8,
        scale_down_threshold: float = 0.3,
        scale_interval: float | timedelta = 10.0,
        acquire_timeout: float | timedelta | None = None,
        max_waiting: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None: ...

    def __init__(
        self,
        factory: Callable[[], Any] | None = None,
        *,
        close: Callable[[Any], object] | None = None,
        name: str = "engines",
        min_size: int = 2,
        max_size: int = 16,
        scale_up_threshold: float = 0.8,
        scale_down_threshold: float = 0.3,
        scale_interval: float | timedelta = 10.0,
        acquire_timeout: float | timedelta | None = None,
        max_waiting: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Plain slots are made at once; a real factory may take long or hang, so a caller
        # with a timeout waits for it on another thread (see _create_within).
        self._instant = factory is None
        if factory is None:
            numbers = itertools.count(1)

            def factory() -> Any:
                return Slot(next(numbers))

        self._factory: Callable[[], T] = v.callable_("factory", factory)
        if inspect.iscoroutinefunction(factory) or inspect.iscoroutinefunction(
            getattr(factory, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            # Its "resource" would be an un-awaited coroutine; acquire() and the autoscaler
            # create resources on threads, with no event loop to run it.
            raise TypeError(
                "factory must be a plain callable returning the resource, not an async one "
                "(create it with asyncio.run_coroutine_threadsafe on your loop, if it must be)"
            )
        self._closer = v.optional_callable("close", close)
        self._name = v.name("name", name)
        self._min = v.integer("min_size", min_size, minimum=0)
        self._max = v.integer("max_size", max_size, minimum=1)
        if self._min > self._max:
            raise ValueError(f"min_size ({self._min}) must be <= max_size ({self._max})")
        self._up = v.ratio("scale_up_threshold", scale_up_threshold)
        self._down = v.ratio("scale_down_threshold", scale_down_threshold)
        if self._down >= self._up:
            raise ValueError(
                f"scale_down_threshold ({self._down}) must be below scale_up_threshold ({self._up})"
            )
        self._interval = v.seconds("scale_interval", scale_interval)
        self._acquire_timeout = v.optional_seconds("acquire_timeout", acquire_timeout)
        self._max_waiting = (
            None if max_waiting is None else v.integer("max_waiting", max_waiting, minimum=0)
        )
        self._clock = v.clock(clock)

        self._lock = threading.Lock()
        self._idle: list[T] = []  # LIFO: pop() takes the most recently used
        self._leased: dict[int, T] = {}  # by id(): resources need not be hashable
        self._waiters: OrderedDict[_Waiter, None] = OrderedDict()
        self._size = 0  # every resource alive or being created
        self._creating = 0  # being created for a caller (counted as in use)
        self._warming = 0  # being created by the autoscaler (not yet counted in total)
        self._closed = False
        self._observers: tuple[PoolObserver, ...] = ()
        # Acquisitions served at once from an idle resource. Observers read this count when
        # they are scraped instead of hearing of each one: the hot path calls nobody. Only
        # observers that need each event (``every_acquire``: an OpenTelemetry histogram, a
        # multiprocess file) are called for them, and only while one is attached.
        self.immediate = Tally()  # acquisitions served at once (see stats)
        self._every: tuple[PoolObserver, ...] = ()
        self._requests = 0  # finished acquire calls that did not find an idle resource
        self._wait_sum = 0.0
        self._cold_starts = 0
        self._scaled_up = 0
        self._scaled_down = 0
        now = self._clock()
        self._t_last = now  # utilization integrals run from _t_window to _t_last
        self._t_window = now
        self._busy_area = 0.0
        self._total_area = 0.0
        self._busy_shift = 0.0  # hot-path changes of busy since _t_last, see _integrate
        self._late_failure_logged = False
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._need_thread = True

        created: list[T] = []
        try:
            for _ in range(self._min):
                resource = self._factory()
                if any(r is resource for r in created):
                    raise ValueError("factory returned the same object twice")
                created.append(resource)
        except BaseException:
            for resource in created:
                self._close_resource(resource)
            raise
        self._idle = created
        self._size = len(created)
        _live_pools.add(self)
        self._ensure_autoscaler()

    # -- read-only configuration ------------------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name: the ``pool`` label of its metrics."""
        return self._name

    @property
    def min_size(self) -> int:
        """Resources kept even when idle (created up front)."""
        return self._min

    @property
    def max_size(self) -> int:
        """The most resources that ever exist at once."""
        return self._max

    # -- acquire ----------------------------------------------------------------------------

    def acquire(self, timeout: float | timedelta | None = None) -> T:
        """Take a resource; wait at most ``timeout`` (default: ``acquire_timeout``) at max_size.

        ``timeout=0`` fails at once instead of waiting. Raises :class:`PoolTimeoutError`,
        :class:`PoolFullError` (``max_waiting`` callers already wait), :class:`PoolClosedError`,
        or whatever the factory raised during a cold start.
        """
        return self.acquire_timed(timeout)[0]

    async def acquire_async(self, timeout: float | timedelta | None = None) -> T:
        """Like :meth:`acquire`, waiting without blocking the event loop."""
        return (await self.acquire_timed_async(timeout))[0]

    def acquire_timed(self, timeout: float | timedelta | None = None) -> tuple[T, bool, float]:
        """``acquire`` returning ``(resource, cold_start, waited_seconds)``."""
        if timeout is not None:
            timeout = v.seconds("timeout", timeout, allow_zero=True)
        resource = self.take()
        if resource is MISSING:
            return self._acquire_slow(timeout)
        return resource, False, 0.0

    async def acquire_timed_async(
        self, timeout: float | timedelta | None = None
    ) -> tuple[T, bool, float]:
        """``acquire_async`` returning ``(resource, cold_start, waited_seconds)``."""
        if timeout is not None:
            timeout = v.seconds("timeout", timeout, allow_zero=True)
        resource = self.take()
        if resource is MISSING:
            return await self._acquire_slow_async(timeout)
        return resource, False, 0.0

    def take(self) -> Any:
        """The fast path: the most recently used idle resource, or ``MISSING``."""
        if self._need_thread:
            self._ensure_autoscaler()
        # acquire/release rather than ``with``: half the cost, on the path every call takes.
        lock = self._lock
        lock.acquire()
        try:
            idle = self._idle
            if not idle:
                return MISSING
            resource = idle.pop()
            self._leased[id(resource)] = resource
            self._busy_shift += self._clock() - self._t_last  # busy + 1, see _integrate
            self.immediate.count += 1
        finally:
            lock.release()
        if self._every:
            self._notify_immediate()
        return resource

    def _acquire_slow(self, timeout: float | None) -> tuple[T, bool, float]:
        limit = self._acquire_timeout if timeout is None else timeout
        start = self._clock()
        try:
            with self._lock:
                kind, value = self._admit(limit, None)
            if kind is _PENDING:
                kind, value = self._wait_thread(value, limit)
            cold = kind is _CREATE
            if cold:
                value = self._create_within(limit, start)
        except BaseException:
            self._account(start)
            raise
        return self._acquired(value, cold, start)

    async def _acquire_slow_async(self, timeout: float | None) -> tuple[T, bool, float]:
        limit = self._acquire_timeout if timeout is None else timeout
        start = self._clock()
        loop = asyncio.get_running_loop()
        try:
            with self._lock:
                kind, value = self._admit(limit, loop)
            if kind is _PENDING:
                kind, value = await self._wait_task(value, limit)
            cold = kind is _CREATE
            if cold:
                value = await self._create_off_loop(limit, start, loop)
        except BaseException:
            self._account(start)
            raise
        return self._acquired(value, cold, start)

    def _admit(
        self, limit: float | None, loop: asyncio.AbstractEventLoop | None
    ) -> tuple[_WaiterState, Any]:
        """Under the lock: an idle resource, a reserved slot, or a queued waiter."""
        if self._closed:
            raise PoolClosedError(self._name)
        self._integrate()
        if self._idle:
            resource = self._idle.pop()
            self._leased[id(resource)] = resource
            return _RESOURCE, resource
        if self._size < self._max:
            self._size += 1
            self._creating += 1
            return _CREATE, None
        waiting = len(self._waiters)
        if self._max_waiting is not None and waiting >= self._max_waiting:
            raise PoolFullError(self._name, waiting)
        if limit == 0:
            raise PoolTimeoutError(self._name, 0.0)
        waiter = _ThreadWaiter() if loop is None else _TaskWaiter(loop)
        self._waiters[waiter] = None
        return _PENDING, waiter

    def _wait_thread(self, waiter: _ThreadWaiter, limit: float | None) -> tuple[_WaiterState, Any]:
        try:
            rung = waiter.bell.acquire(True, -1 if limit is None else min(limit, _TIMEOUT_MAX))
        except BaseException:  # KeyboardInterrupt while waiting
            self._abandon(waiter)
            raise
        if not rung:
            with self._lock:
                if waiter.state is _PENDING:
                    self._integrate()
                    del self._waiters[waiter]
                    waiter.state = _GONE
            if waiter.state is _GONE:
                assert limit is not None
                raise PoolTimeoutError(self._name, limit)
            # Handed something just as time ran out: take it.
        return self._outcome(waiter)

    async def _wait_task(
        self, waiter: _TaskWaiter, limit: float | None
    ) -> tuple[_WaiterState, Any]:
        timer = None
        if limit is not None:
            timer = waiter.loop.call_later(limit, self._expire, waiter, limit)
        try:
            await waiter.bell
        except BaseException:  # cancelled: give back whatever we were handed meanwhile
            self._abandon(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return self._outcome(waiter)

    def _expire(self, waiter: _TaskWaiter, limit: float) -> None:
        with self._lock:
            if waiter.state is not _PENDING:
                return
            self._integrate()
            del self._waiters[waiter]
            waiter.state = _ERROR
            waiter.value = PoolTimeoutError(self._name, limit)
        _ring_future(waiter.bell)

    @staticmethod
    def _outcome(waiter: _Waiter) -> tuple[_WaiterState, Any]:
        if waiter.state is _ERROR:
            error: BaseException = waiter.value
            raise error
        return waiter.state, waiter.value

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter gave up: leave the queue, or pass on what it was handed."""
        with self._lock:
            state, value = waiter.state, waiter.value
            waiter.state = _GONE
            if state is _PENDING:
                self._integrate()
                del self._waiters[waiter]
        if state is _RESOURCE:
            self.give_back(value)
        elif state is _CREATE:
            self._unreserve()

    def _acquired(self, resource: T, cold: bool, start: float) -> tuple[T, bool, float]:
        waited = self._account(start)
        if self._observers:
            self._notify_acquired(waited, cold)
        return resource, cold, waited

    def _account(self, start: float) -> float:
        with self._lock:
            waited = max(0.0, self._clock() - start)
            self._requests += 1
            self._wait_sum += waited
        return waited

    def _create_reserved(self) -> T:
        """Create a resource into a slot reserved by ``_admit`` (or handed to a waiter)."""
        if self._closed:
            self._unreserve()
            raise PoolClosedError(self._name)
        try:
            resource = self._factory()
        except BaseException:
            self._unreserve()
            raise
        with self._lock:
            self._integrate()
            duplicate = self._holds(resource)
            doomed = self._closed and not duplicate
            if duplicate or doomed:
                waiter = self._pass_slot()
            else:
                waiter = None
                self._creating -= 1
                self._leased[id(resource)] = resource
                self._cold_starts += 1
        if waiter is not None:
            self._ring(waiter)
        if duplicate:
            raise ValueError("factory returned an object that is already in the pool")
        if doomed:
            self._close_resource(resource)
            raise PoolClosedError(self._name)
        return resource

    def _create_within(self, limit: float | None, start: float) -> T:
        """A cold start for a thread caller, bounded by what is left of its ``limit``.

        ``timeout=0`` asks never to wait in line; the cold start it may trigger is made here,
        as with no timeout (a positive timeout is what bounds a slow factory).
        """
        if not limit or self._instant:
            return self._create_reserved()
        creation = self._start_creation()
        remaining = max(limit - (self._clock() - start), 0.0)
        try:
            finished = creation.done.wait(min(remaining, _TIMEOUT_MAX))
        except BaseException:  # KeyboardInterrupt
            self._walk_away(creation)
            raise
        if not finished and self._give_up(creation):
            raise PoolTimeoutError(self._name, limit)
        return self._created(creation)

    async def _create_off_loop(
        self, limit: float | None, start: float, loop: asyncio.AbstractEventLoop
    ) -> T:
        """A cold start for a coroutine: the factory never runs on the event loop."""
        if self._instant:
            return self._create_reserved()
        woken: asyncio.Future[None] = loop.create_future()
        creation = _Creation()
        creation.notify = lambda: _wake_loop(loop, woken)
        self._start_creation(creation)
        try:
            if not limit:  # no timeout, or timeout=0 (never wait in line): as in _create_within
                await asyncio.shield(woken)
            else:
                remaining = max(limit - (self._clock() - start), 0.0)
                await asyncio.wait_for(asyncio.shield(woken), remaining)
        except (asyncio.TimeoutError, TimeoutError):
            if self._give_up(creation):
                raise PoolTimeoutError(self._name, limit or 0.0) from None
        except BaseException:  # cancelled
            self._walk_away(creation)
            raise
        return self._created(creation)

    def _start_creation(self, creation: _Creation | None = None) -> _Creation:
        creation = creation or _Creation()
        # The low-level start: threading.Thread.start() waits until the new thread runs,
        # which on a busy machine can hold an event loop for a scheduler slice or more.
        _thread.start_new_thread(self._run_creation, (creation,))
        return creation

    def _run_creation(self, creation: _Creation) -> None:
        resource: Any = None
        error: BaseException | None = None
        try:
            resource = self._create_reserved()
        except BaseException as exc:
            error = exc
        with self._lock:
            creation.finished = True
            creation.resource, creation.error = resource, error
            abandoned = creation.abandoned
        if abandoned:
            if error is None:
                self.give_back(resource)  # to a waiter, idle, or closed if the pool closed
            elif not isinstance(error, PoolClosedError) and not self._late_failure_logged:
                self._late_failure_logged = True  # once per pool: a broken factory repeats
                logger.error(
                    "pool %r: a resource creation failed after its caller stopped waiting",
                    self._name,
                    exc_info=error,
                )
        creation.done.set()
        if creation.notify is not None:
            creation.notify()

    def _give_up(self, creation: _Creation) -> bool:
        """The caller stops waiting; False if the creation finished first (take it)."""
        with self._lock:
            if creation.finished:
                return False
            creation.abandoned = True
            return True

    def _walk_away(self, creation: _Creation) -> None:
        """The caller leaves for good: what is made, now or later, goes to the pool."""
        if not self._give_up(creation) and creation.error is None:
            self.give_back(creation.resource)

    def _created(self, creation: _Creation) -> T:
        if creation.error is not None:
            raise creation.error
        resource: T = creation.resource
        return resource

    def _unreserve(self) -> None:
        """Give back a slot reserved for creation: to the oldest waiter, else to the pool."""
        with self._lock:
            self._integrate()
            waiter = self._pass_slot()
        if waiter is not None:
            self._ring(waiter)

    def _pass_slot(self) -> _Waiter | None:
        # Under the lock. The reservation moves to the waiter, which creates into it.
        if self._waiters:
            waiter = self._waiters.popitem(last=False)[0]
            waiter.state = _CREATE
            return waiter
        self._creating -= 1
        self._size -= 1
        return None

    def _holds(self, resource: object) -> bool:
        return id(resource) in self._leased or any(r is resource for r in self._idle)

    # -- release ----------------------------------------------------------------------------

    def release(self, resource: T) -> None:
        """Give ``resource`` back; it goes to the oldest waiter, or idle, or closed if closed.

        Raises ``ValueError`` for an object this pool did not hand out or that is already idle
        (a double release).
        """
        if not self.give_back(resource):
            with self._lock:
                twice = any(r is resource for r in self._idle)
            what = "was released twice" if twice else "was not acquired from this pool"
            raise ValueError(f"release(resource): {resource!r} {what} ({self._name!r})")

    def give_back(self, resource: T) -> bool:
        key = id(resource)
        waiter = None
        doomed = False
        lock = self._lock
        lock.acquire()
        try:
            leased = self._leased
            if key not in leased:
                return False
            if self._closed:
                self._integrate()
                del leased[key]
                self._size -= 1
                doomed = True
            elif self._waiters:
                self._integrate()
                waiter = self._waiters.popitem(last=False)[0]
                waiter.state = _RESOURCE  # stays in _leased: it changes hands
                waiter.value = resource
            else:
                del leased[key]
                self._idle.append(resource)
                self._busy_shift -= self._clock() - self._t_last  # busy - 1
                return True
        finally:
            lock.release()
        if waiter is not None:
            self._ring(waiter)
        elif doomed:
            self._close_resource(resource)
        return True

    def _ring(self, waiter: _Waiter) -> None:
        """Wake a waiter whose outcome was decided under the lock (call without the lock)."""
        if isinstance(waiter, _ThreadWaiter):
            waiter.bell.release()
            return
        assert isinstance(waiter, _TaskWaiter)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is waiter.loop:
            _ring_future(waiter.bell)
            return
        try:
            waiter.loop.call_soon_threadsafe(_ring_future, waiter.bell)
        except RuntimeError:  # its loop is closed: nobody will collect the outcome
            self._abandon(waiter)

    # -- leases -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, timeout: float | timedelta | None = None) -> Iterator[T]:
        """``with pool.lease() as r:`` acquire, and release however the block ends."""
        resource = self.acquire(timeout)
        try:
            yield resource
        finally:
            self.release(resource)

    @contextlib.asynccontextmanager
    async def lease_async(self, timeout: float | timedelta | None = None) -> AsyncIterator[T]:
        """``async with pool.lease_async() as r:`` the async :meth:`lease`."""
        resource = await self.acquire_async(timeout)
        try:
            yield resource
        finally:
            self.release(resource)

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """A consistent snapshot of sizes and counters."""
        with self._lock:
            in_use = len(self._leased) + self._creating
            available = len(self._idle)
            # Immediate acquisitions are counted once, in ``immediate``, by the hot path.
            requests = self._requests + self.immediate.count
            return PoolStats(
                total=in_use + available,
                in_use=in_use,
                available=available,
                waiting=len(self._waiters),
                total_requests=requests,
                avg_wait_time=self._wait_sum / requests if requests else 0.0,
                scale_up_count=self._scaled_up,
                scale_down_count=self._scaled_down,
                cold_starts=self._cold_starts,
            )

    # -- autoscaling ------------------------------------------------------------------------

    def _integrate(self) -> float:
        """Fold the utilization areas up to now; call under the lock, *before* a change.

        Since ``_t_last`` the total has not changed and busy has changed only on the hot
        paths, each adding ``delta * (t - _t_last)`` to ``_busy_shift``; so the busy area is
        ``busy_now * dt - _busy_shift`` (integration by parts).
        """
        now = self._clock()
        dt = now - self._t_last
        if dt > 0:
            busy = len(self._leased) + self._creating + len(self._waiters)
            self._busy_area += busy * dt - self._busy_shift
            self._total_area += (self._size - self._warming) * dt
            self._t_last = now
            self._busy_shift = 0.0
        return now

    def check_and_scale(self) -> int:
        """One autoscaler step over the interval since the previous step.

        Returns the number of resources added (> 0) or retired (< 0). Runs every
        ``scale_interval`` seconds on its own; tests call it directly with a fake clock.
        """
        with self._lock:
            if self._closed:
                return 0
            now = self._integrate()
            if now > self._t_window and self._total_area > 0:
                util = self._busy_area / self._total_area
            else:  # an empty interval: the instant is all there is
                busy = len(self._leased) + self._creating + len(self._waiters)
                total = self._size - self._warming
                util = busy / total if total else float(busy > 0)
            self._t_window = now
            self._busy_area = self._total_area = 0.0
            delta = _decide(
                util, self._size, len(self._idle), self._min, self._max, self._up, self._down
            )
            grow = retired = 0
            victims: list[T] = []
            if delta > 0:
                grow = min(delta, self._max - self._size)
                self._size += grow
                self._warming += grow
            elif delta < 0:
                retired = min(-delta, len(self._idle), self._size - self._min)
                # The least recently used sit at the bottom of the LIFO stack.
                victims = self._idle[:retired]
                del self._idle[:retired]
                self._size -= retired
                self._scaled_down += retired
        if retired:
            for resource in victims:
                self._close_resource(resource)
            self._notify_scaled("down", retired)
            return -retired
        if grow:
            added = self._prewarm(grow)
            if added:
                self._notify_scaled("up", added)
            return added
        return 0

    def _prewarm(self, reserved: int) -> int:
        """Create ``reserved`` resources into slots reserved by ``check_and_scale``."""
        added = 0
        try:
            while reserved:
                if self._closed:
                    break
                resource = self._factory()
                reserved -= 1
                if self._file_warm(resource):
                    added += 1
        except Exception:
            logger.exception("pool %r: factory failed while pre-warming", self._name)
        finally:
            if reserved:
                self._drop_warm(reserved)
        return added

    def _file_warm(self, resource: T) -> bool:
        waiter = None
        with self._lock:
            self._integrate()
            self._warming -= 1
            duplicate = self._holds(resource)
            doomed = self._closed and not duplicate
            if duplicate or doomed:
                self._size -= 1
            elif self._waiters:
                waiter = self._waiters.popitem(last=False)[0]
                waiter.state = _RESOURCE
                waiter.value = resource
                self._leased[id(resource)] = resource
                self._scaled_up += 1
            else:
                self._idle.append(resource)
                self._scaled_up += 1
        if waiter is not None:
            self._ring(waiter)
            return True
        if duplicate:
            logger.error("pool %r: factory returned an object already in the pool", self._name)
            return False
        if doomed:
            self._close_resource(resource)
            return False
        return True

    def _drop_warm(self, count: int) -> None:
        waiters: list[_Waiter] = []
        with self._lock:
            self._integrate()
            for _ in range(count):
                self._warming -= 1
                self._creating += 1  # as if a caller had reserved it, then give it back
                waiter = self._pass_slot()
                if waiter is not None:
                    waiters.append(waiter)
        for waiter in waiters:
            self._ring(waiter)

    def _ensure_autoscaler(self) -> None:
        with self._lock:
            if not self._need_thread:
                return
            self._need_thread = False
            if self._closed:
                return
            stop = threading.Event()
            self._stop = stop
        thread = threading.Thread(
            target=_autoscale,
            args=(weakref.ref(self), stop, self._interval),
            name=f"switchgear-pool-{self._name}",
            daemon=True,
        )
        weakref.finalize(self, stop.set)  # an abandoned pool stops its thread promptly
        thread.start()
        self._thread = thread

    def _after_fork(self) -> None:
        # In a forked child only the forking thread exists: a lock another thread held stays
        # held forever, that thread's waiters never wake, and the autoscaler is gone.
        self._lock = threading.Lock()
        for waiter in [w for w in self._waiters if isinstance(w, _ThreadWaiter)]:
            del self._waiters[waiter]
        self._thread = None
        self._stop = None
        self._need_thread = not self._closed

    # -- observers --------------------------------------------------------------------------

    def add_observer(self, observer: PoolObserver) -> None:
        """Report acquisitions that waited or created, and autoscaler actions, to ``observer``.

        Immediate acquisitions are only counted (``immediate``) unless the observer's
        ``every_acquire`` is true; call :meth:`observers_changed` when that flag changes.
        """
        with self._lock:
            if not any(o is observer for o in self._observers):
                self._observers = (*self._observers, observer)
        self.observers_changed()

    def observers_changed(self) -> None:
        with self._lock:
            self._every = tuple(o for o in self._observers if o.every_acquire)

    def _notify(
        self, observers: tuple[PoolObserver, ...], event: Callable[[PoolObserver], None]
    ) -> None:
        """Call ``event(observer)`` for each one; a failing observer is logged, not raised."""
        for observer in observers:
            try:
                event(observer)
            except Exception:
                logger.exception("pool %r: observer %r failed", self._name, observer)

    def _notify_immediate(self) -> None:
        name = self._name
        self._notify(self._every, lambda o: o.pool_acquired_immediately(name))

    def _notify_acquired(self, wait: float, cold: bool) -> None:
        name = self._name
        self._notify(self._observers, lambda o: o.pool_acquired(name, wait, cold))

    def _notify_scaled(self, direction: Literal["up", "down"], count: int) -> None:
        name = self._name
        self._notify(self._observers, lambda o: o.pool_scaled(name, direction, count))

    # -- closing ----------------------------------------------------------------------------

    def _close_resource(self, resource: T) -> None:
        try:
            if self._closer is not None:
                self._closer(resource)
            else:
                close = getattr(resource, "close", None)
                if callable(close):
                    close()
        except Exception:
            logger.exception("pool %r: closing %r failed", self._name, resource)

    def close(self) -> None:
        """Close idle resources now and leased ones when released; wake waiters. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._integrate()
            self._closed = True
            self._need_thread = False
            idle, self._idle = self._idle, []
            self._size -= len(idle)
            waiters = list(self._waiters)
            self._waiters.clear()
            for waiter in waiters:
                waiter.state = _ERROR
                waiter.value = PoolClosedError(self._name)
            stop = self._stop
        if stop is not None:
            stop.set()
        _live_pools.discard(self)
        for waiter in waiters:
            self._ring(waiter)
        for resource in idle:
            self._close_resource(resource)

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread, so slow close callbacks do not stall the loop."""
        await asyncio.to_thread(self.close)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    def __enter__(self) -> DynamicPool[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> DynamicPool[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        if not hasattr(self, "_lock"):  # __init__ rejected its arguments
            return f"<DynamicPool {getattr(self, '_name', '?')!r} (not constructed)>"
        s = self.stats()
        state = " closed" if self._closed else ""
        return (
            f"<DynamicPool {self._name!r} total={s.total} in_use={s.in_use} "
            f"waiting={s.waiting} min={self._min} max={self._max}{state}>"
        )

"""DynamicPool: a bounded pool of resources with cold starts, fair waiting and an autoscaler.

The public class and its acquire/release paths. The state and the steps shared with the
other parts live in :mod:`.core` (with the invariants they keep); cold starts in
:mod:`.creation`; the autoscaler in :mod:`.autoscaler`, deciding by the pure :mod:`.policy`.

* A waiter's outcome (a resource, a reserved slot to create into, or an error) is decided
  under the lock; the thread lock or asyncio future it sleeps on is only the doorbell. So a
  waiter that times out or is cancelled looks at its outcome under the lock and gives back
  whatever it was handed: nothing leaks.
* Async waiters sleep on an ``asyncio.Future`` of their own loop, rung with
  ``call_soon_threadsafe`` from other threads: the event loop never blocks on the pool.
* Idle resources are reused LIFO, so under light load the same few stay warm and the rest sit
  idle long enough for the autoscaler to retire them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from .. import _validate as v
from .._errors import PoolClosedError, PoolFullError, PoolTimeoutError
from .._fork import forget, repair_in_child
from .autoscaler import Autoscaler, scale_step
from .bound import Bound, BoundLeases, bound_leases
from .core import PoolCore
from .creation import create_off_loop, create_within
from .observer import PoolObserver, Tally
from .values import PoolStats, Slot
from .waiters import (
    CREATE,
    ERROR,
    GONE,
    PENDING,
    RESOURCE,
    TaskWaiter,
    ThreadWaiter,
    Waiter,
    WaiterState,
    ring_future,
)

__all__ = ["DynamicPool", "PoolStats", "Slot"]

T = TypeVar("T")

MISSING: Any = object()

_TIMEOUT_MAX = threading.TIMEOUT_MAX  # Lock.acquire overflows beyond it


#: How long ``acquire`` waits at ``max_size`` unless told otherwise (``None``: forever).
DEFAULT_ACQUIRE_TIMEOUT = 30.0


class DynamicPool(Generic[T]):
    """A pool of resources made by ``factory``, between ``min_size`` and ``max_size`` of them.

    ``acquire`` takes an idle resource (the most recently used one), creates one if none is
    idle and the pool is below ``max_size`` (a *cold start*), and otherwise waits in line,
    bounded by ``acquire_timeout`` (30 s unless given; ``None`` waits forever) and
    ``max_waiting``. ``name`` is required: it labels the pool's series, and two pools with
    one name would report as one. Every ``scale_interval`` seconds an
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
        name: str,
        min_size: int = 2,
        max_size: int = 16,
        scale_up_threshold: float = 0.8,
        scale_down_threshold: float = 0.3,
        scale_interval: float | timedelta = 10.0,
        acquire_timeout: float | timedelta | None = DEFAULT_ACQUIRE_TIMEOUT,
        max_waiting: int | None = None,
        limit: Bound | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None: ...

    @overload
    def __init__(
        self,
        factory: Callable[[], T],
        *,
        close: Callable[[T], object] | None = None,
        name: str,
        min_size: int = 2,
        max_size: int = 16,
        scale_up_threshold: float = 0.8,
        scale_down_threshold: float = 0.3,
        scale_interval: float | timedelta = 10.0,
        acquire_timeout: float | timedelta | None = DEFAULT_ACQUIRE_TIMEOUT,
        max_waiting: int | None = None,
        limit: Bound | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None: ...

    def __init__(
        self,
        factory: Callable[[], Any] | None = None,
        *,
        close: Callable[[Any], object] | None = None,
        name: str,
        min_size: int = 2,
        max_size: int = 16,
        scale_up_threshold: float = 0.8,
        scale_down_threshold: float = 0.3,
        scale_interval: float | timedelta = 10.0,
        acquire_timeout: float | timedelta | None = DEFAULT_ACQUIRE_TIMEOUT,
        max_waiting: int | None = None,
        limit: Bound | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Plain slots are made at once; a real factory may take long or hang, so a caller
        # with a timeout waits for it on another thread (see creation.create_within).
        instant = factory is None
        if factory is None:
            numbers = itertools.count(1)

            def factory() -> Any:
                return Slot(next(numbers))

        checked: Callable[[], T] = v.callable_("factory", factory)
        if inspect.iscoroutinefunction(factory) or inspect.iscoroutinefunction(
            getattr(factory, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            # Its "resource" would be an un-awaited coroutine; acquire() and the autoscaler
            # create resources on threads, with no event loop to run it.
            raise TypeError(
                "factory must be a plain callable returning the resource, not an async one "
                "(create it with asyncio.run_coroutine_threadsafe on your loop, if it must be)"
            )
        closer = v.optional_callable("close", close)
        self._bound = bound_leases(limit)
        self._name = v.name("name", name)
        low = v.integer("min_size", min_size, minimum=0)
        high = v.integer("max_size", max_size, minimum=1)
        if low > high:
            raise ValueError(f"min_size ({low}) must be <= max_size ({high})")
        up = v.ratio("scale_up_threshold", scale_up_threshold)
        down = v.ratio("scale_down_threshold", scale_down_threshold)
        if down >= up:
            raise ValueError(
                f"scale_down_threshold ({down}) must be below scale_up_threshold ({up})"
            )
        interval = v.seconds("scale_interval", scale_interval)
        self._acquire_timeout = v.optional_seconds("acquire_timeout", acquire_timeout)
        self._max_waiting = (
            None if max_waiting is None else v.integer("max_waiting", max_waiting, minimum=0)
        )
        core = PoolCore(checked, closer, self._name, (low, high, up, down), v.clock(clock), instant)
        self._core = core
        # give_back(resource) -> bool: release() returning False, not raising, for a resource
        # not leased; the core's own method, so the return every request makes pays no wrapper.
        self.give_back: Callable[[T], bool] = core.give_back
        self._release: Callable[[T, bool], bool] | None = None  # unbounded: give_back itself
        if isinstance(self._bound, BoundLeases):  # its take and returns replace the plain ones
            paths = self._bound.paths(self.take, core.give_back, MISSING)
            self.take, self._release, self.give_back = paths  # type: ignore[method-assign]
        self._autoscaler = Autoscaler(interval)

        created: list[T] = []
        try:
            for _ in range(low):
                resource = checked()
                if any(r is resource for r in created):
                    raise ValueError("factory returned the same object twice")
                created.append(resource)
        except BaseException:
            for resource in created:
                core.close_resource(resource)
            raise
        core.idle = created
        core.size = len(created)
        repair_in_child(self, DynamicPool._after_fork)
        self._autoscaler.ensure(self, core)

    # -- read-only configuration ------------------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name: the ``pool`` label of its metrics."""
        return self._name

    @property
    def min_size(self) -> int:
        """Resources kept even when idle (created up front)."""
        return self._core.min

    @property
    def max_size(self) -> int:
        """The most resources that ever exist at once."""
        return self._core.max

    @property
    def limit(self) -> Bound | None:
        """The concurrency limit that bounds the resources handed out, if any."""
        return self._bound.limit

    @property
    def immediate(self) -> Tally:
        """Acquisitions served at once by an idle resource (read by observers when scraped)."""
        return self._core.immediate

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
        core = self._core
        if core.need_thread:
            self._autoscaler.ensure(self, core)
        # acquire/release rather than ``with``: half the cost, on the path every call takes.
        lock = core.lock
        lock.acquire()
        try:
            idle = core.idle
            if not idle:
                return MISSING
            resource = idle.pop()
            core.leased[id(resource)] = resource
            core.busy_shift += core.clock() - core.t_last  # busy + 1, see PoolCore.integrate
            core.immediate.count += 1
        finally:
            lock.release()
        if core.every:
            core.notify_immediate()
        return resource

    def _acquire_slow(self, timeout: float | None) -> tuple[T, bool, float]:
        core = self._core
        limit = self._acquire_timeout if timeout is None else timeout
        start = core.clock()
        bound = self._bound
        bound.admit()
        try:
            with core.lock:
                kind, value = self._admit(limit, None)
            if kind is PENDING:
                kind, value = self._wait_thread(value, limit)
            cold = kind is CREATE
            if cold:
                value = create_within(core, limit, start)
        except BaseException:
            self._account(start)
            bound.cancel()
            raise
        return self._acquired(value, cold, start)

    async def _acquire_slow_async(self, timeout: float | None) -> tuple[T, bool, float]:
        core = self._core
        limit = self._acquire_timeout if timeout is None else timeout
        start = core.clock()
        loop = asyncio.get_running_loop()
        bound = self._bound
        bound.admit()
        try:
            with core.lock:
                kind, value = self._admit(limit, loop)
            if kind is PENDING:
                kind, value = await self._wait_task(value, limit)
            cold = kind is CREATE
            if cold:
                value = await create_off_loop(core, limit, start, loop)
        except BaseException:
            self._account(start)
            bound.cancel()
            raise
        return self._acquired(value, cold, start)

    def _admit(
        self, limit: float | None, loop: asyncio.AbstractEventLoop | None
    ) -> tuple[WaiterState, Any]:
        """Under the lock: an idle resource, a reserved slot, or a queued waiter."""
        core = self._core
        if core.closed:
            raise PoolClosedError(self._name)
        core.integrate()
        if core.idle:
            resource = core.idle.pop()
            core.leased[id(resource)] = resource
            return RESOURCE, resource
        if core.size < core.max:
            core.size += 1
            core.creating += 1
            return CREATE, None
        waiting = len(core.waiters)
        if self._max_waiting is not None and waiting >= self._max_waiting:
            raise PoolFullError(self._name, waiting)
        if limit == 0:
            raise PoolTimeoutError(self._name, 0.0)
        waiter = ThreadWaiter() if loop is None else TaskWaiter(loop)
        core.waiters[waiter] = None
        return PENDING, waiter

    def _wait_thread(self, waiter: ThreadWaiter, limit: float | None) -> tuple[WaiterState, Any]:
        core = self._core
        try:
            rung = waiter.bell.acquire(True, -1 if limit is None else min(limit, _TIMEOUT_MAX))
        except BaseException:  # KeyboardInterrupt while waiting
            core.abandon(waiter)
            raise
        if not rung:
            with core.lock:
                if waiter.state is PENDING:
                    core.integrate()
                    del core.waiters[waiter]
                    waiter.state = GONE
            if waiter.state is GONE:
                assert limit is not None
                raise PoolTimeoutError(self._name, limit)
            # Handed something just as time ran out: take it.
        return self._outcome(waiter)

    async def _wait_task(self, waiter: TaskWaiter, limit: float | None) -> tuple[WaiterState, Any]:
        timer = None
        if limit is not None:
            timer = waiter.loop.call_later(limit, self._expire, waiter, limit)
        try:
            await waiter.bell
        except BaseException:  # cancelled: give back whatever we were handed meanwhile
            self._core.abandon(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return self._outcome(waiter)

    def _expire(self, waiter: TaskWaiter, limit: float) -> None:
        core = self._core
        with core.lock:
            if waiter.state is not PENDING:
                return
            core.integrate()
            del core.waiters[waiter]
            waiter.state = ERROR
            waiter.value = PoolTimeoutError(self._name, limit)
        ring_future(waiter.bell)

    @staticmethod
    def _outcome(waiter: Waiter) -> tuple[WaiterState, Any]:
        if waiter.state is ERROR:
            error: BaseException = waiter.value
            raise error
        return waiter.state, waiter.value

    def _acquired(self, resource: T, cold: bool, start: float) -> tuple[T, bool, float]:
        waited = self._account(start)
        self._bound.leased(resource)
        core = self._core
        if core.observers:
            core.notify_acquired(waited, cold)
        return resource, cold, waited

    def _account(self, start: float) -> float:
        core = self._core
        with core.lock:
            waited = max(0.0, core.clock() - start)
            core.requests += 1
            core.wait_sum += waited
        return waited

    # -- release ----------------------------------------------------------------------------

    def release(self, resource: T, *, failed: bool = False) -> None:
        """Give ``resource`` back; it goes to the oldest waiter, or idle, or closed if closed.

        ``failed``: its use failed (a pool with a ``limit`` tells the limit, which lowers
        itself on failures). Raises ``ValueError`` for an object this pool did not hand out or
        that is already idle (a double release).
        """
        release = self._release
        if not (self._core.give_back(resource) if release is None else release(resource, failed)):
            with self._core.lock:
                twice = any(r is resource for r in self._core.idle)
            what = "was released twice" if twice else "was not acquired from this pool"
            raise ValueError(f"release(resource): {resource!r} {what} ({self._name!r})")

    # -- leases -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, timeout: float | timedelta | None = None) -> Iterator[T]:
        """``with pool.lease() as r:`` acquire, and release however the block ends."""
        resource = self.acquire(timeout)
        failed = False
        try:
            yield resource
        except Exception:
            failed = True
            raise
        finally:
            self.release(resource, failed=failed)

    @contextlib.asynccontextmanager
    async def lease_async(self, timeout: float | timedelta | None = None) -> AsyncIterator[T]:
        """``async with pool.lease_async() as r:`` the async :meth:`lease`."""
        resource = await self.acquire_async(timeout)
        failed = False
        try:
            yield resource
        except Exception:
            failed = True
            raise
        finally:
            self.release(resource, failed=failed)

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """A consistent snapshot of sizes and counters."""
        core = self._core
        with core.lock:
            in_use = len(core.leased) + core.creating
            available = len(core.idle)
            # Immediate acquisitions are counted once, in ``immediate``, by the hot path.
            requests = core.requests + core.immediate.count
            return PoolStats(
                total=in_use + available,
                in_use=in_use,
                available=available,
                waiting=len(core.waiters),
                total_requests=requests,
                avg_wait_time=core.wait_sum / requests if requests else 0.0,
                scale_up_count=core.scaled_up,
                scale_down_count=core.scaled_down,
                cold_starts=core.cold_starts,
            )

    # -- autoscaling ------------------------------------------------------------------------

    def check_and_scale(self) -> int:
        """One autoscaler step over the interval since the previous step.

        Returns the number of resources added (> 0) or retired (< 0). Runs every
        ``scale_interval`` seconds on its own; tests call it directly with a fake clock.
        """
        return scale_step(self._core)

    def _after_fork(self) -> None:
        # In a forked child only the forking thread exists: a lock another thread held stays
        # held forever, that thread's waiters never wake, and the autoscaler is gone.
        core = self._core
        core.lock = threading.Lock()
        for waiter in [w for w in core.waiters if isinstance(w, ThreadWaiter)]:
            del core.waiters[waiter]
        self._autoscaler.forked()
        core.need_thread = not core.closed
        self._bound.forked()

    # -- observers --------------------------------------------------------------------------

    def add_observer(self, observer: PoolObserver) -> None:
        """Report acquisitions that waited or created, and autoscaler actions, to ``observer``.

        Immediate acquisitions are only counted (``immediate``) unless the observer's
        ``every_acquire`` is true; call :meth:`observers_changed` when that flag changes.
        """
        core = self._core
        with core.lock:
            if not any(o is observer for o in core.observers):
                core.observers = (*core.observers, observer)
        self.observers_changed()

    def observers_changed(self) -> None:
        """Re-read each observer's ``every_acquire``."""
        core = self._core
        with core.lock:
            core.every = tuple(o for o in core.observers if o.every_acquire)

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close idle resources now and leased ones when released; wake waiters. Idempotent."""
        core = self._core
        with core.lock:
            if core.closed:
                return
            core.integrate()
            core.closed = True
            core.need_thread = False
            idle, core.idle = core.idle, []
            core.size -= len(idle)
            waiters = list(core.waiters)
            core.waiters.clear()
            for waiter in waiters:
                waiter.state = ERROR
                waiter.value = PoolClosedError(self._name)
            stop = self._autoscaler.stop
        if stop is not None:
            stop.set()
        forget(self)
        for waiter in waiters:
            core.ring(waiter)
        for resource in idle:
            core.close_resource(resource)

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread, so slow close callbacks do not stall the loop."""
        await asyncio.to_thread(self.close)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._core.closed

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
        if not hasattr(self, "_core"):  # __init__ rejected its arguments
            return f"<DynamicPool {getattr(self, '_name', '?')!r} (not constructed)>"
        s = self.stats()
        state = " closed" if self._core.closed else ""
        return (
            f"<DynamicPool {self._name!r} total={s.total} in_use={s.in_use} "
            f"waiting={s.waiting} min={self.min_size} max={self.max_size}{state}>"
        )

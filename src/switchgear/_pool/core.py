"""The state a :class:`~switchgear.DynamicPool` keeps, and the locked steps its parts share.

The pool (``pool.py``), resource creation (``creation.py``) and the autoscaler
(``autoscaler.py``) all work on one :class:`PoolCore`, through its public-named members.
It is internal: the library's API is ``DynamicPool``.

Invariants (at every release of ``lock``):

* ``size == len(idle) + len(leased) + creating + warming``. A slot is *reserved* under the
  lock (``size``), the factory runs without it, and the result is filed (or the reservation
  given back) under the lock again: resources are never created or closed while it is held.
* Waiters queue in FIFO order; a released resource is *handed* to the oldest one under the
  lock, never passing through ``idle``, so nobody barges past a waiter and no wakeup is lost.
* Utilization is integrated by ``clock`` at every change of state (``integrate``), so the
  autoscaler sees an interval's average, not one instant. The two hot paths (take an idle
  resource, put one back) only note ``±(now - t_last)`` in ``busy_shift``, which
  ``integrate`` subtracts (integration by parts): they stay one lock, a list and a dict
  operation and a clock read.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from .observer import PoolObserver, Tally
from .waiters import CREATE, GONE, PENDING, RESOURCE, TaskWaiter, ThreadWaiter, Waiter, ring_future

__all__ = ["PoolCore", "logger"]

logger = logging.getLogger("switchgear")

T = TypeVar("T")

_NOT_LEASED: Any = object()


class PoolCore(Generic[T]):
    """Sizes, queues, counters and utilization areas of one pool, guarded by ``lock``."""

    __slots__ = (
        "__weakref__",
        "busy_area",
        "busy_shift",
        "clock",
        "closed",
        "closer",
        "cold_starts",
        "creating",
        "down",
        "every",
        "factory",
        "idle",
        "immediate",
        "instant",
        "late_failure_logged",
        "leased",
        "lock",
        "max",
        "min",
        "name",
        "need_thread",
        "observers",
        "requests",
        "scaled_down",
        "scaled_up",
        "size",
        "t_last",
        "t_window",
        "total_area",
        "up",
        "wait_sum",
        "waiters",
        "warming",
    )

    def __init__(
        self,
        factory: Callable[[], T],
        closer: Callable[[T], object] | None,
        name: str,
        limits: tuple[int, int, float, float],
        clock: Callable[[], float],
        instant: bool,
    ) -> None:
        self.factory = factory
        self.closer = closer
        self.name = name
        self.min, self.max, self.up, self.down = limits
        self.clock = clock
        self.instant = instant  # the factory makes plain slots: no need to bound its time
        self.lock = threading.Lock()
        self.idle: list[T] = []  # LIFO: pop() takes the most recently used
        self.leased: dict[int, T] = {}  # by id(): resources need not be hashable
        self.waiters: OrderedDict[Waiter, None] = OrderedDict()
        self.size = 0  # every resource alive or being created
        self.creating = 0  # being created for a caller (counted as in use)
        self.warming = 0  # being created by the autoscaler (not yet counted in total)
        self.closed = False
        self.need_thread = True  # the autoscaler thread is still to be started
        self.observers: tuple[PoolObserver, ...] = ()
        # Acquisitions served at once from an idle resource. Observers read this count when
        # they are scraped instead of hearing of each one: the hot path calls nobody. Only
        # observers that need each event (``every_acquire``) are in ``every``.
        self.immediate = Tally()
        self.every: tuple[PoolObserver, ...] = ()
        self.requests = 0  # finished acquire calls that did not find an idle resource
        self.wait_sum = 0.0
        self.cold_starts = 0
        self.scaled_up = 0
        self.scaled_down = 0
        now = clock()
        self.t_last = now  # utilization integrals run from t_window to t_last
        self.t_window = now
        self.busy_area = 0.0
        self.total_area = 0.0
        self.busy_shift = 0.0  # hot-path changes of busy since t_last, see integrate
        self.late_failure_logged = False

    # -- under the lock ---------------------------------------------------------------------

    def busy(self) -> int:
        """Callers that want a resource now: leased, being created for, or waiting."""
        return len(self.leased) + self.creating + len(self.waiters)

    def integrate(self) -> float:
        """Fold the utilization areas up to now; call under the lock, *before* a change.

        Since ``t_last`` the total has not changed and busy has changed only on the hot
        paths, each adding ``delta * (t - t_last)`` to ``busy_shift``; so the busy area is
        ``busy_now * dt - busy_shift`` (integration by parts).
        """
        now = self.clock()
        dt = now - self.t_last
        if dt > 0:
            self.busy_area += self.busy() * dt - self.busy_shift
            self.total_area += (self.size - self.warming) * dt
            self.t_last = now
            self.busy_shift = 0.0
        return now

    def pass_slot(self) -> Waiter | None:
        """Give back one reservation: to the oldest waiter (which creates into it), or drop it."""
        if self.waiters:
            waiter = self.waiters.popitem(last=False)[0]
            waiter.state = CREATE
            return waiter
        self.creating -= 1
        self.size -= 1
        return None

    def holds(self, resource: object) -> bool:
        return id(resource) in self.leased or any(r is resource for r in self.idle)

    # -- without the lock -------------------------------------------------------------------

    def unreserve(self) -> None:
        """Give back a slot reserved for creation: to the oldest waiter, else to the pool."""
        with self.lock:
            self.integrate()
            waiter = self.pass_slot()
        if waiter is not None:
            self.ring(waiter)

    def give_back(self, resource: T) -> bool:
        """Return a leased resource: to the oldest waiter, else idle (closed if the pool is).

        False if ``resource`` is not leased from this pool (foreign, or already back).
        """
        waiter = None
        # acquire/release rather than ``with``: cheaper, on the path every call takes.
        lock = self.lock
        lock.acquire()
        try:
            if not self.waiters and not self.closed:
                # Nobody waits: one pop both checks the lease and ends it.
                if self.leased.pop(id(resource), _NOT_LEASED) is _NOT_LEASED:
                    return False
                self.idle.append(resource)
                self.busy_shift -= self.clock() - self.t_last  # busy - 1, see integrate
                return True
            leased = self.leased
            key = id(resource)
            if key not in leased:
                return False
            self.integrate()
            if self.closed:
                del leased[key]
                self.size -= 1
            else:
                waiter = self.waiters.popitem(last=False)[0]
                waiter.state = RESOURCE  # stays in leased: it changes hands
                waiter.value = resource
        finally:
            lock.release()
        if waiter is not None:
            self.ring(waiter)
        else:
            self.close_resource(resource)
        return True

    def ring(self, waiter: Waiter) -> None:
        """Wake a waiter whose outcome was decided under the lock."""
        if isinstance(waiter, ThreadWaiter):
            waiter.bell.release()
            return
        assert isinstance(waiter, TaskWaiter)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is waiter.loop:
            ring_future(waiter.bell)
            return
        try:
            waiter.loop.call_soon_threadsafe(ring_future, waiter.bell)
        except RuntimeError:  # its loop is closed: nobody will collect the outcome
            self.abandon(waiter)

    def abandon(self, waiter: Waiter) -> None:
        """A waiter gave up: leave the queue, or pass on what it was handed."""
        with self.lock:
            state, value = waiter.state, waiter.value
            waiter.state = GONE
            if state is PENDING:
                self.integrate()
                del self.waiters[waiter]
        if state is RESOURCE:
            self.give_back(value)
        elif state is CREATE:
            self.unreserve()

    def close_resource(self, resource: T) -> None:
        """Close with ``closer``, else the resource's own ``close()``; failures are logged."""
        try:
            if self.closer is not None:
                self.closer(resource)
            else:
                close = getattr(resource, "close", None)
                if callable(close):
                    close()
        except Exception:
            logger.exception("pool %r: closing %r failed", self.name, resource)

    # -- observers (called without the lock) ------------------------------------------------

    def notify(
        self, observers: tuple[PoolObserver, ...], event: Callable[[PoolObserver], None]
    ) -> None:
        """Call ``event(observer)`` for each one; a failing observer is logged, not raised."""
        for observer in observers:
            try:
                event(observer)
            except Exception:
                logger.exception("pool %r: observer %r failed", self.name, observer)

    def notify_immediate(self) -> None:
        name = self.name
        self.notify(self.every, lambda o: o.pool_acquired_immediately(name))

    def notify_acquired(self, wait: float, cold: bool) -> None:
        name = self.name
        self.notify(self.observers, lambda o: o.pool_acquired(name, wait, cold))

    def notify_scaled(self, direction: Literal["up", "down"], count: int) -> None:
        name = self.name
        self.notify(self.observers, lambda o: o.pool_scaled(name, direction, count))

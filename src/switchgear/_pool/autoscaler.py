"""The autoscaler: a thread that steps the pool every ``scale_interval`` seconds.

Each step reads the interval's average utilization from the core's integrals, asks the pure
policy (:func:`~switchgear._pool.policy.decide`) how many resources to add or retire, and
carries that out: retiring under the lock, creating (pre-warming) without it.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, TypeVar

from .core import PoolCore, logger
from .policy import decide
from .waiters import RESOURCE, Waiter

__all__ = ["Autoscaler", "scale_step"]

T = TypeVar("T")


def scale_step(core: PoolCore[T]) -> int:
    """One step over the interval since the previous one: resources added (> 0) or retired."""
    with core.lock:
        if core.closed:
            return 0
        now = core.integrate()
        if now > core.t_window and core.total_area > 0:
            util = core.busy_area / core.total_area
        else:  # an empty interval: the instant is all there is
            busy = core.busy()
            total = core.size - core.warming
            util = busy / total if total else float(busy > 0)
        core.t_window = now
        core.busy_area = core.total_area = 0.0
        delta = decide(util, core.size, len(core.idle), core.min, core.max, core.up, core.down)
        grow = retired = 0
        victims: list[T] = []
        if delta > 0:
            grow = min(delta, core.max - core.size)
            core.size += grow
            core.warming += grow
        elif delta < 0:
            retired = min(-delta, len(core.idle), core.size - core.min)
            # The least recently used sit at the bottom of the LIFO stack.
            victims = core.idle[:retired]
            del core.idle[:retired]
            core.size -= retired
            core.scaled_down += retired
    if retired:
        for resource in victims:
            core.close_resource(resource)
        core.notify_scaled("down", retired)
        return -retired
    if grow:
        added = _prewarm(core, grow)
        if added:
            core.notify_scaled("up", added)
        return added
    return 0


def _prewarm(core: PoolCore[Any], reserved: int) -> int:
    """Create ``reserved`` resources into slots reserved by ``scale_step``."""
    added = 0
    try:
        while reserved:
            if core.closed:
                break
            resource = core.factory()
            reserved -= 1
            if _file_warm(core, resource):
                added += 1
    except Exception:
        logger.exception("pool %r: factory failed while pre-warming", core.name)
    finally:
        if reserved:
            _drop_warm(core, reserved)
    return added


def _file_warm(core: PoolCore[T], resource: T) -> bool:
    """File a pre-warmed resource: to the oldest waiter, else idle; False if not kept."""
    waiter = None
    with core.lock:
        core.integrate()
        core.warming -= 1
        duplicate = core.holds(resource)
        doomed = core.closed and not duplicate
        if duplicate or doomed:
            core.size -= 1
        elif core.waiters:
            waiter = core.waiters.popitem(last=False)[0]
            waiter.state = RESOURCE
            waiter.value = resource
            core.leased[id(resource)] = resource
            core.scaled_up += 1
        else:
            core.idle.append(resource)
            core.scaled_up += 1
    if waiter is not None:
        core.ring(waiter)
        return True
    if duplicate:
        logger.error("pool %r: factory returned an object already in the pool", core.name)
        return False
    if doomed:
        core.close_resource(resource)
        return False
    return True


def _drop_warm(core: PoolCore[Any], count: int) -> None:
    """Give back ``count`` pre-warm reservations that were not filled."""
    waiters: list[Waiter] = []
    with core.lock:
        core.integrate()
        for _ in range(count):
            core.warming -= 1
            core.creating += 1  # as if a caller had reserved it, then give it back
            waiter = core.pass_slot()
            if waiter is not None:
                waiters.append(waiter)
    for waiter in waiters:
        core.ring(waiter)


def _run(ref: weakref.ref[PoolCore[Any]], stop: threading.Event, interval: float) -> None:
    # Holds the core only while stepping it, so an abandoned pool can be collected.
    while not stop.wait(interval):
        core = ref()
        if core is None:
            return
        try:
            scale_step(core)
        except Exception:
            logger.exception("pool %r: autoscaler step failed", core.name)
        finally:
            del core


class Autoscaler:
    """The autoscaler thread of one pool: started once, stopped when the pool closes."""

    __slots__ = ("interval", "stop", "thread")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stop: threading.Event | None = None  # set under the core's lock
        self.thread: threading.Thread | None = None

    def ensure(self, owner: object, core: PoolCore[Any]) -> None:
        """Start the thread unless it runs or the pool is closed; stops when ``owner`` dies."""
        with core.lock:
            if not core.need_thread:
                return
            core.need_thread = False
            if core.closed:
                return
            stop = threading.Event()
            self.stop = stop
        thread = threading.Thread(
            target=_run,
            args=(weakref.ref(core), stop, self.interval),
            name=f"switchgear-pool-{core.name}",
            daemon=True,
        )
        weakref.finalize(owner, stop.set)  # an abandoned pool stops its thread promptly
        thread.start()
        self.thread = thread

    def forked(self) -> None:
        """In a forked child: the thread is gone (the pool starts another when next used)."""
        self.thread = None
        self.stop = None

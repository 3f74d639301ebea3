"""Concurrent scrapes share one rendering, and renderings start at most every ``interval``.

Rendering ``/metrics`` costs milliseconds of CPU (and, in multiprocess mode, reading every
worker's files). Thirty-two scrapers hitting it at once would otherwise render it thirty-two
times over and starve the application of CPU. Through the gate:

* a scrape is always answered by a rendering that *started after it arrived*, so a
  response never predates the request (a call is visible once its response was sent);
* scrapes that arrive while a rendering is under way wait for the next one and share it;
* consecutive renderings of one format start at least ``interval`` seconds apart, so a
  scrape may wait up to ``interval`` plus one rendering, and the gate renders at most
  ``1 / interval`` times a second whatever the number of scrapers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["RenderGate"]

T = TypeVar("T")


class _Slot(Generic[T]):
    __slots__ = ("error", "finished", "last_start", "result", "running", "started")

    def __init__(self) -> None:
        self.started = 0  # renderings begun
        self.finished = 0  # the latest rendering done (its number)
        self.running = False
        self.last_start = float("-inf")
        self.result: T | None = None
        self.error: BaseException | None = None


class RenderGate(Generic[T]):
    """Share renderings among concurrent callers (see the module docstring)."""

    def __init__(self, interval: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._cond = threading.Condition()
        self._slots: dict[str, _Slot[T]] = {}
        self.renderings = 0  # renderings made so far (all keys)

    def forked(self) -> None:
        """In a forked child: a fresh lock, and no rendering under way (its thread is gone)."""
        self._cond = threading.Condition()
        for slot in self._slots.values():
            slot.running = False
            slot.finished = slot.started

    def render(self, key: str, fn: Callable[[], T]) -> T:
        """``fn()``'s result from a rendering of ``key`` that started after this call."""
        cond = self._cond
        with cond:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
            wanted = slot.started + 1  # the first rendering to start from now on
            while slot.finished < wanted:
                if slot.running:
                    cond.wait()
                    continue
                delay = slot.last_start + self.interval - self._clock()
                if delay > 0:
                    cond.wait(delay)
                    continue
                return self._run(slot, fn)
            if slot.error is not None:
                raise slot.error
            result: T = slot.result  # type: ignore[assignment]
            return result

    def _run(self, slot: _Slot[T], fn: Callable[[], T]) -> T:
        """Render for everyone waiting on ``slot`` (called and returning with the lock held)."""
        cond = self._cond
        slot.running = True
        slot.started += 1
        number = slot.started
        slot.last_start = self._clock()
        cond.release()
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:
            error = exc
        finally:
            cond.acquire()
            slot.running = False
            slot.finished = number
            slot.result, slot.error = result, error
            self.renderings += 1
            cond.notify_all()
        if error is not None:
            raise error
        return result  # type: ignore[return-value]

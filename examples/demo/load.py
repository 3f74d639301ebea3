"""Traffic for the demo service: closed-loop workers per route, counted per outcome.

Each worker requests its route, waits ``pause`` seconds and requests again; the number of
workers per route can change at any time (``set_workers``). Responses are tallied as
``ok`` (2xx), ``failed`` (5xx from the app), ``rejected`` (``503`` with ``Retry-After``
from an open breaker, ``429`` from a full pool) and ``errors`` (no response: the server is
down or restarting). Connection errors never stop a worker.

:class:`BackgroundLoad` runs a driver on its own event loop in a thread, for callers that
are not async (the live contract test).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields

import httpx

__all__ = ["ROUTES", "BackgroundLoad", "LoadDriver", "Tally"]

#: Route key -> a function giving the path of the n-th request.
ROUTES: dict[str, Callable[[int], str]] = {
    "payments": lambda n: "/payments/charge",
    "inventory": lambda n: f"/inventory/sku-{n % 50}",
}


@dataclass
class Tally:
    """Responses by kind since the last :meth:`LoadDriver.take`."""

    ok: int = 0
    failed: int = 0
    rejected: int = 0
    errors: int = 0

    @property
    def total(self) -> int:
        return self.ok + self.failed + self.rejected + self.errors

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class LoadDriver:
    """Closed-loop load on the demo routes through one ``httpx.AsyncClient``."""

    def __init__(self, client: httpx.AsyncClient, *, pause: float = 0.02) -> None:
        self.client = client
        self.pause = pause
        self._workers: dict[str, list[asyncio.Task[None]]] = {route: [] for route in ROUTES}
        self._tally = {route: Tally() for route in ROUTES}
        self._numbers = itertools.count()

    def workers(self, route: str) -> int:
        return len(self._workers[route])

    def set_workers(self, route: str, count: int) -> None:
        """Run exactly ``count`` workers on ``route`` (starting or cancelling some)."""
        tasks = self._workers[route]
        while len(tasks) < count:
            tasks.append(asyncio.create_task(self._work(route), name=f"load-{route}"))
        while len(tasks) > count:
            tasks.pop().cancel()

    def take(self) -> dict[str, Tally]:
        """The tallies since the previous call, per route (and reset them)."""
        taken = self._tally
        self._tally = {route: Tally() for route in ROUTES}
        return taken

    async def stop(self) -> None:
        tasks = [t for ts in self._workers.values() for t in ts]
        for ts in self._workers.values():
            ts.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self, route: str) -> None:
        path_for = ROUTES[route]
        while True:
            path = path_for(next(self._numbers))
            try:
                response = await self.client.get(path)
            except httpx.TransportError:
                self._tally[route].errors += 1
                await asyncio.sleep(0.2)  # the server is down: do not spin
                continue
            tally = self._tally[route]
            code = response.status_code
            if code < 400:
                tally.ok += 1
            elif code == 429 or (code == 503 and "retry-after" in response.headers):
                tally.rejected += 1
            else:
                tally.failed += 1
            await asyncio.sleep(self.pause)


class BackgroundLoad:
    """A :class:`LoadDriver` on its own thread and event loop (``with BackgroundLoad(...):``)."""

    def __init__(self, base_url: str, workers: dict[str, int], *, pause: float = 0.02) -> None:
        self.base_url = base_url
        self.pause = pause
        self._initial = dict(workers)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._done: asyncio.Event | None = None
        self._driver: LoadDriver | None = None
        self._totals = {route: Tally() for route in ROUTES}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="demo-load", daemon=True)

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the load thread did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_workers(self, route: str, count: int) -> None:
        driver = self._driver
        if driver is not None:
            self._loop.call_soon_threadsafe(driver.set_workers, route, count)

    def totals(self) -> dict[str, Tally]:
        """Responses per route since the start."""
        fut = asyncio.run_coroutine_threadsafe(self._collect(), self._loop)
        fut.result(timeout=10)
        with self._lock:
            return {route: Tally(**vars(t)) for route, t in self._totals.items()}

    def stop(self) -> None:
        done = self._done
        if done is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(done.set)
        self._thread.join(timeout=15)

    async def _collect(self) -> None:
        if self._driver is not None:
            taken = self._driver.take()
            with self._lock:
                for route, tally in taken.items():
                    self._totals[route].add(tally)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._done = asyncio.Event()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5.0, limits=limits) as client:
            self._driver = LoadDriver(client, pause=self.pause)
            for route, count in self._initial.items():
                self._driver.set_workers(route, count)
            self._ready.set()
            await self._done.wait()
            await self._driver.stop()
            await self._collect()

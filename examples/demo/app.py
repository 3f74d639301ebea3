"""The demo service: a small shop API behind :class:`switchgear.ASGIMiddleware`.

Routes (every one has its own breaker and metrics, keyed by its route template):

* ``GET /payments/charge`` calls a payment gateway. While ``Faults.payments_failing`` is set
  the gateway answers ``502``: five in a row trip the route's breaker, which then answers
  ``503`` with ``Retry-After`` without calling the app, probes after ``open_timeout`` and
  closes once the gateway is back. Its requests also go through an adaptive limit
  (``payments-gateway``) that follows the gateway's latency and failures.
* ``GET /inventory/{sku}`` runs a query on a simulated database connection leased from a
  :class:`switchgear.DynamicPool` (``inventory-db``, 2 to 8 connections, autoscaled every
  second). ``Faults.inventory_latency`` is how long a query holds its connection. When no
  connection frees up within ``acquire_timeout`` the route answers ``429``.
* ``GET /admin/faults`` shows the fault controls and ``POST /admin/faults`` (a JSON object
  with any of ``payments_failing``, ``inventory_latency``) changes them: that is how tests
  and operators inject faults into a running server. Not counted in the metrics.
* ``/metrics`` (Prometheus text) and ``/switchgear`` (JSON) are served by the
  middleware.

Run it with the scripted scenario: ``python -m examples.demo``; or on its own:
``uvicorn --factory examples.demo.app:create_app --port 8000``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import switchgear as sg
from switchgear.asgi import ASGIMiddleware

__all__ = [
    "INVENTORY_POOL",
    "INVENTORY_ROUTE",
    "METRICS_PATH",
    "PAYMENTS_LIMIT",
    "PAYMENTS_ROUTE",
    "STATUS_PATH",
    "DemoService",
    "Faults",
    "SimulatedConnection",
    "create_app",
]

METRICS_PATH = "/metrics"
STATUS_PATH = "/switchgear"  # the middleware's default
#: The middleware's keys (and ``name`` labels) of the two routes.
PAYMENTS_ROUTE = "GET /payments/charge"
INVENTORY_ROUTE = "GET /inventory/{sku}"
#: The pool's name (its ``pool`` label) and the name of the protected query.
INVENTORY_POOL = "inventory-db"
#: The adaptive limit of the payment route's calls in flight (its ``name`` label).
PAYMENTS_LIMIT = "payments-gateway"

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


@dataclass
class Faults:
    """What is wrong with the service's dependencies right now (changed at run time)."""

    #: The payment gateway answers 502 to every charge.
    payments_failing: bool = False
    #: Seconds one inventory query holds its database connection.
    inventory_latency: float = 0.03

    def update(self, changes: object) -> None:
        """Apply a JSON object of changes; raise ``ValueError`` naming a bad field."""
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object")
        unknown = set(changes) - {"payments_failing", "inventory_latency"}
        if unknown:
            raise ValueError(f"unknown fault {min(unknown)!r}")
        failing = changes.get("payments_failing", self.payments_failing)
        if not isinstance(failing, bool):
            raise ValueError("payments_failing must be true or false")
        latency = changes.get("inventory_latency", self.inventory_latency)
        if (
            not isinstance(latency, (int, float))
            or isinstance(latency, bool)
            or not math.isfinite(latency)
            or not 0 <= latency <= 30
        ):
            raise ValueError("inventory_latency must be a number of seconds in [0, 30]")
        self.payments_failing = failing
        self.inventory_latency = float(latency)


class SimulatedConnection:
    """A database connection that only sleeps; numbered so the pool's churn is visible."""

    _numbers = itertools.count(1)

    def __init__(self) -> None:
        self.number = next(self._numbers)
        self.closed = False

    async def query(self, sku: str, latency: float) -> dict[str, Any]:
        if self.closed:
            raise RuntimeError("connection closed")
        await asyncio.sleep(latency)
        return {"sku": sku, "in_stock": sum(map(ord, sku)) % 17, "connection": self.number}

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"<SimulatedConnection #{self.number}>"


class DemoService:
    """The app, its fault controls and its pool; one per process.

    ``open_timeout`` is the breakers' seconds in OPEN before a trial call; the pool's
    autoscaler runs every ``scale_interval`` seconds. ``app`` is what a server runs.
    """

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        open_timeout: float = 3.0,
        scale_interval: float = 1.0,
        acquire_timeout: float = 1.0,
    ) -> None:
        self.faults = faults if faults is not None else Faults()
        self.pool: sg.DynamicPool[SimulatedConnection] = sg.DynamicPool(
            SimulatedConnection,
            name=INVENTORY_POOL,
            min_size=2,
            max_size=8,
            scale_up_threshold=0.75,
            scale_down_threshold=0.3,
            scale_interval=scale_interval,
            acquire_timeout=acquire_timeout,
            max_waiting=64,
        )
        self.query = sg.protected(INVENTORY_POOL, pool=self.pool, resource_arg="conn")(self._query)
        self.payments_limit = sg.AdaptiveLimit(
            PAYMENTS_LIMIT, initial_limit=16, min_limit=4, max_limit=64
        )
        inner = Starlette(
            routes=[
                Route("/payments/charge", self.charge),
                Route("/inventory/{sku}", self.inventory),
                Route("/admin/faults", self.admin_faults, methods=["GET", "POST"]),
            ],
            lifespan=self._lifespan,
        )
        self.middleware = ASGIMiddleware(
            inner,
            metrics_path=METRICS_PATH,
            status_path=STATUS_PATH,
            breaker_options={
                "failure_threshold": 5,
                "success_threshold": 2,
                "open_timeout": open_timeout,
            },
            exclude_paths=("/admin/*",),
            # The gateway's calls in flight follow its latency and failures (a few shoppers
            # never reach the limit; failing charges lower it).
            route_limits={PAYMENTS_ROUTE: self.payments_limit},
        )
        self.app: ASGIApp = self.middleware

    def breaker(self, key: str) -> sg.CircuitBreaker | None:
        """The middleware's breaker for a route key, once the route has been requested."""
        return self.middleware.breakers().get(key)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.pool.aclose()

    # -- dependencies --------------------------------------------------------------------------

    async def _query(self, sku: str, *, conn: SimulatedConnection | None = None) -> dict[str, Any]:
        if conn is None:  # never: @protected passes the leased connection as ``conn``
            raise RuntimeError("no connection leased")
        return await conn.query(sku, self.faults.inventory_latency)

    async def _gateway(self) -> bool:
        await asyncio.sleep(0.002)  # the network round trip
        return not self.faults.payments_failing

    # -- routes --------------------------------------------------------------------------------

    async def charge(self, request: Request) -> Response:
        if await self._gateway():
            return JSONResponse({"status": "charged"})
        return JSONResponse({"error": "payment gateway unavailable"}, status_code=502)

    async def inventory(self, request: Request) -> Response:
        try:
            row = await self.query(request.path_params["sku"])
        except (sg.PoolTimeoutError, sg.PoolFullError) as exc:
            # Load shedding, not a failure of this route: 429 is outside failure_status.
            return JSONResponse(
                {"error": exc.reason}, status_code=429, headers={"Retry-After": "1"}
            )
        except sg.CircuitOpenError as exc:
            return JSONResponse(
                {"error": exc.reason},
                status_code=503,
                headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
            )
        return JSONResponse(row)

    async def admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults.update(await request.json())
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(self.faults))


def create_app(
    *,
    faults: Faults | None = None,
    open_timeout: float = 3.0,
    scale_interval: float = 1.0,
    acquire_timeout: float = 1.0,
) -> ASGIApp:
    """The demo ASGI app (for ``uvicorn --factory examples.demo.app:create_app``).

    Keep ``faults`` to change them from the same process; from outside, use
    ``POST /admin/faults``.
    """
    return DemoService(
        faults=faults,
        open_timeout=open_timeout,
        scale_interval=scale_interval,
        acquire_timeout=acquire_timeout,
    ).app

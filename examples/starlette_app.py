"""A Starlette app: per-route breakers, a bulkhead, and a protected call with a fallback.

Run it::

    uvicorn examples.starlette_app:app --port 8000

* Every route has its own breaker and metrics (``GET /products/{sku}`` is one series, however
  many SKUs are requested).
* A bulkhead (``DynamicPool(None, ...)``) caps concurrent requests at 32, with at most 64
  waiting; beyond that the middleware answers ``429`` instead of queueing forever.
* ``recommendations()`` is protected on its own: when it fails or its breaker is open, the
  page still renders, with an empty list from the fallback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import switchgear as sg
from switchgear.asgi import ASGIMiddleware

# Stands in for a recommendation service; toggled by /admin/recommendations/{up|down}.
recommender = {"up": True}


def no_recommendations(exc: BaseException, sku: str) -> list[str]:
    """The fallback: called with the exception, then the protected call's arguments."""
    return []


@sg.protected(
    "recommendations",
    breaker=sg.CircuitBreaker("recommendations", failure_threshold=3, open_timeout=15.0),
    fallback=no_recommendations,
    timeout=0.5,  # async: cancelled after 0.5 s, and counted as a failure
)
async def recommendations(sku: str) -> list[str]:
    await asyncio.sleep(0.001)  # a network call in real life
    if not recommender["up"]:
        raise ConnectionError("recommendation service unreachable")
    return [f"{sku}-case", f"{sku}-charger"]


async def product(request: Request) -> Response:
    sku = request.path_params["sku"]
    return JSONResponse({"sku": sku, "see_also": await recommendations(sku)})


async def export(request: Request) -> Response:
    async def rows() -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0.05)
            yield f"row {i}\n".encode()

    # Latency is measured to the last chunk, not to the first byte.
    return StreamingResponse(rows(), media_type="text/csv")


async def admin(request: Request) -> Response:
    recommender["up"] = request.path_params["state"] == "up"
    return PlainTextResponse("recommendations " + ("up" if recommender["up"] else "down"))


bulkhead = sg.DynamicPool(
    None,  # no factory: plain slots, i.e. a concurrency limit
    name="starlette-example",
    min_size=0,
    max_size=32,
    max_waiting=64,
    acquire_timeout=2.0,
)

app = ASGIMiddleware(
    Starlette(
        routes=[
            Route("/products/{sku}", product),
            Route("/export", export),
            Route("/admin/recommendations/{state}", admin, methods=["POST"]),
        ]
    ),
    pool=bulkhead,
    pool_full_status=429,
    exclude_paths=("/admin/*",),
    endpoint_auth=os.environ.get("METRICS_TOKEN") or None,
)

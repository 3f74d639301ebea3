"""A FastAPI app with a circuit breaker and metrics on every route.

Run it::

    uvicorn examples.fastapi_app:app --port 8000

then try::

    curl localhost:8000/items/42
    curl localhost:8000/metrics              # Prometheus text format
    curl localhost:8000/switchgear           # JSON status, per route
    curl -X POST localhost:8000/admin/reports/down
    curl -i localhost:8000/reports/daily     # 502 three times, then 503 + Retry-After

Set ``METRICS_TOKEN`` to require ``Authorization: Bearer <token>`` on ``/metrics`` and
``/switchgear``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException

from switchgear.asgi import ASGIMiddleware

api = FastAPI(title="switchgear example")

ITEMS = {1: "anvil", 2: "rocket skates", 42: "towel"}

# Stands in for a downstream service; flipped by the /admin endpoint below.
reports_backend = {"up": True}


@api.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, object]:
    if item_id not in ITEMS:
        # A 404 is the client's problem: it does not count against the breaker.
        raise HTTPException(status_code=404, detail="no such item")
    return {"id": item_id, "name": ITEMS[item_id]}


@api.get("/reports/{kind}")
async def report(kind: str) -> dict[str, str]:
    if not reports_backend["up"]:
        # A 5xx counts as a failure: three in a row open this route's breaker.
        raise HTTPException(status_code=502, detail="reports backend unavailable")
    return {"report": kind, "status": "ready"}


@api.post("/admin/reports/{state}")
async def set_reports_backend(state: str) -> dict[str, bool]:
    reports_backend["up"] = state == "up"
    return reports_backend


@api.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


app = ASGIMiddleware(
    api,
    # One breaker per route template ("GET /reports/{kind}"): 3 failures in a row open it
    # for 10 s (the library's defaults: 5 failures, 30 s).
    breaker_options={"failure_threshold": 3, "open_timeout": 10.0},
    exclude_paths=("/healthz", "/admin/*"),
    endpoint_auth=os.environ.get("METRICS_TOKEN") or None,
)

"""Apps with readiness and the control plane on, for real uvicorn and gunicorn processes.

``asgi_app`` (Starlette, for uvicorn) and ``wsgi_app`` (Flask, for gunicorn) both call a
``@protected`` dependency named ``inventory`` that opens after one failure; it is critical for
readiness. ``/control/fail`` and ``/control/heal`` switch the dependency; the endpoints need
the bearer token ``SWITCHGEAR_TEST_TOKEN``. With ``SWITCHGEAR_TEST_REDIS_PORT`` set, the
``inventory`` breaker's state is shared through that Redis.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import switchgear as sg
from switchgear.asgi import ASGIMiddleware
from switchgear.redis import RedisStorage
from switchgear.wsgi import WSGIMiddleware

state = {"failing": False}
_port = os.environ.get("SWITCHGEAR_TEST_REDIS_PORT")
storage = (
    RedisStorage(redis.Redis(port=int(_port), socket_timeout=0.5), max_staleness=0.5)
    if _port
    else None
)
inventory_breaker = sg.CircuitBreaker(
    "inventory", failure_threshold=1, success_threshold=1, open_timeout=1.0, storage=storage
)

# Shown on the status page beside the breakers; never binding in these tests.
inventory_limit = sg.AdaptiveLimit("inventory-backend", initial_limit=10, max_limit=50)


@sg.protected("inventory", breaker=inventory_breaker, limit=inventory_limit)
def inventory() -> str:
    if state["failing"]:
        raise ConnectionError("inventory is down")
    return "ok"


# More names for the status page's load test: SWITCHGEAR_TEST_NAMES protected functions,
# each called once so that it has a breaker and figures.
def _nothing() -> None:
    pass


extras = [
    sg.protected(f"extra-{i:03d}")(_nothing)
    for i in range(int(os.environ.get("SWITCHGEAR_TEST_NAMES", "0")))
]
for extra in extras:
    extra()


def control(action: str) -> str:
    if action in ("fail", "heal"):
        state["failing"] = action == "fail"
    return action


OPTIONS: dict[str, Any] = {
    "critical": ["inventory"],
    "control_plane": True,
    "endpoint_auth": os.environ.get("SWITCHGEAR_TEST_TOKEN", "operations-token"),
    "exclude_paths": ("/control/*",),
}


async def stock(request: Request) -> Response:
    try:
        return JSONResponse({"inventory": inventory(), "pid": os.getpid()})
    except ConnectionError:
        return PlainTextResponse("down", status_code=502)
    except sg.CircuitOpenError:
        return PlainTextResponse("open", status_code=503)


async def starlette_control(request: Request) -> Response:
    return PlainTextResponse(control(request.path_params["action"]))


asgi_app = ASGIMiddleware(
    Starlette(routes=[Route("/stock", stock), Route("/control/{action}", starlette_control)]),
    **OPTIONS,
)

flask_app = Flask(__name__)


@flask_app.get("/stock")
def flask_stock() -> tuple[str, int]:
    try:
        return inventory(), 200
    except ConnectionError:
        return "down", 502
    except sg.CircuitOpenError:
        return "open", 503


@flask_app.get("/control/<action>")
def flask_control(action: str) -> str:
    return control(action)


wsgi_app = WSGIMiddleware(flask_app.wsgi_app, **OPTIONS)

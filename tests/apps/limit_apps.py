"""A Starlette app whose every request goes through an adaptive limit of two (for uvicorn).

``/hold`` stays in flight until ``/control/release``; ``/fast`` answers at once. The token
for the endpoints is ``SWITCHGEAR_TEST_TOKEN``.
"""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import switchgear as sg
from switchgear.asgi import ASGIMiddleware

released = asyncio.Event()


async def hold(request: Request) -> Response:
    await released.wait()
    return PlainTextResponse("held")


async def fast(request: Request) -> Response:
    return PlainTextResponse("fast")


async def control(request: Request) -> Response:
    if request.path_params["action"] == "release":
        released.set()
    return PlainTextResponse("ok")


app = ASGIMiddleware(
    Starlette(
        routes=[Route("/hold", hold), Route("/fast", fast), Route("/control/{action}", control)]
    ),
    limit=sg.AdaptiveLimit("server", initial_limit=2, min_limit=2, max_limit=2),
    endpoint_auth=os.environ.get("SWITCHGEAR_TEST_TOKEN", "limit-token"),
    exclude_paths=("/control/*",),
)

"""A Starlette app behind ASGIMiddleware, for ``uvicorn tests.apps.starlette_app:app``.

Configured by environment variables so each test server can differ:
``SWITCHGEAR_TEST_TOKEN`` (endpoint bearer token), ``SWITCHGEAR_TEST_OPEN_TIMEOUT`` (s),
``SWITCHGEAR_TEST_LIFESPAN_FILE`` (lifespan startup/shutdown are appended to it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from switchgear.asgi import ASGIMiddleware

state = {"failing": False}


async def item(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"], "pid": os.getpid()})


async def flaky(request: Request) -> Response:
    if state["failing"]:
        return PlainTextResponse("dependency down", status_code=500)
    return PlainTextResponse("ok")


async def control(request: Request) -> Response:
    action = request.path_params["action"]
    if action in ("fail", "heal"):
        state["failing"] = action == "fail"
    return PlainTextResponse(action)


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0.1)
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text.upper())


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    marker = os.environ.get("SWITCHGEAR_TEST_LIFESPAN_FILE")
    if marker:
        with open(marker, "a", encoding="utf-8") as f:
            f.write("startup\n")
    yield
    if marker:
        with open(marker, "a", encoding="utf-8") as f:
            f.write("shutdown\n")


inner = Starlette(
    routes=[
        Route("/items/{id}", item),
        Route("/flaky", flaky),
        Route("/stream", stream),
        Route("/control/{action}", control),
        WebSocketRoute("/ws", echo),
    ],
    lifespan=lifespan,
)

app = ASGIMiddleware(
    inner,
    breaker_options={
        "failure_threshold": 3,
        "success_threshold": 1,
        "open_timeout": float(os.environ.get("SWITCHGEAR_TEST_OPEN_TIMEOUT", "1.0")),
    },
    exclude_paths=("/control/*",),
    endpoint_auth=os.environ.get("SWITCHGEAR_TEST_TOKEN") or None,
)

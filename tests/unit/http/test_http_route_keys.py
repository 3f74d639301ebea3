"""Routes the framework names only partly: each still gets its own breaker, or none at all.

A breaker shared among unrelated routes would let one failing route answer 503 for the
others. These tests use the real frameworks: FastAPI (``add_route`` routes and
``/openapi.json`` leave no route object on the scope), and the oldest Starlette that
pyproject allows (its router leaves only ``scope["endpoint"]`` and ``scope["router"]``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from switchgear import BreakerState
from switchgear.asgi import ASGIMiddleware
from switchgear.testing import FakeClock

pytestmark = [pytest.mark.timeout(120), pytest.mark.anyio]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The oldest Starlette that ``starlette>=0.37`` admits (no ``scope["route"]`` yet).
OLDEST_STARLETTE = "0.37.2"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def state(registry: CollectorRegistry, name: str) -> str | None:
    """The state ``switchgear_circuit_state`` exports for ``name`` (the one at 1)."""
    on = [
        s.labels["state"]
        for m in registry.collect()
        if m.name == "switchgear_circuit_state"
        for s in m.samples
        if s.labels.get("name") == name and s.value == 1
    ]
    assert len(on) <= 1, on
    return on[0] if on else None


async def test_fastapi_add_route_failures_leave_other_routes_answering(
    clock: FakeClock,
) -> None:
    api = FastAPI()

    @api.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    async def healthy(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def broken(request: Request) -> PlainTextResponse:
        return PlainTextResponse("down", status_code=500)

    api.add_route("/healthy", healthy)
    api.add_route("/broken", broken)
    registry = CollectorRegistry()
    app = ASGIMiddleware(api, registry=registry, clock=clock)
    others = ("/items/1", "/healthy", "/openapi.json")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        for path in others:  # every path known to the middleware before the failures
            assert (await client.get(path)).status_code == 200
        statuses = [(await client.get("/broken")).status_code for _ in range(8)]
        for path in others:
            assert (await client.get(path)).status_code == 200, path

    # The failing route has a breaker of its own, which opened after the default 5 failures.
    assert statuses == [500] * 5 + [503] * 3
    assert set(app.breakers()) >= {
        "GET /items/{item_id}",
        "GET /healthy",
        "GET /broken",
        "GET /openapi.json",
    }
    assert state(registry, "GET /broken") == "open"
    assert state(registry, "GET /healthy") == "closed"


async def test_unnamed_routes_are_never_refused_by_one_shared_breaker(clock: FakeClock) -> None:
    """A plain ASGI app names no route: its requests share <unmatched>, which never trips."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        status = 500 if scope["path"] == "/broken" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    registry = CollectorRegistry()
    mw = ASGIMiddleware(app, registry=registry, clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mw), base_url="http://test"
    ) as client:
        assert (await client.get("/fine")).status_code == 200
        statuses = [(await client.get("/broken")).status_code for _ in range(8)]
        assert (await client.get("/fine")).status_code == 200
    assert statuses == [500] * 8
    assert mw.breakers()["<unmatched>"].state is BreakerState.DISABLED
    assert state(registry, "<unmatched>") == "disabled"
    assert (
        registry.get_sample_value(
            "switchgear_requests_total", {"name": "<unmatched>", "outcome": "error"}
        )
        == 8
    )


async def test_a_key_that_cannot_be_a_name_falls_into_other() -> None:
    """An app-provided template of 300 characters is bounded, not an error per request."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["switchgear.route"] = "/" + "x" * 300
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    registry = CollectorRegistry()
    mw = ASGIMiddleware(app, registry=registry)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mw), base_url="http://test"
    ) as client:
        for _ in range(3):
            assert (await client.get("/long")).status_code == 200
    assert (
        registry.get_sample_value(
            "switchgear_requests_total", {"name": "<other>", "outcome": "success"}
        )
        == 3
    )


# -- EndpointIndex ---------------------------------------------------------------------------


class R:
    def __init__(self, path: str, endpoint: object) -> None:
        self.path = path
        self.endpoint = endpoint


class M:
    def __init__(self, path: str, app: object, routes: list[object]) -> None:
        self.path = path
        self.app = app
        self.routes = routes


class Router:
    def __init__(self, routes: list[object]) -> None:
        self.routes = routes

    __hash__ = None  # type: ignore[assignment]  # as Starlette's Router (it defines __eq__)


def test_endpoint_index_names_routes_and_mounts() -> None:
    from switchgear._http.routes import EndpointIndex

    def a() -> None: ...
    def b() -> None: ...
    def shared() -> None: ...

    static, sub = object(), object()
    router = Router(
        [
            R("/a/{id}", a),
            R("/x", shared),
            M("/sub", sub, [R("/b", b), R("/x", shared)]),
            M("/static", static, []),
        ]
    )
    index = EndpointIndex()
    assert index.template(router, a, "") == "/a/{id}"
    assert index.template(router, b, "/sub") == "/sub/b"
    assert index.template(router, static, "/static") == "/static/{path:path}"
    assert index.template(router, sub, "/sub") == "/sub/{path:path}"  # a 404 inside the mount
    # One endpoint on two routes: told apart by the mount the request went through.
    assert index.template(router, shared, "") == "/x"
    assert index.template(router, shared, "/sub") == "/sub/x"
    assert index.template(router, shared, None) is None
    assert index.template(router, object(), "") is None
    assert index.template(None, a, "") is None

    def late() -> None: ...

    router.routes.append(R("/late", late))  # added after the first requests
    assert index.template(router, late, "") == "/late"


def test_endpoint_index_survives_a_router_that_raises() -> None:
    from switchgear._http.routes import EndpointIndex

    class Broken:
        @property
        def routes(self) -> list[object]:
            raise RuntimeError("no")

    assert EndpointIndex().template(Broken(), object(), "") is None


# -- the oldest Starlette pyproject allows ---------------------------------------------------

OLD_STARLETTE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json

    import httpx
    import starlette
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from switchgear.asgi import ASGIMiddleware

    async def ok(request):
        return PlainTextResponse("ok")

    async def broken(request):
        return PlainTextResponse("down", status_code=500)

    async def files(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"f"})

    sub = Starlette(routes=[Route("/x/{k}", ok)])
    app = Starlette(
        routes=[
            Route("/items/{id:int}", ok),
            Route("/broken", broken),
            Mount("/sub", app=sub),
            Mount("/static", app=files),
        ]
    )
    mw = ASGIMiddleware(app, registry=CollectorRegistry())

    async def main():
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            seen = {}
            for path in ("/items/1", "/sub/x/2", "/static/a.css", "/nope"):
                seen[path] = (await client.get(path)).status_code
            broken = [(await client.get("/broken")).status_code for _ in range(8)]
            for path in ("/items/2", "/sub/x/3", "/static/b.css"):
                seen[path] = (await client.get(path)).status_code
        print(json.dumps({
            "version": starlette.__version__,
            "keys": sorted(mw.breakers()),
            "seen": seen,
            "broken": broken,
        }))

    asyncio.run(main())
    """
)


@pytest.fixture(scope="module")
def old_starlette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Starlette ``OLDEST_STARLETTE`` in a directory of its own, installed by pip."""
    target = tmp_path_factory.mktemp("old-starlette")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            f"starlette=={OLDEST_STARLETTE}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        reason = f"cannot install starlette=={OLDEST_STARLETTE}: {done.stderr.strip()[-300:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return target


def test_route_keys_on_the_oldest_starlette(old_starlette: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(old_starlette), os.getcwd()]))
    done = subprocess.run(
        [sys.executable, "-c", OLD_STARLETTE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["version"] == OLDEST_STARLETTE
    assert result["keys"] == [
        "<unmatched>",
        "GET /broken",
        "GET /items/{id:int}",
        "GET /static/{path:path}",
        "GET /sub/x/{k}",
    ]
    assert result["broken"] == [500] * 5 + [503] * 3
    assert result["seen"] == {
        "/items/1": 200,
        "/sub/x/2": 200,
        "/static/a.css": 200,
        "/nope": 404,
        "/items/2": 200,
        "/sub/x/3": 200,
        "/static/b.css": 200,
    }

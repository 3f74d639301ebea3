"""One name, one exported breaker per metrics registry; and routes the middleware shadows.

``breaker_per_route=False`` exports a breaker named ``http``; a ``@protected("http")``
function or a second middleware on the same registry must use that same breaker, so that
``/metrics`` shows the state of the breaker that answers 503. Building one with other options
is refused when the middleware is built, never at request time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry
from werkzeug.test import Client

import switchgear as sg
import switchgear.testing
from switchgear.asgi import ASGIMiddleware
from switchgear.wsgi import WSGIMiddleware

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def exported_state(registry: CollectorRegistry, name: str) -> str:
    on = [
        s.labels["state"]
        for m in registry.collect()
        if m.name == "switchgear_circuit_state"
        for s in m.samples
        if s.labels.get("name") == name and s.value == 1
    ]
    assert len(on) == 1, on
    return on[0]


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    scope["switchgear.route"] = "/x"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def failing_app(scope: Scope, receive: Receive, send: Send) -> None:
    scope["switchgear.route"] = "/x"
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"no"})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def fail_five(fn: Callable[[], None]) -> None:
    for _ in range(5):
        with pytest.raises(RuntimeError):
            fn()


async def test_protected_http_and_the_global_breaker_are_one() -> None:
    @sg.protected("http")
    def dependency() -> None:
        raise RuntimeError("down")

    mw = ASGIMiddleware(ok_app, breaker_per_route=False)  # the default registry, as @protected
    try:
        fail_five(dependency)  # opens the one breaker named http
        async with client(mw) as c:
            response = await c.get("/x")
        assert response.status_code == 503
        assert response.json()["name"] == "http"
        assert exported_state(REGISTRY, "http") == "open"
    finally:
        sg.testing.reset_breakers()
        del dependency, mw


async def test_protected_http_declared_after_the_middleware_shares_its_breaker() -> None:
    mw = ASGIMiddleware(failing_app, breaker_per_route=False)
    try:
        async with client(mw) as c:
            for _ in range(5):
                assert (await c.get("/x")).status_code == 500

        @sg.protected("http")
        def dependency() -> None:
            raise AssertionError("not called: the breaker is open")

        with pytest.raises(sg.CircuitOpenError):
            dependency()
        assert exported_state(REGISTRY, "http") == "open"
    finally:
        sg.testing.reset_breakers()
        del mw


def test_the_global_breaker_with_other_options_is_refused_at_construction() -> None:
    @sg.protected("http")
    def dependency() -> None: ...

    with pytest.raises(ValueError, match=r"'http'.*failure_threshold \(5 there, 2 here\)"):
        WSGIMiddleware(
            lambda e, s: [], breaker_per_route=False, breaker_options={"failure_threshold": 2}
        )
    del dependency


async def test_two_middleware_on_one_registry_share_each_route_breaker() -> None:
    registry = CollectorRegistry()
    first = ASGIMiddleware(failing_app, registry=registry)
    second = ASGIMiddleware(ok_app, registry=registry)
    async with client(first) as c1, client(second) as c2:
        assert (await c2.get("/x")).status_code == 200
        for _ in range(5):
            assert (await c1.get("/x")).status_code == 500
        # One breaker named "GET /x": open, exported open, and refusing for both.
        assert (await c1.get("/x")).status_code == 503
        assert (await c2.get("/x")).status_code == 503
    assert first.breakers()["GET /x"] is second.breakers()["GET /x"]
    assert exported_state(registry, "GET /x") == "open"


async def test_two_global_breakers_on_one_registry_are_one() -> None:
    registry = CollectorRegistry()
    first = ASGIMiddleware(failing_app, registry=registry, breaker_per_route=False)
    second = ASGIMiddleware(ok_app, registry=registry, breaker_per_route=False)
    async with client(first) as c1, client(second) as c2:
        for _ in range(5):
            assert (await c1.get("/x")).status_code == 500
        assert (await c2.get("/x")).status_code == 503
    assert exported_state(registry, "http") == "open"
    with pytest.raises(ValueError, match="open_timeout"):
        ASGIMiddleware(
            ok_app,
            registry=registry,
            breaker_per_route=False,
            breaker_options={"open_timeout": 5.0},
        )


# -- an app's own route at metrics_path / status_path ----------------------------------------


def shadow_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "switchgear" and "never reached" in r.getMessage()
    ]


def test_fastapi_route_at_metrics_path_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    api = FastAPI()

    @api.get("/metrics")
    def own_metrics() -> str:
        return "mine"

    @api.get("/items")
    def items() -> list[int]:
        return []

    caplog.set_level(logging.WARNING, "switchgear")
    ASGIMiddleware(api, registry=CollectorRegistry())
    assert len(shadow_warnings(caplog)) == 1
    assert "/metrics" in shadow_warnings(caplog)[0]

    caplog.clear()
    ASGIMiddleware(api, registry=CollectorRegistry(), metrics_path="/_metrics")
    assert shadow_warnings(caplog) == []


async def test_a_route_declared_after_wrapping_is_reported_at_the_first_scrape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "switchgear")
    api = FastAPI()
    mw = ASGIMiddleware(api, registry=CollectorRegistry())

    @api.get("/switchgear")
    def own_status() -> str:
        return "mine"

    assert shadow_warnings(caplog) == []
    async with client(mw) as c:
        for _ in range(2):
            assert (await c.get("/switchgear")).status_code == 200
    assert len(shadow_warnings(caplog)) == 1
    assert "/switchgear" in shadow_warnings(caplog)[0]


def test_flask_route_declared_after_wrapping_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "switchgear")
    app = Flask(__name__)
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, registry=CollectorRegistry())  # type: ignore[method-assign]

    @app.get("/metrics")
    def own_metrics() -> str:
        return "mine"

    @app.get("/hello")
    def hello() -> str:
        return "hi"

    assert shadow_warnings(caplog) == []
    http = Client(app)
    assert http.get("/hello").status_code == 200
    assert shadow_warnings(caplog) == []
    for _ in range(2):
        assert http.get("/metrics").status_code == 200
    assert len(shadow_warnings(caplog)) == 1

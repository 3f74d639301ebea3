"""Exceptions the frameworks hide: rejections from inside a route, ignore_on/failure_on.

In process, through the real frameworks (FastAPI over httpx's ASGI transport, Flask's test
client through the WSGI middleware); the same behaviour under real servers is in
``tests/integration/test_framework_servers.py``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import PlainTextResponse

import switchgear as sg
from switchgear import BreakerState
from switchgear.asgi import ASGIMiddleware
from switchgear.asgi import install_exception_handlers as install_starlette
from switchgear.testing import FakeClock
from switchgear.wsgi import WSGIMiddleware
from switchgear.wsgi import install_exception_handlers as install_flask

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]

Scope = MutableMapping[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Ignored(Exception):
    """Listed in ignore_on: moves no breaker."""


class Benign(Exception):
    """Outside failure_on: a success for the breaker."""


class Broken(Exception):
    """Inside failure_on: a failure."""


def opened(name: str, clock: FakeClock, open_timeout: float = 30.0) -> sg.CircuitBreaker:
    """A breaker tripped by one real failure, OPEN for ``open_timeout`` seconds."""
    breaker = sg.CircuitBreaker(name, failure_threshold=1, open_timeout=open_timeout, clock=clock)

    def boom() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        breaker.call(boom)
    assert breaker.state is BreakerState.OPEN
    return breaker


def value(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    return registry.get_sample_value(metric, labels) or 0.0


OPTIONS = {"failure_threshold": 3, "failure_on": (Broken, ConnectionError), "ignore_on": Ignored}


def fastapi_app(inner: sg.CircuitBreaker, pool: sg.DynamicPool[int] | None = None) -> FastAPI:
    api = FastAPI()

    @api.get("/dep")
    async def dep() -> dict[str, str]:
        return inner.call(lambda: {"ok": "yes"})

    @api.get("/pooled")
    async def pooled() -> dict[str, int]:
        assert pool is not None
        async with pool.lease_async() as resource:
            return {"resource": resource}

    @api.get("/raise/{kind}")
    async def raise_(kind: str) -> dict[str, str]:
        raise {"ignored": Ignored, "benign": Benign, "broken": Broken}[kind](kind)

    return api


def asgi(app: Any, clock: FakeClock, registry: CollectorRegistry) -> ASGIMiddleware:
    return ASGIMiddleware(app, breaker_options=OPTIONS, registry=registry, clock=clock)


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def route_state(mw: ASGIMiddleware | WSGIMiddleware, key: str) -> BreakerState:
    return mw.breakers()[key].state


async def test_inner_open_breaker_answers_503_and_spares_the_route() -> None:
    clock, registry = FakeClock(), CollectorRegistry()
    inner = opened("fw-db", clock, open_timeout=30.0)
    api = fastapi_app(inner)
    install_starlette(api)
    mw = asgi(api, clock, registry)
    async with client(mw) as c:
        for _ in range(50):
            r = await c.get("/dep")
            assert r.status_code == 503
            assert r.headers["retry-after"] == "30"
            assert r.json() == {"error": "circuit_open", "name": "fw-db", "retry_after": 30}
    assert route_state(mw, "GET /dep") is BreakerState.CLOSED
    assert (
        value(registry, "switchgear_rejected_total", name="GET /dep", reason="circuit_open") == 50
    )
    assert value(registry, "switchgear_requests_total", name="GET /dep", outcome="error") == 0
    # Healed: the route answers again and nothing of the outage is held against it.
    clock.advance(30.0)
    async with client(mw) as c:
        assert (await c.get("/dep")).json() == {"ok": "yes"}
    assert value(registry, "switchgear_requests_total", name="GET /dep", outcome="success") == 1


async def test_without_the_handlers_the_framework_hides_the_rejection() -> None:
    # What the handlers are for: FastAPI alone answers 500 and the route's breaker opens.
    clock, registry = FakeClock(), CollectorRegistry()
    mw = asgi(fastapi_app(opened("fw-db-bare", clock)), clock, registry)
    async with client(mw) as c:
        statuses = [(await c.get("/dep")).status_code for _ in range(4)]
    assert statuses == [500, 500, 500, 503]
    assert route_state(mw, "GET /dep") is BreakerState.OPEN


async def test_inner_pool_rejection_answers_pool_full_status() -> None:
    clock, registry = FakeClock(), CollectorRegistry()
    pool = sg.DynamicPool(
        lambda: 1, name="fw-pool", min_size=0, max_size=1, max_waiting=0, clock=clock
    )
    api = fastapi_app(opened("fw-unused", clock), pool)
    install_starlette(api, pool_full_status=429)
    mw = asgi(api, clock, registry)
    held = pool.acquire()
    try:
        async with client(mw) as c:
            r = await c.get("/pooled")
    finally:
        pool.release(held)
    assert r.status_code == 429
    assert r.json()["name"] == "fw-pool"
    assert r.json()["error"] == "pool_full"
    assert r.headers["retry-after"] == "1"
    assert value(registry, "switchgear_rejected_total", name="GET /pooled", reason="pool_full") == 1
    pool.close()


@pytest.mark.parametrize(
    ("kind", "outcome", "state"),
    [
        ("ignored", "success", BreakerState.CLOSED),  # ignore_on: moves nothing
        ("benign", "success", BreakerState.CLOSED),  # outside failure_on: a success
        ("broken", "error", BreakerState.OPEN),  # a failure, as with @protected
    ],
)
async def test_classification_sees_the_original_exception(
    kind: str, outcome: str, state: BreakerState
) -> None:
    clock, registry = FakeClock(), CollectorRegistry()
    api = fastapi_app(opened(f"fw-{kind}", clock))
    install_starlette(api)
    mw = asgi(api, clock, registry)
    async with client(mw) as c:
        for _ in range(3):
            assert (await c.get(f"/raise/{kind}")).status_code == 500
    assert route_state(mw, "GET /raise/{kind}") is state
    assert (
        value(registry, "switchgear_requests_total", name="GET /raise/{kind}", outcome=outcome) == 3
    )


async def test_a_users_own_error_handler_still_answers() -> None:
    clock, registry = FakeClock(), CollectorRegistry()
    api = fastapi_app(opened("fw-own", clock))

    async def mine(request: Request, exc: Exception) -> PlainTextResponse:
        return PlainTextResponse(f"sorry ({type(exc).__name__})", status_code=500)

    api.add_exception_handler(Exception, mine)
    install_starlette(api)
    mw = asgi(api, clock, registry)
    async with client(mw) as c:
        r = await c.get("/raise/ignored")
    assert (r.status_code, r.text) == (500, "sorry (Ignored)")
    assert (
        value(registry, "switchgear_requests_total", name="GET /raise/{kind}", outcome="success")
        == 1
    )


async def test_plain_asgi_app_raising_a_rejection_gets_503() -> None:
    # No framework between: the middleware sees the rejection itself and answers it.
    clock, registry = FakeClock(), CollectorRegistry()
    inner = opened("fw-plain", clock, open_timeout=12.0)

    async def app(scope: Scope, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        scope["switchgear.route"] = "/plain"
        inner.call(lambda: None)

    mw = asgi(app, clock, registry)
    async with client(mw) as c:
        r = await c.get("/plain")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "12"
    assert r.json()["name"] == "fw-plain"
    assert (
        value(registry, "switchgear_rejected_total", name="GET /plain", reason="circuit_open") == 1
    )


def flask_app(inner: sg.CircuitBreaker) -> Flask:
    app = Flask(__name__)

    @app.get("/dep")
    def dep() -> dict[str, str]:
        return inner.call(lambda: {"ok": "yes"})

    @app.get("/raise/<kind>")
    def raise_(kind: str) -> str:
        raise {"ignored": Ignored, "benign": Benign, "broken": Broken}[kind](kind)

    return app


def test_flask_inner_rejection_and_classification() -> None:
    clock, registry = FakeClock(), CollectorRegistry()
    app = flask_app(opened("fw-flask-db", clock, open_timeout=20.0))
    install_flask(app)
    mw = WSGIMiddleware(app.wsgi_app, breaker_options=OPTIONS, registry=registry, clock=clock)
    app.wsgi_app = mw  # type: ignore[method-assign]
    c = app.test_client()
    for _ in range(50):
        r = c.get("/dep")
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "20"
        assert json.loads(r.data)["name"] == "fw-flask-db"
    assert route_state(mw, "GET /dep") is BreakerState.CLOSED
    assert (
        value(registry, "switchgear_rejected_total", name="GET /dep", reason="circuit_open") == 50
    )
    for kind, outcome, state in [
        ("ignored", "success", BreakerState.CLOSED),
        ("broken", "error", BreakerState.OPEN),
    ]:
        for _ in range(3):
            assert c.get(f"/raise/{kind}").status_code == 500
        assert route_state(mw, "GET /raise/<kind>") is state
        assert (
            value(registry, "switchgear_requests_total", name="GET /raise/<kind>", outcome=outcome)
            >= 3
        )


def test_plain_wsgi_app_raising_a_rejection_gets_503() -> None:
    clock, registry = FakeClock(), CollectorRegistry()
    inner = opened("fw-wsgi-plain", clock, open_timeout=5.0)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["switchgear.route"] = "/plain"
        inner.call(lambda: None)
        return [b"unreachable"]

    mw = WSGIMiddleware(app, registry=registry, clock=clock)
    seen: list[str] = []
    body = b"".join(
        mw(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/plain", "wsgi.input": None},
            lambda status, headers, exc_info=None: seen.append(status),
        )
    )
    assert seen == ["503 Service Unavailable"]
    assert json.loads(body)["name"] == "fw-wsgi-plain"
    assert (
        value(registry, "switchgear_rejected_total", name="GET /plain", reason="circuit_open") == 1
    )


def test_install_validates_its_arguments() -> None:
    with pytest.raises(TypeError, match="app must be a Starlette or FastAPI"):
        install_starlette(object())
    with pytest.raises(TypeError, match="app must be a Flask"):
        install_flask(FastAPI())
    with pytest.raises(ValueError, match="pool_full_status"):
        install_starlette(FastAPI(), pool_full_status=200)
    with pytest.raises(TypeError, match="pool_full_status"):
        install_flask(Flask(__name__), pool_full_status="503")  # type: ignore[arg-type]


async def test_route_breaker_options_apply_to_their_route_only() -> None:
    clock, registry = FakeClock(), CollectorRegistry()
    api = FastAPI()

    @api.get("/fragile")
    async def fragile() -> None:
        raise Broken("down")

    @api.get("/sturdy")
    async def sturdy() -> None:
        raise Broken("down")

    install_starlette(api)
    mw = ASGIMiddleware(
        api,
        breaker_options=OPTIONS,  # 3 failures open a route
        route_breaker_options={"GET /fragile": {"failure_threshold": 1, "open_timeout": 5.0}},
        registry=registry,
        clock=clock,
    )
    async with client(mw) as c:
        fragile_statuses = [(await c.get("/fragile")).status_code for _ in range(2)]
        sturdy_statuses = [(await c.get("/sturdy")).status_code for _ in range(4)]
        assert fragile_statuses == [500, 503]
        assert sturdy_statuses == [500, 500, 500, 503]
        assert (await c.get("/fragile")).headers["retry-after"] == "5"
    breakers = mw.breakers()
    assert breakers["GET /fragile"].failure_threshold == 1
    assert breakers["GET /sturdy"].failure_threshold == 3

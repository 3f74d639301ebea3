"""ASGIMiddleware in process: route keys, breaker, latency, endpoints, pass-through scopes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from switchgear import BreakerState
from switchgear.asgi import ASGIMiddleware, install_exception_handlers
from switchgear.testing import FakeClock

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Calls:
    """What the test app saw, and how it should behave."""

    def __init__(self) -> None:
        self.count = 0
        self.failing = False
        self.started = False
        self.stopped = False


def build_app(calls: Calls, clock: FakeClock) -> Starlette:
    async def item(request: Request) -> Response:
        calls.count += 1
        return JSONResponse({"id": request.path_params["id"]})

    async def flaky(request: Request) -> Response:
        calls.count += 1
        if calls.failing:
            return PlainTextResponse("down", status_code=500)
        return PlainTextResponse("ok")

    async def boom(request: Request) -> Response:
        calls.count += 1
        raise RuntimeError("secret detail")

    async def slow_stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                clock.advance(0.3)
                yield b"chunk\n"

        return StreamingResponse(chunks())

    async def missing(request: Request) -> Response:
        return PlainTextResponse("no such thing", status_code=404)

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text.upper())
        await websocket.close()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        calls.started = True
        yield
        calls.stopped = True

    def numbered(request: Request) -> Response:
        return PlainTextResponse(request.url.path)

    return Starlette(
        routes=[
            Route("/items/{id}", item),
            Route("/flaky", flaky),
            Route("/boom", boom),
            Route("/stream", slow_stream),
            Route("/missing", missing),
            Route("/healthz", lambda r: PlainTextResponse("ok")),
            Route("/internal/a", lambda r: PlainTextResponse("a")),
            *[Route(f"/r{i}", numbered) for i in range(6)],
            Mount("/api/v1", routes=[Route("/things/{tid:int}", numbered)]),
            Mount("/t/{tenant}", routes=[Route("/x", numbered)]),
            WebSocketRoute("/ws", ws),
        ],
        lifespan=lifespan,
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def calls() -> Calls:
    return Calls()


def make(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry, **options: Any
) -> ASGIMiddleware:
    options.setdefault("breaker_options", {})
    options["breaker_options"].setdefault("clock", clock)
    return ASGIMiddleware(build_app(calls, clock), registry=registry, clock=clock, **options)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def value(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    sample = registry.get_sample_value(metric, labels)
    return 0.0 if sample is None else sample


def requests(registry: CollectorRegistry, name: str, outcome: str = "success") -> float:
    return value(registry, "switchgear_requests_total", name=name, outcome=outcome)


def names(registry: CollectorRegistry) -> set[str]:
    found: set[str] = set()
    for metric in registry.collect():
        if metric.name == "switchgear_requests":
            found.update(s.labels["name"] for s in metric.samples)
    return found


# -- route keys -----------------------------------------------------------------------------


async def test_many_ids_one_series(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry)
    async with client(app) as c:
        for i in range(100):
            r = await c.get(f"/items/{i}")
            assert r.status_code == 200
    assert requests(registry, "GET /items/{id}") == 100
    assert names(registry) == {"GET /items/{id}"}
    assert set(app.breakers()) == {"GET /items/{id}"}


async def test_unmatched_and_mounts(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry)
    async with client(app) as c:
        assert (await c.get("/nope/123")).status_code == 404
        assert (await c.get("/api/v1/things/7")).status_code == 200
        assert (await c.get("/t/acme/x")).status_code == 200  # parametrised mount prefix
        assert (await c.get("/missing")).status_code == 404  # matched route answering 404
    assert requests(registry, "<unmatched>") == 2
    assert requests(registry, "GET /api/v1/things/{tid:int}") == 1
    assert requests(registry, "GET /missing") == 1


async def test_one_router_under_two_mounts_keeps_two_keys(registry: CollectorRegistry) -> None:
    """The same route object reached through two prefixes is two route keys, every time."""

    async def item(request: Request) -> Response:
        return PlainTextResponse("ok")

    shared = [Route("/items/{id:int}", item)]
    inner = Starlette(routes=[Mount("/v1", routes=shared), Mount("/v2", routes=shared)])
    app = ASGIMiddleware(inner, registry=registry)
    async with client(app) as c:
        for i in range(3):
            assert (await c.get(f"/v1/items/{i}")).status_code == 200
            assert (await c.get(f"/v2/items/{i}")).status_code == 200
    assert requests(registry, "GET /v1/items/{id:int}") == 3
    assert requests(registry, "GET /v2/items/{id:int}") == 3


async def test_cardinality_cap(calls: Calls, clock: FakeClock, registry: CollectorRegistry) -> None:
    app = make(calls, clock, registry, max_routes=3)
    async with client(app) as c:
        for i in range(6):
            assert (await c.get(f"/r{i}")).status_code == 200
        for i in range(6):
            await c.get(f"/r{i}")
    assert names(registry) == {"GET /r0", "GET /r1", "GET /r2", "<other>"}
    assert requests(registry, "<other>") == 6


async def test_fastapi_templates(registry: CollectorRegistry) -> None:
    api = FastAPI()
    router = APIRouter(prefix="/v1")

    @router.get("/users/{uid}")
    def user(uid: int) -> dict[str, int]:
        return {"uid": uid}

    api.include_router(router)
    sub = FastAPI()

    @sub.get("/z/{q}")
    def z(q: str) -> str:
        return q

    api.mount("/m", sub)
    app = ASGIMiddleware(api, registry=registry)
    async with client(app) as c:
        assert (await c.get("/v1/users/3")).status_code == 200
        assert (await c.get("/v1/users/x")).status_code == 422
        assert (await c.get("/m/z/abc")).status_code == 200
    assert requests(registry, "GET /v1/users/{uid}") == 2
    assert requests(registry, "GET /m/z/{q}") == 1


async def test_explicit_route_key_from_plain_app(registry: CollectorRegistry) -> None:
    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        scope["switchgear.route"] = "/custom/{x}"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = ASGIMiddleware(plain, registry=registry)
    async with client(app) as c:
        await c.post("/custom/1")
    assert requests(registry, "POST /custom/{x}") == 1


# -- breaker --------------------------------------------------------------------------------


async def test_open_breaker_answers_503_without_calling_app(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(
        calls,
        clock,
        registry,
        breaker_options={"failure_threshold": 3, "open_timeout": 11.5, "success_threshold": 2},
    )
    calls.failing = True
    async with client(app) as c:
        for _ in range(3):
            assert (await c.get("/flaky")).status_code == 500
        assert app.breakers()["GET /flaky"].state is BreakerState.OPEN
        before = calls.count
        r = await c.get("/flaky")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "12"
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"error": "circuit_open", "name": "GET /flaky", "retry_after": 12}
        assert calls.count == before
        clock.advance(5)
        r = await c.get("/flaky")
        assert r.headers["retry-after"] == "7"

        # Recovery: after open_timeout the breaker lets trial calls through.
        clock.advance(7)
        calls.failing = False
        for _ in range(2):
            assert (await c.get("/flaky")).status_code == 200
        assert app.breakers()["GET /flaky"].state is BreakerState.CLOSED
    assert requests(registry, "GET /flaky", "error") == 3
    assert requests(registry, "GET /flaky") == 2
    assert (
        value(registry, "switchgear_rejected_total", name="GET /flaky", reason="circuit_open") == 2
    )
    assert (
        value(
            registry,
            "switchgear_circuit_transitions_total",
            name="GET /flaky",
            from_state="closed",
            to_state="open",
        )
        == 1
    )


async def test_failure_status_option(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry, failure_status=lambda code: code >= 400)
    async with client(app) as c:
        await c.get("/missing")
        await c.get("/items/1")
    assert requests(registry, "GET /missing", "error") == 1
    assert requests(registry, "GET /items/{id}") == 1


async def test_exception_is_reraised_and_counted_once(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry)
    async with client(app) as c:
        with pytest.raises(RuntimeError, match="secret detail"):
            await c.get("/boom")
    assert requests(registry, "GET /boom", "error") == 1
    assert requests(registry, "GET /boom") == 0

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("before any response")

    registry2 = CollectorRegistry()
    app2 = ASGIMiddleware(raw, registry=registry2)
    async with client(app2) as c:
        with pytest.raises(ValueError, match="before any response"):
            await c.get("/anything")
    assert requests(registry2, "<unmatched>", "error") == 1


async def test_exception_body_never_leaks(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get("/boom")
    assert r.status_code == 500
    assert "secret" not in r.text


async def test_unknown_path_admitted_then_learned(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    """A path never seen cannot be refused (its route is unknown until the app routes it);
    once learned, the same path and paths of the same shape go through the breaker."""
    app = make(
        calls,
        clock,
        registry,
        failure_status=lambda code: code >= 400,
        breaker_options={"failure_threshold": 2},
    )
    async with client(app) as c:
        # Two distinct ids, both 404 from the matched route: learned, failures counted.
        calls.count = 0
        assert (await c.get("/missing")).status_code == 404
        assert (await c.get("/missing")).status_code == 404
        assert app.breakers()["GET /missing"].state is BreakerState.OPEN
        assert (await c.get("/missing")).status_code == 503
        # Shape learning: /items/1 teaches /items/{id}; /items/2 is then admitted on it.
        await c.get("/items/1")
        app.breakers()["GET /items/{id}"].force_open()
        r = await c.get("/items/2")
        assert r.status_code == 503
        assert r.json()["name"] == "GET /items/{id}"


async def test_unknown_path_does_not_spend_half_open_permits(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(
        calls,
        clock,
        registry,
        breaker_options={"failure_threshold": 1, "success_threshold": 1, "open_timeout": 1.0},
    )
    async with client(app) as c:
        await c.get("/items/1")
        breaker = app.breakers()["GET /items/{id}"]
        breaker.force_open()
        breaker.reset()
        breaker.record_result(False)
        assert breaker.state is BreakerState.OPEN
        clock.advance(1.0)
        assert breaker.state is BreakerState.HALF_OPEN
        # /items/abc has no id-like shape: unknown, admitted, and not counted in HALF_OPEN.
        assert (await c.get("/items/abc")).status_code == 200
        assert breaker.state is BreakerState.HALF_OPEN
        # A known path takes the trial permit and closes it.
        assert (await c.get("/items/1")).status_code == 200
        assert breaker.state is BreakerState.CLOSED


async def test_breaker_per_route_false_shares_one_breaker(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(
        calls, clock, registry, breaker_per_route=False, breaker_options={"failure_threshold": 2}
    )
    calls.failing = True
    async with client(app) as c:
        await c.get("/flaky")
        await c.get("/flaky")
        r = await c.get("/items/1")  # never seen, but the app-wide breaker is open
        assert r.status_code == 503
        assert r.json()["name"] == "http"
        head = await c.head("/items/1")
        assert head.status_code == 503
        assert head.content == b""
        assert head.headers["retry-after"] == "30"
    assert requests(registry, "GET /flaky", "error") == 2
    assert (
        value(registry, "switchgear_rejected_total", name="<unmatched>", reason="circuit_open") == 2
    )
    assert value(registry, "switchgear_circuit_state", name="http", state="open") == 1
    assert {b.name for b in app.breakers().values()} == {"http"}


# -- latency --------------------------------------------------------------------------------


async def test_streaming_latency_runs_to_last_chunk(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry)
    async with client(app) as c:
        r = await c.get("/stream")
        assert r.text == "chunk\n" * 3
    total = value(registry, "switchgear_request_duration_seconds_sum", name="GET /stream")
    assert total == pytest.approx(0.9)
    assert (
        value(registry, "switchgear_request_duration_seconds_bucket", name="GET /stream", le="0.5")
        == 0
    )
    assert (
        value(registry, "switchgear_request_duration_seconds_bucket", name="GET /stream", le="1.0")
        == 1
    )


async def test_background_work_after_last_chunk_is_not_timed(registry: CollectorRegistry) -> None:
    clock = FakeClock()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        clock.advance(0.2)
        await send({"type": "http.response.body", "body": b"x"})
        clock.advance(5.0)  # a background task: not the client's latency

    mw = ASGIMiddleware(app, registry=registry, clock=clock)
    async with client(mw) as c:
        await c.get("/")
    assert value(
        registry, "switchgear_request_duration_seconds_sum", name="<unmatched>"
    ) == pytest.approx(0.2)


# -- disconnects and odd apps ---------------------------------------------------------------


async def run_asgi(app: Any, scope: Scope, messages: list[Message] | None = None) -> list[Message]:
    sent: list[Message] = []
    incoming = list(messages or [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http_scope(path: str = "/", method: str = "GET", **extra: Any) -> Scope:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
    }
    scope.update(extra)
    return scope


async def test_client_disconnect_is_not_a_failure(registry: CollectorRegistry) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["switchgear.route"] = "/stream"  # a route of its own, with a breaker that counts
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b", "more_body": True})

    mw = ASGIMiddleware(app, registry=registry, breaker_options={"failure_threshold": 1})

    async def failing_send(message: Message) -> None:
        if message.get("more_body"):
            raise OSError("client went away")

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    for _ in range(3):
        with pytest.raises(OSError, match="went away"):
            await mw(http_scope(), receive, failing_send)

    # Started but never finished, app returned (pre-2.4 servers): also not counted.
    async def partial(scope: Scope, receive: Receive, send: Send) -> None:
        scope["switchgear.route"] = "/partial"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert (await receive())["type"] == "http.disconnect"

    mw2 = ASGIMiddleware(partial, registry=registry, breaker_options={"failure_threshold": 1})
    for _ in range(3):
        sent = await run_asgi(mw2, http_scope(), [{"type": "http.disconnect"}])
        assert [m["type"] for m in sent] == ["http.response.start"]
    for key in ("GET /stream", "GET /partial"):
        assert requests(registry, key) == 0
        assert requests(registry, key, "error") == 0
    assert mw.breakers()["GET /stream"].state is BreakerState.CLOSED
    assert mw2.breakers()["GET /partial"].state is BreakerState.CLOSED


async def test_cancellation_is_not_recorded(registry: CollectorRegistry) -> None:
    started = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await asyncio.sleep(3600)

    mw = ASGIMiddleware(app, registry=registry, breaker_options={"failure_threshold": 1})
    task = asyncio.ensure_future(run_asgi(mw, http_scope()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert requests(registry, "<unmatched>", "error") == 0


async def test_app_returning_without_response_is_a_failure(registry: CollectorRegistry) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    mw = ASGIMiddleware(app, registry=registry)
    await run_asgi(mw, http_scope())
    assert requests(registry, "<unmatched>", "error") == 1


async def test_recording_failure_never_breaks_the_request(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    app = make(calls, clock, registry)
    async with client(app) as c:
        await c.get("/items/1")
        route = app._core.lookup("GET", "/items/1")
        assert route is not None

        def broken(now: float, duration: float, success: bool, cold: bool) -> None:
            raise RuntimeError("metrics backend down")

        route.record = broken
        with caplog.at_level(logging.ERROR, logger="switchgear"):
            for _ in range(3):
                assert (await c.get("/items/1")).status_code == 200
    assert sum("recording an HTTP request failed" in r.message for r in caplog.records) <= 1


@pytest.mark.parametrize(
    "scope",
    [
        {"type": "http"},
        {"type": "http", "path": None, "method": None, "headers": None},
        {"type": "http", "path": "/ünïcode/ö/☃", "method": "GET"},
        {"type": "http", "path": "/%zz/%", "method": "BREW"},
        {"type": "http", "path": "/" + "a" * 100_000, "method": "GET"},
        {"type": "http", "path": "/x", "root_path": 5, "method": "GET"},
        {"type": "http", "path": "/metrics", "method": "GET", "headers": [(b"bad",)]},
    ],
)
async def test_malformed_scopes_never_crash(scope: Scope, registry: CollectorRegistry) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = ASGIMiddleware(app, registry=registry)
    sent = await run_asgi(mw, scope)
    assert sent[0]["type"] == "http.response.start"


async def test_many_distinct_paths_stay_bounded(registry: CollectorRegistry) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = ASGIMiddleware(app, registry=registry)
    for i in range(12_000):
        await run_asgi(mw, http_scope(f"/random/x{i}y"))
    assert len(mw._core.cache) <= mw._core.cache.capacity
    assert names(registry) == {"<unmatched>"}
    assert requests(registry, "<unmatched>") == 12_000


# -- endpoints --------------------------------------------------------------------------------


async def test_endpoints_and_excluded_paths_are_not_counted(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry, exclude_paths=("/healthz", "/internal/*"))
    async with client(app) as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/internal/a")).status_code == 200
        assert (await c.get("/metrics")).status_code == 200
        assert (await c.get("/switchgear")).status_code == 200
        await c.get("/items/1")
        r = await c.get("/metrics")
    assert names(registry) == {"GET /items/{id}"}
    assert r.headers["content-type"].startswith("text/plain")
    assert 'switchgear_requests_total{name="GET /items/{id}",outcome="success"} 1.0' in r.text


async def test_metrics_openmetrics_on_accept(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry)
    async with client(app) as c:
        await c.get("/items/1")
        r = await c.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        head = await c.head("/metrics")
        post = await c.post("/metrics")
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    assert head.status_code == 200
    assert head.content == b""
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"


async def test_status_document_shape(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry)
    async with client(app) as c:
        await c.get("/items/1")
        await c.get("/items/2")
        r = await c.get("/switchgear")
    doc = r.json()
    assert set(doc) == {"names", "pools", "limits", "memory", "metrics_errors"}
    entry = doc["names"]["GET /items/{id}"]
    assert entry["circuit_breaker"] == {"state": "closed"}
    assert entry["total"]["request_count"] == 2
    assert entry["total"]["success_count"] == 2
    assert set(entry["window"]) == {
        "duration",
        "request_count",
        "error_count",
        "avg_latency",
        "qps",
        "error_rate",
    }
    assert doc["pools"] == {}
    assert set(doc["memory"]) == {"used", "limit"}
    assert doc["memory"]["used"] > 0


async def test_status_document_lists_names_and_pools_protected_inside_handlers(
    registry: CollectorRegistry,
) -> None:
    """One page for the process: @protected names and their pools sit beside the routes."""
    import switchgear as sg

    pool: sg.DynamicPool[Any] = sg.DynamicPool(None, name="inner-slots", min_size=1, max_size=2)
    breaker = sg.CircuitBreaker("inner-dep", failure_threshold=1)

    @sg.protected(
        "inner-dep", breaker=breaker, pool=pool, metrics=sg.Metrics("inner-dep", registry=registry)
    )
    async def dependency() -> str:
        raise ConnectionError("down")

    async def page(request: Request) -> Response:
        try:
            return PlainTextResponse(await dependency())
        except ConnectionError:
            return PlainTextResponse("degraded")

    app = ASGIMiddleware(Starlette(routes=[Route("/page", page)]), registry=registry)
    sg.Metrics("a-plain-metrics", registry=registry).record_request(0.01, True)
    try:
        async with client(app) as c:
            assert (await c.get("/page")).text == "degraded"
            doc = (await c.get("/switchgear")).json()
        assert list(doc["names"]) == ["GET /page", "a-plain-metrics", "inner-dep"]  # routes first
        assert doc["names"]["a-plain-metrics"]["circuit_breaker"] == {"state": None}
        assert doc["names"]["a-plain-metrics"]["total"]["request_count"] == 1
        inner = doc["names"]["inner-dep"]
        assert inner["circuit_breaker"]["state"] == "open"
        (trip,) = inner["circuit_breaker"]["transitions"]  # why it is open, for the page
        assert (trip["from"], trip["to"], trip["reason"]) == (
            "closed",
            "open",
            "consecutive_failures",
        )
        assert inner["total"]["error_count"] == 1
        assert doc["pools"]["inner-slots"]["total"] == 1
    finally:
        pool.close()


async def test_endpoint_auth_token(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry, endpoint_auth="s3cret")
    async with client(app) as c:
        for path in ("/metrics", "/switchgear"):
            r = await c.get(path)
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json() == {"error": "unauthorized"}
            r = await c.get(path, headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401
            r = await c.get(path, headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200
        # Unprotected app routes are unaffected.
        assert (await c.get("/items/1")).status_code == 200


async def test_endpoint_auth_callables(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    def sync_check(headers: Any) -> bool:
        return bool(headers.get("X-Team") == "ops")

    async def async_check(headers: Any) -> bool:
        return bool(headers.get("x-team") == "ops")

    def broken(headers: Any) -> bool:
        raise RuntimeError("auth backend down")

    for check, ok in ((sync_check, 200), (async_check, 200), (broken, 401)):
        app = make(calls, clock, CollectorRegistry(), endpoint_auth=check)
        async with client(app) as c:
            assert (await c.get("/metrics")).status_code == 401
            r = await c.get("/switchgear", headers={"x-team": "ops"})
            assert r.status_code == ok
            assert "auth backend" not in r.text


async def test_endpoints_can_be_disabled(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry, metrics_path=None, status_path=None)
    async with client(app) as c:
        assert (await c.get("/metrics")).status_code == 404
        assert (await c.get("/switchgear")).status_code == 404


async def test_endpoints_under_root_path(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry)
    transport = httpx.ASGITransport(app=app, root_path="/proxy")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get("/proxy/metrics")
        assert r.status_code == 200
        await c.get("/proxy/items/5")
    assert requests(registry, "GET /items/{id}") == 1


# -- pass-through scopes ---------------------------------------------------------------------


async def test_lifespan_and_websocket_pass_through(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry)
    sent = await run_asgi(
        app,
        {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
        [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
    )
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert calls.started
    assert calls.stopped

    ws_scope = http_scope("/ws", type="websocket")
    ws_scope.pop("method")
    sent = await run_asgi(
        app,
        ws_scope,
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "hello"},
            {"type": "websocket.disconnect", "code": 1000},
        ],
    )
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "HELLO"
    assert names(registry) == set()


# -- options ------------------------------------------------------------------------------------


async def noop_app(scope: Scope, receive: Receive, send: Send) -> None:
    return None


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"metrics_path": "metrics"}, ValueError, "metrics_path"),
        ({"metrics_path": 5}, TypeError, "metrics_path"),
        ({"status_path": "/a b"}, ValueError, "status_path"),
        ({"status_path": "/metrics"}, ValueError, "status_path"),
        ({"breaker_per_route": 1}, TypeError, "breaker_per_route"),
        ({"failure_status": 500}, TypeError, "failure_status"),
        ({"breaker_options": [("failure_threshold", 1)]}, TypeError, "breaker_options"),
        ({"breaker_options": {"failure_threshold": -1}}, ValueError, "breaker_options"),
        ({"breaker_options": {"nonsense": 1}}, TypeError, "breaker_options"),
        ({"breaker_options": {"name": "x"}}, ValueError, "breaker_options"),
        ({"pool": object()}, TypeError, "pool"),
        ({"exclude_paths": "/healthz"}, TypeError, "exclude_paths"),
        ({"exclude_paths": ["healthz"]}, ValueError, "exclude_paths"),
        ({"exclude_paths": [1]}, TypeError, "exclude_paths"),
        ({"endpoint_auth": 123}, TypeError, "endpoint_auth"),
        ({"endpoint_auth": ""}, ValueError, "endpoint_auth"),
        ({"registry": {}}, TypeError, "registry"),
        ({"max_routes": 0}, ValueError, "max_routes"),
        ({"max_routes": 2.5}, TypeError, "max_routes"),
        ({"pool_full_status": 200}, ValueError, "pool_full_status"),
        ({"pool_full_status": "429"}, TypeError, "pool_full_status"),
        ({"clock": 3}, TypeError, "clock"),
    ],
)
def test_invalid_options_name_the_argument(
    options: dict[str, Any], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        ASGIMiddleware(noop_app, **options)


def test_app_must_be_callable() -> None:
    with pytest.raises(TypeError, match="app"):
        ASGIMiddleware("not an app")  # type: ignore[arg-type]


async def test_json_bodies_are_small_and_valid(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    app = make(calls, clock, registry, breaker_options={"failure_threshold": 1})
    calls.failing = True
    async with client(app) as c:
        await c.get("/flaky")
        r = await c.get("/flaky")
    assert len(r.content) < 100
    assert json.loads(r.content)["error"] == "circuit_open"


# -- pool ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool_full_status", [503, 429])
async def test_full_pool_rejects_without_calling_app(
    registry: CollectorRegistry, pool_full_status: int
) -> None:
    from switchgear import DynamicPool

    release = asyncio.Event()
    entered = asyncio.Event()
    runs = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal runs
        runs += 1
        entered.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    pool = DynamicPool(None, name="http-slots", min_size=0, max_size=1, max_waiting=0)
    try:
        mw = ASGIMiddleware(app, registry=registry, pool=pool, pool_full_status=pool_full_status)
        async with client(mw) as c:
            first = asyncio.ensure_future(c.get("/work"))
            await entered.wait()
            r = await c.get("/work")
            assert r.status_code == pool_full_status
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"] == "pool_full"
            assert runs == 1
            release.set()
            assert (await first).status_code == 200
            doc = (await c.get("/switchgear")).json()
        assert pool.stats().in_use == 0
        assert doc["pools"]["http-slots"]["total"] == 1
        assert doc["pools"]["http-slots"]["cold_starts"] == 1
        assert (
            value(registry, "switchgear_rejected_total", name="<unmatched>", reason="pool_full")
            == 1
        )
        assert value(registry, "switchgear_cold_starts_total", name="<unmatched>") == 1
        assert value(registry, "switchgear_pool_size", pool="http-slots") == 1
        # The first request's acquisition (a cold start, before any route existed) is in
        # the wait histogram: the pool is observed from construction. Endpoints take none.
        assert value(registry, "switchgear_pool_wait_seconds_count", pool="http-slots") == 1
    finally:
        pool.close()


async def test_pool_timeout_and_permit_returned(registry: CollectorRegistry) -> None:
    from switchgear import DynamicPool

    release = asyncio.Event()
    entered = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await release.wait()
        raise RuntimeError("boom")

    pool = DynamicPool(None, name="t-slots", min_size=1, max_size=1, acquire_timeout=0.05)
    try:
        mw = ASGIMiddleware(app, registry=registry, pool=pool, pool_full_status=429)
        task = asyncio.ensure_future(run_asgi(mw, http_scope("/a")))
        await entered.wait()
        sent = await run_asgi(mw, http_scope("/a"))
        assert sent[0]["status"] == 429
        assert json.loads(sent[1]["body"])["error"] == "pool_timeout"
        release.set()
        with pytest.raises(RuntimeError):
            await task
        assert pool.stats().in_use == 0  # released even though the app raised
    finally:
        pool.close()


def _int_items_app(fail: list[bool]) -> Starlette:
    async def item(request: Request) -> Response:
        if fail[0]:
            return PlainTextResponse("down", status_code=500)
        return JSONResponse({"id": request.path_params["id"]})

    return Starlette(routes=[Route("/items/{id:int}", item)])


async def test_a_404_shaped_like_a_route_counts_on_unmatched(
    clock: FakeClock, registry: CollectorRegistry
) -> None:
    """/items/<hex> looks like /items/{id:int} to the route cache, but Starlette matched nothing."""
    mw = ASGIMiddleware(_int_items_app([False]), registry=registry, clock=clock)
    hex_like = ["/items/deadbeefdeadbeef", "/items/0123456789abcdef0123"]
    async with client(mw) as c:
        # A 404 straight after the first request, before the route's object was confirmed.
        for path in ["/items/1", hex_like[1], "/items/2", *hex_like, "/items/3", hex_like[0]]:
            await c.get(path)
    assert requests(registry, "GET /items/{id:int}") == 3
    assert requests(registry, "<unmatched>") == 4
    # The 404s are remembered by path only: the shape still leads to the real route.
    assert mw._core.lookup("GET", "/items/77") is mw._core.routes()["GET /items/{id:int}"]
    assert mw._core.lookup("GET", hex_like[0]) is mw._core.routes()["<unmatched>"]


async def test_404s_shaped_like_a_route_neither_trip_nor_close_its_breaker(
    clock: FakeClock, registry: CollectorRegistry
) -> None:
    fail = [True]
    options = {"clock": clock, "failure_threshold": 2, "success_threshold": 1, "open_timeout": 5.0}
    mw = ASGIMiddleware(
        _int_items_app(fail), registry=registry, clock=clock, breaker_options=options
    )
    async with client(mw) as c:
        for i in range(2):
            assert (await c.get(f"/items/{i}")).status_code == 500
        breaker = mw.breakers()["GET /items/{id:int}"]
        assert breaker.state is BreakerState.OPEN
        clock.advance(5.0)
        assert breaker.state is BreakerState.HALF_OPEN
        # A trial permit is taken by the guess, then given back: the 404 proves nothing.
        for i in range(3):
            assert (await c.get(f"/items/abcdef012345678{i}")).status_code == 404
            assert breaker.state is BreakerState.HALF_OPEN
        fail[0] = False
        assert (await c.get("/items/9")).status_code == 200
        assert breaker.state is BreakerState.CLOSED


async def test_a_route_breakers_trip_names_the_last_failure(
    calls: Calls, clock: FakeClock, registry: CollectorRegistry
) -> None:
    """An error status is the trip's last failure; with the exception handlers installed, the
    exception a framework turned into a 500 (Starlette sends its 500 before re-raising)."""
    inner = build_app(calls, clock)
    install_exception_handlers(inner)
    options: dict[str, Any] = {"failure_threshold": 2, "clock": clock}
    app = ASGIMiddleware(inner, registry=registry, clock=clock, breaker_options=options)
    calls.failing = True
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        for _ in range(2):
            await c.get("/flaky")
            await c.get("/boom")
        doc = (await c.get("/switchgear")).json()
    flaky = app.breakers()["GET /flaky"].transitions()[-1]
    assert (flaky.reason, flaky.error_type) == ("consecutive_failures", "HTTP 500")
    assert flaky.error_message == "the app answered 500 Internal Server Error"
    boom = app.breakers()["GET /boom"].transitions()[-1]
    assert (boom.error_type, boom.error_message) == ("RuntimeError", "secret detail")
    last = doc["names"]["GET /boom"]["circuit_breaker"]["transitions"][-1]
    assert (last["reason"], last["error_type"]) == ("consecutive_failures", "RuntimeError")
    assert "secret detail" not in json.dumps(doc)  # the status document shows the type only

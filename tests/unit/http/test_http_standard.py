"""The standard HTTP server series: the same attributes as OpenTelemetry's own instrumentation.

Side by side in one process: OpenTelemetry's ASGI (and WSGI) middleware, with the stable HTTP
conventions selected, wraps switchgear's middleware, each with its own meter provider and
in-memory reader, and both record the same requests. The attribute keys and values must be
equal, except where docs/tracing.md says why they differ (``http.route``, which OpenTelemetry's
generic middleware cannot see; ``error.type`` for an exception raised before any response,
which its ASGI middleware leaves out although the conventions ask for it).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation import _semconv
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as OtelASGI
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as OtelWSGI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.test import Client

from switchgear.asgi import ASGIMiddleware
from switchgear.wsgi import WSGIMiddleware

Attributes = frozenset[tuple[str, Any]]


@pytest.fixture(autouse=True)
def stable_http_conventions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """OpenTelemetry's instrumentations with only the stable HTTP conventions."""
    stability = _semconv._OpenTelemetrySemanticConventionStability
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    monkeypatch.setattr(stability, "_initialized", False)
    monkeypatch.setattr(stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})
    yield
    stability._initialized = False


def points(reader: InMemoryMetricReader, name: str) -> Counter[Attributes]:
    """Each data point of instrument ``name``: its attributes, counted by requests (or value)."""
    data = reader.get_metrics_data()
    found: Counter[Attributes] = Counter()
    if data is None:
        return found
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    weight = point.count if isinstance(point, HistogramDataPoint) else 1
                    found[frozenset((point.attributes or {}).items())] += weight
    return found


def without(points: Counter[Attributes], key: str) -> Counter[Attributes]:
    out: Counter[Attributes] = Counter()
    for attributes, n in points.items():
        out[frozenset((k, v) for k, v in attributes if k != key)] += n
    return out


def values_of(points: Counter[Attributes], key: str) -> set[Any]:
    return {dict(attributes).get(key) for attributes in points}


# -- ASGI --------------------------------------------------------------------------------------


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def unavailable(request: Request) -> PlainTextResponse:
    return PlainTextResponse("down", status_code=503)


async def broken(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


STARLETTE = Starlette(
    routes=[
        Route("/items/{id}", item, methods=["GET", "BREW"]),
        Route("/down", unavailable),
        Route("/broken", broken),
    ]
)


def readers() -> tuple[InMemoryMetricReader, MeterProvider, InMemoryMetricReader, MeterProvider]:
    ours, theirs = InMemoryMetricReader(), InMemoryMetricReader()
    return ours, MeterProvider([ours]), theirs, MeterProvider([theirs])


async def send_each(app: Any, requests: list[tuple[str, str]]) -> list[int]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [(await client.request(m, p)).status_code for m, p in requests]


REQUESTS = [
    ("GET", "/items/1"),
    ("GET", "/items/2"),
    ("GET", "/nowhere"),
    ("GET", "/down"),
    ("GET", "/broken"),
    ("BREW", "/items/3"),
]


def test_asgi_attributes_equal_opentelemetry_asgi_instrumentation() -> None:
    ours, our_provider, theirs, their_provider = readers()
    inner = ASGIMiddleware(STARLETTE, registry=CollectorRegistry(), meter_provider=our_provider)
    app = OtelASGI(inner, meter_provider=their_provider)
    statuses = asyncio.run(send_each(app, REQUESTS))
    assert statuses == [200, 200, 404, 503, 500, 200]

    duration = "http.server.request.duration"
    mine, reference = points(ours, duration), points(theirs, duration)
    assert sum(reference.values()) == len(REQUESTS)
    # OpenTelemetry's generic ASGI middleware never knows the route; everything else agrees.
    assert without(mine, "http.route") == reference
    assert values_of(mine, "http.route") == {"/items/{id}", "/down", "/broken", None}
    assert dict(next(a for a in mine if dict(a).get("http.response.status_code") == 500)) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.route": "/broken",
        "http.response.status_code": 500,
        "network.protocol.version": "1.1",
        "error.type": "500",
    }
    assert values_of(mine, "http.request.method") == {"GET", "_OTHER"}

    active = "http.server.active_requests"
    assert set(points(ours, active)) == set(points(theirs, active))
    assert set(points(ours, active)) == {
        frozenset({("http.request.method", "GET"), ("url.scheme", "http")}),
        frozenset({("http.request.method", "_OTHER"), ("url.scheme", "http")}),
    }


async def raw_raises(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        raise ValueError("before any response")


def test_asgi_exception_before_a_response_has_its_class_as_error_type() -> None:
    """The documented difference: OpenTelemetry's ASGI middleware records neither a status nor
    an error type for it; the conventions ask for the exception's class, which switchgear gives.
    """
    ours, our_provider, theirs, their_provider = readers()
    inner = ASGIMiddleware(raw_raises, registry=CollectorRegistry(), meter_provider=our_provider)
    asyncio.run(send_each(OtelASGI(inner, meter_provider=their_provider), [("GET", "/x")]))
    duration = "http.server.request.duration"
    (mine,) = points(ours, duration)
    (reference,) = points(theirs, duration)
    assert dict(mine) == {**dict(reference), "error.type": "ValueError"}
    assert "http.response.status_code" not in dict(mine)


# -- WSGI --------------------------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise KeyError("no such thing")
    status = {"/ok": "200 OK", "/down": "503 Service Unavailable"}.get(path, "404 Not Found")
    start_response(status, [("Content-Type", "text/plain")])
    return [b"body"]


def test_wsgi_attributes_equal_opentelemetry_wsgi_instrumentation() -> None:
    ours, our_provider, theirs, their_provider = readers()
    inner = WSGIMiddleware(wsgi_app, registry=CollectorRegistry(), meter_provider=our_provider)
    client = Client(OtelWSGI(inner, meter_provider=their_provider))
    for method, path in [("GET", "/ok"), ("GET", "/nowhere"), ("GET", "/down"), ("BREW", "/ok")]:
        response = client.open(path, method=method)
        response.get_data()  # the body read to its end: recorded
        response.close()
    with pytest.raises(KeyError):
        client.get("/raise")

    duration = "http.server.request.duration"
    mine, reference = points(ours, duration), points(theirs, duration)
    assert sum(reference.values()) == 5
    assert mine == reference  # a plain WSGI app has no route: no http.route on either side
    assert {dict(a).get("error.type") for a in mine} == {None, "503", "KeyError"}
    active = "http.server.active_requests"
    assert set(points(ours, active)) == set(points(theirs, active))


# -- cardinality -------------------------------------------------------------------------------

STATUSES = [200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 409, 410, 418, 422, 429]
STATUSES += [500, 502, 503, 504]


async def coded(request: Request) -> PlainTextResponse:
    return PlainTextResponse("", status_code=STATUSES[int(request.path_params["id"]) // 40 % 20])


async def drive(app: Any, method: str, path: str) -> None:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "root_path": ""}
    scope["scheme"] = "http"
    scope |= {"http_version": "1.1", "query_string": b"", "headers": [], "server": None}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(scope, receive, send)


def test_ten_thousand_paths_and_twenty_statuses_stay_bounded() -> None:
    routes = [Route(f"/r{k}/{{id}}", coded) for k in range(10)]
    registry = CollectorRegistry()
    app = ASGIMiddleware(Starlette(routes=routes), registry=registry, max_routes=5)

    async def run() -> None:
        for i in range(10_000):
            path = f"/r{i % 10}/{i}" if i % 4 else f"/unknown/{i}"
            await drive(app, "GET" if i % 3 else "POST", path)

    asyncio.run(run())
    series = [
        s.labels
        for family in registry.collect()
        if family.name == "http_server_request_duration_seconds"
        for s in family.samples
        if s.name.endswith("_count")
    ]
    routes_seen = {labels.get("http_route") for labels in series}
    # Five templates within max_routes (the fifth key taken by a POST), the rest <other>,
    # and no route for the 404s.
    assert "<other>" in routes_seen
    assert None in routes_seen
    assert len(routes_seen) <= 5 + 2
    assert len({labels["http_response_status_code"] for labels in series}) == 21  # 20 + 404
    assert len(series) <= len(routes_seen) * 2 * 21
    assert all(not label.startswith("/unknown/") for label in routes_seen if label)


def test_odd_server_values_are_recorded_bounded_and_every_time() -> None:
    """Values a broken or unusual server gives (an unhashable protocol, an unknown scheme, a
    lower-case method, ever-new protocol strings) are recorded as absent or ``_OTHER``, on
    every request alike, and leave no request counted active."""
    registry = CollectorRegistry()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["switchgear.route"] = "/thing"
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    middleware = WSGIMiddleware(app, registry=registry)
    odd = [
        ("GET", "http", ["HTTP", "1.1"]),  # unhashable
        ("GET", "gopher", "HTTP/1.1"),
        ("get", "http", "HTTP/1.1"),
        *(("GET", "https", f"HTTP/9.{i}") for i in range(300)),
    ]
    for method, scheme, protocol in odd * 2:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": "/thing",
            "SERVER_PROTOCOL": protocol,
            "wsgi.url_scheme": scheme,
        }
        body = middleware(environ, lambda status, headers, exc_info=None: None)
        assert list(body) == [b"ok"]
        getattr(body, "close", lambda: None)()

    counts: Counter[tuple[str, str, str]] = Counter()
    active = 0.0
    for family in registry.collect():
        for s in family.samples:
            if s.name == "http_server_request_duration_seconds_count":
                labels = s.labels
                key = (
                    labels["http_request_method"],
                    labels.get("url_scheme", ""),
                    labels.get("network_protocol_version", ""),
                )
                counts[key] += int(s.value)
            elif s.name == "http_server_active_requests":
                active += s.value
    assert counts == {
        ("GET", "http", ""): 2,
        ("GET", "", "1.1"): 2,
        ("_OTHER", "http", "1.1"): 2,
        ("GET", "https", ""): 600,
    }
    assert active == 0

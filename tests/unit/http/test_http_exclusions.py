"""``exclude_paths`` with regular expressions, ``exclude_methods``: passed through, uncounted."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from werkzeug.test import Client

from switchgear.asgi import ASGIMiddleware
from switchgear.wsgi import WSGIMiddleware

EXCLUSIONS: dict[str, Any] = {
    "exclude_paths": ("/healthz", re.compile(r"/static/[\w/]+\.(css|js)")),
    "exclude_methods": ("OPTIONS",),
}


def counted(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Requests per (method, path template or name) in both the standard and own series."""
    out: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == "http_server_request_duration_seconds_count":
                out[("http", s.labels["http_request_method"])] = s.value
            elif s.name == "switchgear_request_duration_seconds_count":
                out[("own", s.labels["name"])] = s.value
    return out


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_asgi_excluded_paths_and_methods_reach_the_app_uncounted() -> None:
    registry = CollectorRegistry()
    app = ASGIMiddleware(asgi_app, registry=registry, **EXCLUSIONS)

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            requests = [
                ("GET", "/healthz"),
                ("GET", "/static/app/site.css"),
                ("OPTIONS", "/items"),
                ("GET", "/static/app/site.css.map"),  # not a whole match: counted
                ("GET", "/items"),
            ]
            return [(await client.request(m, p)).status_code for m, p in requests]

    assert asyncio.run(run()) == [200] * 5
    assert counted(registry) == {("http", "GET"): 2, ("own", "<unmatched>"): 2}


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def test_wsgi_excluded_paths_and_methods_reach_the_app_uncounted() -> None:
    registry = CollectorRegistry()
    client = Client(WSGIMiddleware(wsgi_app, registry=registry, **EXCLUSIONS))
    for method, path in [("OPTIONS", "/x"), ("GET", "/static/a.js"), ("GET", "/x")]:
        response = client.open(path, method=method)
        assert response.get_data() == b"ok"
        response.close()
    assert counted(registry) == {("http", "GET"): 1, ("own", "<unmatched>"): 1}


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"exclude_paths": [re.compile(rb"/x")]}, TypeError, "compiled from str"),
        ({"exclude_paths": [42]}, TypeError, "strings or compiled regular expressions"),
        ({"exclude_methods": "OPTIONS"}, TypeError, "exclude_methods must be a collection"),
        ({"exclude_methods": ["OPTIONS", ""]}, ValueError, "exclude_methods items"),
        ({"exclude_methods": [None]}, ValueError, "exclude_methods items"),
    ],
)
def test_bad_exclusions_are_refused_naming_the_option(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ASGIMiddleware(asgi_app, registry=CollectorRegistry(), **options)

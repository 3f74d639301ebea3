"""Readiness and the control plane, in process: options refused at construction, the
``critical`` predicate, and the answers to odd requests through the WSGI middleware."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear.asgi import ASGIMiddleware
from switchgear.wsgi import WSGIMiddleware


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def call(
    mw: WSGIMiddleware, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[str, Any]:
    seen: list[str] = []
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    if "HTTP_CONTENT_TYPE" in environ:
        environ["CONTENT_TYPE"] = environ.pop("HTTP_CONTENT_TYPE")
    out = b"".join(mw(environ, lambda status, h, exc=None: seen.append(status)))
    return seen[0], json.loads(out) if out.startswith(b"{") else out


def test_the_control_plane_is_refused_without_auth_or_a_status_path() -> None:
    reg = CollectorRegistry()
    with pytest.raises(ValueError, match="control_plane=True needs endpoint_auth"):
        ASGIMiddleware(app, control_plane=True, registry=reg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a status_path"):
        WSGIMiddleware(
            app, control_plane=True, endpoint_auth="t0ken-1234", status_path=None, registry=reg
        )
    with pytest.raises(TypeError, match="control_plane must be a bool"):
        WSGIMiddleware(app, control_plane="yes", registry=reg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ready_path must differ"):
        WSGIMiddleware(app, ready_path="/metrics", registry=reg)
    with pytest.raises(TypeError, match="critical must be a collection"):
        WSGIMiddleware(app, critical="db", registry=reg)
    with pytest.raises(TypeError, match="critical names must be strings"):
        WSGIMiddleware(app, critical=[1], registry=reg)  # type: ignore[list-item]


def test_readiness_counts_only_critical_breakers_that_are_open() -> None:
    reg = CollectorRegistry()
    mw = WSGIMiddleware(app, critical=lambda name: name.startswith("db"), registry=reg)
    call(mw, "GET", "/db/orders")
    call(mw, "GET", "/cache")
    breakers = mw.breakers()
    assert call(mw, "GET", "/switchgear/ready") == ("200 OK", {"ready": True, "open": []})
    breakers["<unmatched>"].force_open()  # not critical: still ready
    assert call(mw, "GET", "/switchgear/ready")[0] == "200 OK"
    critical = sg.CircuitBreaker("db-main")
    from switchgear._breaker.registry import shared_breaker

    shared_breaker("db-main", lambda: critical, reg)
    critical.force_open()
    assert call(mw, "GET", "/switchgear/ready") == (
        "503 Service Unavailable",
        {"ready": False, "open": ["db-main"]},
    )
    critical.reset()
    assert call(mw, "GET", "/switchgear/ready")[0] == "200 OK"
    assert call(mw, "DELETE", "/switchgear/ready")[0].startswith("405")


def test_control_requests_that_change_nothing() -> None:
    reg = CollectorRegistry()
    mw = WSGIMiddleware(app, control_plane=True, endpoint_auth="t0ken-1234", registry=reg)
    auth = {"Authorization": "Bearer t0ken-1234", "Content_Type": "application/json"}
    call(mw, "GET", "/hello")
    path = "/switchgear/breakers/<unmatched>"
    big = json.dumps({"action": "reset", "pad": "x" * 5000}).encode()
    assert call(mw, "POST", path, big, **auth)[0].startswith("413")
    assert call(mw, "PUT", path, b'{"action":"reset"}', **auth)[0].startswith("405")
    assert call(mw, "POST", path, b'["reset"]', **auth)[0].startswith("400")
    status, body = call(mw, "POST", path, b'{"action":"disable"}', **auth)
    assert (status, body["state"]) == ("200 OK", "disabled")
    assert mw.breakers()["<unmatched>"].state is sg.BreakerState.DISABLED

"""Framework exceptions under real servers: uvicorn + FastAPI, gunicorn + Flask.

A route whose inner ``@protected`` dependency is open answers ``503`` with ``Retry-After``
and the dependency's name, and the route's own breaker stays CLOSED; an exception in the
route breakers' ``ignore_on`` moves nothing and is recorded as a success.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.test_http_servers import Server, sample, scrape, start

pytestmark = pytest.mark.timeout(90)


def _uvicorn(tmp: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.apps.framework_apps:asgi_app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return start(argv, {}, tmp, port)


def _gunicorn(tmp: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "tests.apps.framework_apps:wsgi_app"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning"]
    return start(argv, {}, tmp, port)


@pytest.fixture(params=["uvicorn+fastapi", "gunicorn+flask"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    srv = _uvicorn(tmp_path) if request.param.startswith("uvicorn") else _gunicorn(tmp_path)
    yield srv
    srv.stop()


def test_open_dependency_answers_503_and_spares_the_route(server: Server) -> None:
    with server.client() as c:
        assert c.get("/dep").json() == {"inventory": "ok"}
        c.get("/control/fail")
        # The failure that opens the dependency. uvicorn closes a connection whose app
        # raised, so each request that ends in an exception gets a connection of its own.
        assert httpx.get(f"{server.url}/dep").status_code == 500
        for _ in range(50):
            r = c.get("/dep")
            assert r.status_code == 503
            assert 59 <= int(r.headers["retry-after"]) <= 60
            assert r.json()["name"] == "inventory"
            assert r.json()["error"] == "circuit_open"
        doc = c.get("/switchgear").json()
        samples = scrape(c)
    assert doc["names"]["GET /dep"]["circuit_breaker"]["state"] == "closed"
    assert doc["names"]["inventory"]["circuit_breaker"]["state"] == "open"
    assert (
        sample(samples, "switchgear_rejected_total", name="GET /dep", reason="circuit_open") == 50
    )
    assert sample(samples, "switchgear_requests_total", name="GET /dep", outcome="error") == 1
    # No traceback per rejection: the handlers answered them.
    assert server.log.read_text().count("CircuitOpenError") == 0


def test_ignored_exception_leaves_the_route_closed(server: Server) -> None:
    with server.client() as c:
        for _ in range(10):
            assert httpx.get(f"{server.url}/ignored").status_code == 500
        doc = c.get("/switchgear").json()
        samples = scrape(c)
    assert doc["names"]["GET /ignored"]["circuit_breaker"]["state"] == "closed"
    assert (
        sample(samples, "switchgear_requests_total", name="GET /ignored", outcome="success") == 10
    )
    assert sample(samples, "switchgear_requests_total", name="GET /ignored", outcome="error") == 0


def test_django_under_gunicorn(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "tests.apps.django_app:application"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning"]
    server = start(argv, {}, tmp_path, port)
    try:
        with server.client() as c:
            for pk in range(5):
                assert c.get(f"/items/{pk}/").json() == {"id": pk}
            assert c.get("/dep/").json() == {"inventory": "ok"}
            c.get("/control/fail")
            assert c.get("/dep/").status_code == 500  # opens the inventory breaker
            for _ in range(50):
                r = c.get("/dep/")
                assert r.status_code == 503
                assert r.json()["name"] == "django-inventory"
                assert 59 <= int(r.headers["retry-after"]) <= 60
            for _ in range(5):
                assert c.get("/ignored/").status_code == 500
            doc = c.get("/switchgear").json()
            samples = scrape(c)
    finally:
        server.stop()
    names = doc["names"]
    assert names["GET /dep/"]["circuit_breaker"]["state"] == "closed"
    assert names["GET /ignored/"]["circuit_breaker"]["state"] == "closed"
    assert (
        sample(samples, "switchgear_requests_total", name="GET /items/<int:pk>/", outcome="success")
        == 5
    )
    assert (
        sample(samples, "switchgear_rejected_total", name="GET /dep/", reason="circuit_open") == 50
    )
    assert (
        sample(samples, "switchgear_requests_total", name="GET /ignored/", outcome="success") == 5
    )

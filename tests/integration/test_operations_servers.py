"""Readiness and the control plane under real uvicorn and gunicorn, and fleet-wide through a
real redis-server (two uvicorn processes sharing one breaker)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from benchmarks.redis_server import redis_server

from tests.conftest import free_port, require_binary
from tests.integration.test_http_servers import Server, sample, start

pytestmark = pytest.mark.timeout(90)

TOKEN = "operations-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONTROL = "/switchgear/breakers/inventory"


def scrape(c: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(c.get("/metrics", headers=AUTH).text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def uvicorn(tmp: Path, **env: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.apps.operations_apps:asgi_app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return start(argv, {"SWITCHGEAR_TEST_TOKEN": TOKEN, **env}, tmp, port)


def gunicorn(tmp: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "tests.apps.operations_apps:wsgi_app"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning"]
    return start(argv, {"SWITCHGEAR_TEST_TOKEN": TOKEN}, tmp, port)


@pytest.fixture(params=["uvicorn", "gunicorn"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    srv = uvicorn(tmp_path) if request.param == "uvicorn" else gunicorn(tmp_path)
    yield srv
    srv.stop()


def test_readiness_follows_the_critical_breaker(server: Server) -> None:
    with server.client() as c:
        assert c.get("/stock").status_code == 200
        r = c.get("/switchgear/ready")
        assert (r.status_code, r.json()) == (200, {"ready": True, "open": []})
        c.get("/control/fail")
        assert c.get("/stock").status_code == 502  # the failure that opens it
        r = c.get("/switchgear/ready")  # the very next request
        assert (r.status_code, r.json()) == (503, {"ready": False, "open": ["inventory"]})
        c.get("/control/heal")
        time.sleep(1.05)  # open_timeout: the next call is a trial, and closes it
        assert c.get("/stock").status_code == 200
        assert c.get("/switchgear/ready").status_code == 200
        assert c.post("/switchgear/ready").status_code == 405


def test_control_plane_actions_and_refusals(server: Server) -> None:
    with server.client() as c:

        def post(path: str = CONTROL, **kwargs: object) -> httpx.Response:
            return c.post(path, **kwargs)  # type: ignore[arg-type]

        body = {"action": "force_open"}
        assert post(json=body).status_code == 401  # no token
        assert post(json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert post(f"{CONTROL}?token={TOKEN}", json=body).status_code == 401  # no query tokens
        assert c.get(CONTROL, headers=AUTH).status_code == 405  # never through a GET
        assert c.get(f"{CONTROL}?action=force_open", headers=AUTH).status_code == 405
        # A cross-origin form post cannot send JSON: refused before anything happens.
        assert post(data={"action": "force_open"}, headers=AUTH).status_code == 415
        assert (
            post(
                content=b"not json", headers={**AUTH, "Content-Type": "application/json"}
            ).status_code
            == 400
        )
        assert post(json={"action": "explode"}, headers=AUTH).status_code == 400
        assert post("/switchgear/breakers/nobody", json=body, headers=AUTH).status_code == 404
        assert c.get("/stock").status_code == 200  # nothing above changed anything

        r = post(json=body, headers=AUTH)
        assert (r.status_code, r.json()["state"]) == (200, "forced_open")
        assert c.get("/stock").status_code == 503
        doc = c.get("/switchgear", headers=AUTH).json()
        held = doc["names"]["inventory"]["circuit_breaker"]
        assert (held["state"], held["manual"]) == ("forced_open", True)
        assert held["transitions"][-1]["reason"] == "manual"
        assert c.get("/switchgear/ready").status_code == 503
        assert post(json={"action": "disable"}, headers=AUTH).json()["state"] == "disabled"
        assert post(json={"action": "reset"}, headers=AUTH).json()["state"] == "closed"
        assert c.get("/stock").status_code == 200
        samples = scrape(c)
    for action in ("force_open", "disable", "reset"):  # counted once each, refusals not
        labels = {"name": "inventory", "action": action}
        assert sample(samples, "switchgear_circuit_manual_actions_total", **labels) == 1
    assert "force_open on breaker 'inventory'" in server.log.read_text()


def test_a_force_open_reaches_another_process_through_redis(tmp_path: Path) -> None:
    require_binary("redis-server")
    with redis_server() as port:
        assert port is not None
        one = uvicorn(tmp_path, SWITCHGEAR_TEST_REDIS_PORT=str(port))
        two = uvicorn(tmp_path, SWITCHGEAR_TEST_REDIS_PORT=str(port))
        try:
            with one.client() as a, two.client() as b:
                assert a.get("/stock").status_code == b.get("/stock").status_code == 200
                r = a.post(CONTROL, json={"action": "force_open"}, headers=AUTH)
                assert r.status_code == 200
                start_wait = time.monotonic()
                while b.get("/stock").status_code != 503:
                    assert time.monotonic() - start_wait < 0.5 + 0.5  # max_staleness + slack
                    time.sleep(0.01)
                a.post(CONTROL, json={"action": "reset"}, headers=AUTH)
                start_wait = time.monotonic()
                while b.get("/stock").status_code != 200:
                    assert time.monotonic() - start_wait < 1.0
                    time.sleep(0.01)
        finally:
            one.stop()
            two.stop()

"""The middleware's adaptive limit under a real uvicorn, over real HTTP."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.test_http_servers import AUTH, TOKEN, scrape, start

pytestmark = pytest.mark.timeout(60)


def test_requests_beyond_the_limit_get_503_and_the_gauges_show_it(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.apps.limit_apps:app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    server = start(argv, {"SWITCHGEAR_TEST_TOKEN": TOKEN}, tmp_path, port)
    try:
        with server.client() as c:
            assert c.get("/fast").status_code == 200  # the route is learned
            held: list[int] = []
            holders = [
                threading.Thread(
                    target=lambda: held.append(
                        httpx.get(f"{server.url}/hold", timeout=30).status_code
                    )
                )
                for _ in range(2)
            ]
            for t in holders:
                t.start()
            deadline = time.monotonic() + 20
            while c.get("/switchgear", headers=AUTH).json()["limits"]["server"]["in_flight"] < 2:
                assert time.monotonic() < deadline, "the two held requests never arrived"
                time.sleep(0.02)
            refused = [c.get("/fast") for _ in range(3)]
            assert [r.status_code for r in refused] == [503, 503, 503]
            assert refused[0].json()["error"] == "limit"
            assert refused[0].headers["Retry-After"] == "1"
            samples = scrape(c)
            key = ("switchgear_limit_in_flight", (("name", "server"),))
            assert samples[key] == 2
            assert samples[("switchgear_limit_current", (("name", "server"),))] == 2
            rejected = ("switchgear_rejected_total", (("name", "GET /fast"), ("reason", "limit")))
            assert samples[rejected] == 3
            c.get("/control/release")
            for t in holders:
                t.join(30)
            assert held == [200, 200]
            assert c.get("/fast").status_code == 200
            assert c.get("/switchgear", headers=AUTH).json()["limits"]["server"]["in_flight"] == 0
    finally:
        server.stop()

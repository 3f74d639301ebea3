"""The middleware under real servers on 127.0.0.1: uvicorn (ASGI) and gunicorn (WSGI).

Each server is a subprocess on a free port, polled until it answers and always terminated in
the fixture's finalizer. The multiprocess test runs gunicorn with 3 workers and
``PROMETHEUS_MULTIPROC_DIR``: every scrape, whichever worker answers it, must report the
whole server's count.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "integration-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.timeout(60)


class Server:
    """A server subprocess and the base URL it listens on."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


def start(argv: list[str], env: dict[str, str], tmp: Path, port: int) -> Server:
    log = tmp / f"server-{port}.log"
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=out, stderr=out)
    server = Server(proc, port, log)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited early ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/control/ping", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"server did not become ready:\n{log.read_text()}")
        time.sleep(0.05)


def uvicorn(tmp: Path, **env: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.apps.starlette_app:app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return start(argv, {"SWITCHGEAR_TEST_TOKEN": TOKEN, **env}, tmp, port)


def gunicorn(tmp: Path, workers: int, **env: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "tests.apps.flask_app:app"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync"]
    argv += [
        "--config",
        str(ROOT / "tests" / "apps" / "gunicorn_conf.py"),
        "--log-level",
        "warning",
    ]
    state = tmp / f"state-{port}"
    state.mkdir()
    return start(
        argv,
        {"SWITCHGEAR_TEST_TOKEN": TOKEN, "SWITCHGEAR_TEST_STATE_DIR": str(state), **env},
        tmp,
        port,
    )


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200, r.text
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def sample(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def request_names(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    return {dict(k[1])["name"] for k in samples if k[0] == "switchgear_requests_total"}


# -- uvicorn + Starlette ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uvicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = uvicorn(tmp_path_factory.mktemp("uvicorn"))
    yield server
    server.stop()


def test_uvicorn_route_template_and_auth(uvicorn_server: Server) -> None:
    # The server is shared by the module: compare with what it had counted before.
    with uvicorn_server.client() as c:
        before = scrape(c)
        doc_before = c.get("/switchgear", headers=AUTH).json()
        for i in range(100):
            assert c.get(f"/items/{i}").status_code == 200
        assert c.get("/metrics").status_code == 401
        r = c.get("/switchgear")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        samples = scrape(c)
        doc = c.get("/switchgear", headers=AUTH).json()
    success = {"name": "GET /items/{id}", "outcome": "success"}
    assert (
        sample(samples, "switchgear_requests_total", **success)
        - sample(before, "switchgear_requests_total", **success)
        == 100
    )
    seen = request_names(samples)
    assert "GET /control/{action}" not in seen  # excluded
    assert [n for n in seen if "/items/" in n] == ["GET /items/{id}"]  # one series, no raw ids
    entry = doc["names"]["GET /items/{id}"]
    counted_before = doc_before["names"].get("GET /items/{id}", {"total": {"request_count": 0}})
    assert entry["total"]["request_count"] - counted_before["total"]["request_count"] == 100
    assert entry["circuit_breaker"]["state"] == "closed"
    assert set(doc) == {"names", "pools", "limits", "memory", "metrics_errors"}


def test_uvicorn_503_retry_after_and_recovery(uvicorn_server: Server) -> None:
    with uvicorn_server.client() as c:
        c.get("/control/fail")
        for _ in range(3):
            assert c.get("/flaky").status_code == 500
        r = c.get("/flaky")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.json() == {"error": "circuit_open", "name": "GET /flaky", "retry_after": 1}
        c.get("/control/heal")
        time.sleep(1.1)  # open_timeout = 1 s
        assert c.get("/flaky").status_code == 200
        doc = c.get("/switchgear", headers=AUTH).json()
        samples = scrape(c)
    flaky = doc["names"]["GET /flaky"]["circuit_breaker"]
    assert flaky["state"] == "closed"
    assert next((t["to"], t["reason"]) for t in flaky["transitions"]) == (
        "open",
        "consecutive_failures",
    )
    assert (
        sample(samples, "switchgear_rejected_total", name="GET /flaky", reason="circuit_open") == 1
    )
    assert sample(samples, "switchgear_requests_total", name="GET /flaky", outcome="error") == 3
    assert (
        sample(
            samples,
            "switchgear_circuit_transitions_total",
            name="GET /flaky",
            from_state="half_open",
            to_state="closed",
        )
        == 1
    )


def test_uvicorn_streaming_latency(uvicorn_server: Server) -> None:
    # The server is shared by the module: compare with what it had recorded before.
    with uvicorn_server.client() as c:
        before = scrape(c)
    with uvicorn_server.client() as c, c.stream("GET", "/stream") as r:
        assert b"".join(r.iter_bytes()) == b"chunk 0\nchunk 1\nchunk 2\n"
    with uvicorn_server.client() as c:
        samples = scrape(c)

    def added(metric: str, **labels: str) -> float:
        return sample(samples, metric, **labels) - sample(before, metric, **labels)

    total = added("switchgear_request_duration_seconds_sum", name="GET /stream")
    assert 0.3 <= total < 1.5
    le = "switchgear_request_duration_seconds_bucket"
    assert added(le, name="GET /stream", le="0.25") == 0
    assert added(le, name="GET /stream", le="+Inf") == 1


def test_uvicorn_websocket_passthrough(uvicorn_server: Server) -> None:
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{uvicorn_server.port}/ws") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "HELLO"
    with uvicorn_server.client() as c:
        assert "GET /ws" not in request_names(scrape(c))


def test_uvicorn_lifespan_still_runs(tmp_path: Path) -> None:
    marker = tmp_path / "lifespan.txt"
    server = uvicorn(tmp_path, SWITCHGEAR_TEST_LIFESPAN_FILE=str(marker))
    try:
        assert marker.read_text() == "startup\n"
        with server.client() as c:
            assert c.get("/items/1").status_code == 200
    finally:
        server.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM to report how it was stopped.
    assert server.proc.returncode in (0, -signal.SIGTERM)
    assert marker.read_text() == "startup\nshutdown\n"


def test_uvicorn_survives_malformed_requests(uvicorn_server: Server) -> None:
    raw_requests = [
        b"GET /items/%zz%ff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
        b"BREW /items/1 HTTP/1.1\r\n\r\n",
    ]
    for raw in raw_requests:
        with socket.create_connection(("127.0.0.1", uvicorn_server.port), timeout=5) as s:
            s.sendall(raw)
            reply = s.recv(65536)
        assert reply.startswith(b"HTTP/1.1 ")
        assert b"Traceback" not in reply
    # A client that goes away mid-stream.
    with socket.create_connection(("127.0.0.1", uvicorn_server.port), timeout=5) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(10)
    time.sleep(0.4)
    with uvicorn_server.client() as c:
        assert c.get("/items/1").status_code == 200
        samples = scrape(c)
    assert sample(samples, "switchgear_requests_total", name="GET /stream", outcome="error") == 0


# -- gunicorn + Flask ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = gunicorn(tmp_path_factory.mktemp("gunicorn"), workers=1)
    yield server
    server.stop()


def test_gunicorn_flask_basics(gunicorn_server: Server) -> None:
    with gunicorn_server.client() as c:
        for i in range(100):
            assert c.get(f"/items/{i}").status_code == 200
        assert c.get("/metrics").status_code == 401
        c.get("/control/fail")
        for _ in range(3):
            assert c.get("/flaky").status_code == 500
        r = c.get("/flaky")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        c.get("/control/heal")
        time.sleep(1.1)
        assert c.get("/flaky").status_code == 200
        assert c.get("/stream").text == "chunk 0\nchunk 1\nchunk 2\n"
        samples = scrape(c)
        doc = c.get("/switchgear", headers=AUTH).json()
    name = "GET /items/<int:item_id>"
    assert sample(samples, "switchgear_requests_total", name=name, outcome="success") == 100
    assert (
        sample(samples, "switchgear_rejected_total", name="GET /flaky", reason="circuit_open") == 1
    )
    assert sample(samples, "switchgear_request_duration_seconds_sum", name="GET /stream") >= 0.3
    flaky = doc["names"]["GET /flaky"]["circuit_breaker"]
    assert flaky["state"] == "closed"
    assert next((t["to"], t["reason"]) for t in flaky["transitions"]) == (
        "open",
        "consecutive_failures",
    )
    assert "GET /control/<action>" not in request_names(samples)


def test_gunicorn_three_workers_multiprocess(tmp_path: Path) -> None:
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    server = gunicorn(
        tmp_path,
        workers=3,
        PROMETHEUS_MULTIPROC_DIR=str(mp_dir),
        SWITCHGEAR_TEST_ITEM_DELAY="0.02",
    )
    try:
        n = 90

        def get(i: int) -> int:
            with httpx.Client(base_url=server.url, timeout=10.0) as c:
                r = c.get(f"/items/{i}")
                assert r.status_code == 200
                pid: int = r.json()["pid"]
                return pid

        with ThreadPoolExecutor(max_workers=6) as ex:
            pids = set(ex.map(get, range(n)))
        assert len(pids) >= 2, "requests were not spread over several workers"

        def count(_: int) -> float:
            with httpx.Client(base_url=server.url, timeout=10.0) as c:
                return sample(
                    scrape(c),
                    "switchgear_requests_total",
                    name="GET /items/<int:item_id>",
                    outcome="success",
                )

        with ThreadPoolExecutor(max_workers=3) as ex:
            counts = list(ex.map(count, range(12)))
        assert counts == [n] * 12
    finally:
        server.stop()

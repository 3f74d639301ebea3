"""The runnable examples in examples/, started for real and exercised over HTTP.

Each web example runs under the server its docstring tells users to run it with (uvicorn for
the ASGI apps, gunicorn with two workers and ``PROMETHEUS_MULTIPROC_DIR`` for Flask) on a
free 127.0.0.1 port; requests go through httpx. The plain-function example runs as a script.
"""

from __future__ import annotations

import os
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
TOKEN = "example-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.timeout(90)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Server:
    def __init__(self, argv: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), "METRICS_TOKEN": TOKEN, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + path, headers=AUTH, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"server did not become ready:\n{self.log.read_text()}")
            time.sleep(0.05)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)

    def stop(self) -> None:
        stop_process(self.proc)


def uvicorn(module: str, tmp: Path, ready_path: str) -> Iterator[Server]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--log-level", "warning"]
    server = Server(argv, {}, port, tmp / "uvicorn.log")
    try:
        server.wait_ready(ready_path)
        yield server
    finally:
        server.stop()


def scrape(client: httpx.Client) -> Samples:
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


# -- examples/fastapi_app.py under uvicorn ---------------------------------------------------


@pytest.fixture(scope="module")
def fastapi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from uvicorn("examples.fastapi_app", tmp_path_factory.mktemp("fastapi"), "/healthz")


def test_fastapi_example_metrics_and_auth(fastapi_server: Server) -> None:
    with fastapi_server.client() as c:
        for item_id in (1, 2, 42, 1):
            assert c.get(f"/items/{item_id}").status_code == 200
        assert c.get("/items/7").status_code == 404  # a client error, not a failure
        assert c.get("/metrics").status_code == 401
        assert c.get("/switchgear").status_code == 401
        samples = scrape(c)
        status = c.get("/switchgear", headers=AUTH).json()
    name = "GET /items/{item_id}"
    assert sample(samples, "switchgear_requests_total", name=name, outcome="success") == 5
    assert sample(samples, "switchgear_requests_total", name=name, outcome="error") == 0
    assert sample(samples, "switchgear_request_duration_seconds_count", name=name) == 5
    assert sample(samples, "switchgear_circuit_state", name=name, state="closed") == 1
    names = {dict(labels).get("name") for metric, labels in samples}
    assert "GET /healthz" not in names  # excluded
    assert status["names"][name]["total"]["request_count"] == 5
    assert status["names"][name]["circuit_breaker"] == {"state": "closed"}


def test_fastapi_example_trips_and_rejects(fastapi_server: Server) -> None:
    with fastapi_server.client() as c:
        assert c.get("/reports/daily").status_code == 200
        assert c.post("/admin/reports/down").status_code == 200
        assert [c.get("/reports/daily").status_code for _ in range(3)] == [502, 502, 502]
        r = c.get("/reports/daily")
        assert r.status_code == 503
        assert 1 <= int(r.headers["retry-after"]) <= 10
        assert r.json()["error"] == "circuit_open"
        assert r.json()["name"] == "GET /reports/{kind}"
        c.post("/admin/reports/up")
        samples = scrape(c)
    name = "GET /reports/{kind}"
    assert sample(samples, "switchgear_requests_total", name=name, outcome="error") == 3
    assert sample(samples, "switchgear_rejected_total", name=name, reason="circuit_open") == 1
    assert sample(samples, "switchgear_circuit_state", name=name, state="open") == 1
    transitions = "switchgear_circuit_transitions_total"
    assert sample(samples, transitions, name=name, from_state="closed", to_state="open") == 1


# -- examples/starlette_app.py under uvicorn -------------------------------------------------


@pytest.fixture(scope="module")
def starlette_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from uvicorn("examples.starlette_app", tmp_path_factory.mktemp("starlette"), "/metrics")


def test_starlette_example_routes_pool_and_stream(starlette_server: Server) -> None:
    with starlette_server.client() as c:
        for sku in ("a1", "b2", "c3"):
            r = c.get(f"/products/{sku}")
            assert r.status_code == 200
            assert r.json()["see_also"] == [f"{sku}-case", f"{sku}-charger"]
        assert c.get("/export").text == "row 0\nrow 1\nrow 2\n"
        samples = scrape(c)
    name = "GET /products/{sku}"
    assert sample(samples, "switchgear_requests_total", name=name, outcome="success") == 3
    assert sample(samples, "switchgear_requests_total", name="recommendations", outcome="success")
    # Timed to the last chunk: three 50 ms pauses.
    assert sample(samples, "switchgear_request_duration_seconds_sum", name="GET /export") >= 0.15
    assert sample(samples, "switchgear_pool_max_size", pool="starlette-example") == 32
    assert sample(samples, "switchgear_pool_wait_seconds_count", pool="starlette-example") >= 3


@pytest.fixture
def starlette_server_alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: the test below leaves a breaker open for 15 s and counts from 0."""
    yield from uvicorn("examples.starlette_app", tmp_path_factory.mktemp("starlette"), "/metrics")


def test_starlette_example_fallback_then_open(starlette_server_alone: Server) -> None:
    with starlette_server_alone.client() as c:
        assert c.post("/admin/recommendations/down").status_code == 200
        for _ in range(5):
            r = c.get("/products/d4")
            # The page still works: the fallback answers for the failing dependency.
            assert r.status_code == 200
            assert r.json() == {"sku": "d4", "see_also": []}
        c.post("/admin/recommendations/up")
        samples = scrape(c)
        status = c.get("/switchgear", headers=AUTH).json()
    name = "recommendations"
    assert sample(samples, "switchgear_requests_total", name=name, outcome="error") == 3
    assert sample(samples, "switchgear_rejected_total", name=name, reason="circuit_open") == 2
    assert sample(samples, "switchgear_circuit_state", name=name, state="open") == 1
    # The route itself never failed.
    assert sample(samples, "switchgear_circuit_state", name="GET /products/{sku}", state="closed")
    assert status["pools"]["starlette-example"]["in_use"] == 0


# -- examples/flask_app.py under gunicorn, two workers ---------------------------------------


@pytest.fixture(scope="module")
def flask_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("flask")
    mp_dir = tmp / "prometheus"
    mp_dir.mkdir()
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-c", "examples/gunicorn_conf.py"]
    argv += ["-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    argv += ["examples.flask_app:app"]
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
        "WAREHOUSE_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    server = Server(argv, env, port, tmp / "gunicorn.log")
    try:
        server.wait_ready("/healthz")
        yield server
    finally:
        server.stop()


def test_flask_example_metrics_summed_over_workers(flask_server: Server) -> None:
    def hello(i: int) -> int:
        # A new connection each time, from 4 threads at once, so both workers get requests.
        r = httpx.get(f"{flask_server.url}/hello/user{i}", timeout=10.0)
        assert r.status_code == 200
        worker: int = r.json()["worker"]
        return worker

    with ThreadPoolExecutor(max_workers=4) as pool:
        workers = set(pool.map(hello, range(40)))
    assert len(workers) == 2, "requests did not reach both workers"
    counts = []
    for _ in range(6):
        with flask_server.client() as c:
            counts.append(
                sample(
                    scrape(c),
                    "switchgear_requests_total",
                    name="GET /hello/<name>",
                    outcome="success",
                )
            )
    assert counts == [40] * 6  # whichever worker answers the scrape


def test_flask_example_trips_on_unreachable_dependency(flask_server: Server) -> None:
    statuses = []
    # Each worker has its own breakers: keep going until one of them rejects.
    for _ in range(30):
        statuses.append(httpx.get(f"{flask_server.url}/stock/anvil", timeout=10.0).status_code)
        if statuses[-1] == 503:
            break
    assert statuses[-1] == 503, statuses
    assert set(statuses[:-1]) == {502}
    assert 3 <= len(statuses) - 1 <= 6  # 3 failures per worker, 2 workers
    r = httpx.get(f"{flask_server.url}/stock/anvil", timeout=10.0)
    with flask_server.client() as c:
        samples = scrape(c)
    name = "GET /stock/<sku>"
    assert sample(samples, "switchgear_requests_total", name=name, outcome="error") >= 3
    assert sample(samples, "switchgear_rejected_total", name=name, reason="circuit_open") >= 1
    assert r.status_code in (502, 503)


# -- examples/plain_function.py as a script --------------------------------------------------


def test_plain_function_example() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.plain_function", "--open-timeout", "0.3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "  EUR: 1.08\n  GBP: 1.27\n  JPY: 0.0067\n" in out
    assert out.count("failed: HTTP 503") == 3
    assert out.count("rejected (circuit_open)") == 2
    transitions = [
        line.split(": ", 1)[1] for line in out.splitlines() if "breaker fx-rates" in line
    ]
    assert transitions == ["closed -> open", "open -> half_open", "half_open -> closed"]
    assert "fallback after HTTPStatusError" in out
    for line in (
        'switchgear_requests_total{name="fx-rates",outcome="success"} 4.0',
        'switchgear_requests_total{name="fx-rates",outcome="error"} 3.0',
        'switchgear_rejected_total{name="fx-rates",reason="circuit_open"} 2.0',
        'switchgear_requests_total{name="fx-rates-async",outcome="error"} 1.0',
        'switchgear_pool_size{pool="fx-clients"} 1.0',
    ):
        assert line in out, out

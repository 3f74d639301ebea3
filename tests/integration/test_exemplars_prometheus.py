"""Exemplars end to end: a real Prometheus (``exemplar-storage``) scraping a real uvicorn app.

OpenTelemetry's ASGI middleware wraps switchgear's, with an SDK tracer provider. A request sent
with a ``traceparent`` header must show up in ``/api/v1/query_exemplars`` with that trace id,
on the bucket of ``http_server_request_duration_seconds`` its latency belongs to; a
``@protected`` call made in a span of the app's own, on ``switchgear_request_duration_seconds``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchgear import LATENCY_BUCKETS
from tests.conftest import ROOT, free_port, require_binary, stop_process

TIMEOUT = 90.0  # a busy machine: polled, never slept on


def poll(what: str, found: Any, log: Path) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = found()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{log.read_text(errors='replace')}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    binary = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("exemplars")
    app_port, prom_port = free_port(), free_port()
    log = tmp / "processes.log"
    out = log.open("ab")
    argv = [sys.executable, "-m", "uvicorn", "tests.apps.exemplar_app:app"]
    argv += ["--host", "127.0.0.1", "--port", str(app_port), "--log-level", "warning"]
    app = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=out)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "traced", "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}]}
        ],
    }
    (tmp / "prometheus.yml").write_text(json.dumps(config))
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--enable-feature=exemplar-storage",
            "--log.level=warn",
        ],
        cwd=tmp,
        stdout=out,
        stderr=out,
    )
    try:
        app_url, prom_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{prom_port}"

        def up(url: str) -> bool:
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        poll("the app", lambda: up(f"{app_url}/metrics"), log)
        poll("Prometheus", lambda: up(f"{prom_url}/-/ready"), log)
        yield app_url, prom_url, log
    finally:
        stop_process(app)
        stop_process(prometheus)
        out.close()


def exemplars_of(prom_url: str, series: str, trace_id: str) -> list[tuple[dict[str, str], float]]:
    """``(series labels, value)`` of every stored exemplar of ``series`` with ``trace_id``."""
    now = time.time()
    r = httpx.get(
        f"{prom_url}/api/v1/query_exemplars",
        params={"query": series, "start": f"{now - 600:.3f}", "end": f"{now + 60:.3f}"},
        timeout=10.0,
    )
    assert r.status_code == 200, r.text
    return [
        (entry["seriesLabels"], float(exemplar["value"]))
        for entry in r.json()["data"]
        for exemplar in entry["exemplars"]
        if exemplar["labels"].get("trace_id") == trace_id
    ]


def assert_on_its_bucket(labels: dict[str, str], value: float) -> None:
    bounds = [*LATENCY_BUCKETS, float("inf")]
    expected = next(b for b in bounds if value <= b)
    assert float(labels["le"]) == expected, (labels, value)


def test_a_request_with_traceparent_is_an_exemplar_of_the_http_histogram(
    stack: tuple[str, str, Path],
) -> None:
    app_url, prom_url, log = stack
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    r = httpx.get(
        f"{app_url}/sleep?ms=30",
        headers={"traceparent": f"00-{trace_id}-{parent}-01"},
        timeout=10.0,
    )
    assert r.status_code == 200
    found = poll(
        "the request's exemplar in Prometheus",
        lambda: exemplars_of(prom_url, "http_server_request_duration_seconds_bucket", trace_id),
        log,
    )
    labels, value = found[0]
    assert labels["http_route"] == "/sleep"
    assert labels["http_response_status_code"] == "200"
    assert value >= 0.025  # a 30 ms sleep, give or take the event loop's timer
    assert_on_its_bucket(labels, value)
    own = poll(
        "the route's own exemplar",
        lambda: exemplars_of(prom_url, "switchgear_request_duration_seconds_bucket", trace_id),
        log,
    )
    assert own[0][0]["name"] == "GET /sleep"
    assert_on_its_bucket(*own[0])


def test_a_protected_call_in_a_user_span_is_an_exemplar_of_its_histogram(
    stack: tuple[str, str, Path],
) -> None:
    app_url, prom_url, log = stack
    ids = httpx.get(f"{app_url}/work", timeout=10.0).json()
    found = poll(
        "the protected call's exemplar in Prometheus",
        lambda: exemplars_of(
            prom_url,
            'switchgear_request_duration_seconds_bucket{name="exemplar_work"}',
            ids["trace_id"],
        ),
        log,
    )
    labels, value = found[0]
    assert value >= 0.03
    assert_on_its_bucket(labels, value)

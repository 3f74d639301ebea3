"""The README's main command, ``python -m examples.demo``, run for real with short durations.

The demo is a subprocess serving on a free 127.0.0.1 port; its output is read line by line
while it runs. While it serves after the scenario, ``/metrics`` and the status endpoint are
fetched over HTTP. The process is always terminated, even when an assertion fails.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from examples.demo.app import INVENTORY_POOL, PAYMENTS_ROUTE
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)

TRANSITION = re.compile(r"payments (CLOSED|OPEN|HALF_OPEN)->(CLOSED|OPEN|HALF_OPEN)")
POOL = re.compile(r"pool=(\d+)/(\d+) in_use=(\d+) waiting=(\d+)")
URL = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")


class Demo:
    """The demo subprocess; its stdout lines arrive on a queue (read by a thread)."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.demo", "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first new line matching ``pattern``; fails with the output so far."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no line matching {pattern!r} within {timeout}s:\n{self.output}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"the demo exited before printing {pattern!r}:\n{self.output}")
            self.lines.append(line)
            match = re.search(pattern, line)
            if match is not None:
                return match

    def finish(self, timeout: float) -> int:
        """Wait for the exit code, collecting the remaining output."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start(*args: str) -> Iterator[Demo]:
    demo = Demo(*args)
    try:
        yield demo
    finally:
        demo.kill()
        if demo.proc.stdout is not None:
            demo.proc.stdout.close()


@pytest.fixture
def demo_run() -> Iterator[Demo]:
    yield from start("--duration", "10", "--serve-for", "3", "--open-timeout", "1")


def test_demo_trips_recovers_scales_and_serves_metrics(demo_run: Demo) -> None:
    demo = demo_run
    base = demo.wait_for(URL.pattern, timeout=20).group(1)
    demo.wait_for(r"^serving .* for 3s", timeout=30)

    # While it serves: /metrics and the status document answer, with the scenario's story.
    with httpx.Client(base_url=base, timeout=5.0) as client:
        metrics = client.get("/metrics")
        status = client.get("/switchgear")
    assert metrics.status_code == 200, metrics.text
    assert status.status_code == 200, status.text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.text)
        for s in family.samples
    }

    def value(metric: str, **labels: str) -> float:
        return samples.get((metric, tuple(sorted(labels.items()))), -1.0)

    trip = {"name": PAYMENTS_ROUTE, "from_state": "closed", "to_state": "open"}
    close = {"name": PAYMENTS_ROUTE, "from_state": "half_open", "to_state": "closed"}
    assert value("switchgear_circuit_transitions_total", **trip) >= 1
    assert value("switchgear_circuit_transitions_total", **close) >= 1
    assert value("switchgear_rejected_total", name=PAYMENTS_ROUTE, reason="circuit_open") > 0
    assert value("switchgear_cold_starts_total", name=INVENTORY_POOL) > 0  # grew on demand
    assert value("switchgear_pool_scale_events_total", pool=INVENTORY_POOL, direction="down") > 0
    assert value("switchgear_pool_max_size", pool=INVENTORY_POOL) == 8
    doc = status.json()
    breaker = doc["names"][PAYMENTS_ROUTE]["circuit_breaker"]
    assert breaker["state"] == "closed"
    # It tripped and recovered: the last transitions say so, with their reasons.
    assert [t["to"] for t in breaker["transitions"]][-1] == "closed"
    assert "consecutive_failures" in {t["reason"] for t in breaker["transitions"]}
    assert doc["names"][PAYMENTS_ROUTE]["total"]["error_count"] >= 5

    assert demo.finish(timeout=20) == 0, demo.output
    out = demo.output
    assert demo.lines[-1] == "bye", out

    # The breaker's story, in order: trip, probe (maybe failing again), close.
    transitions = [f"{a}->{b}" for a, b in TRANSITION.findall(out)]
    assert transitions[0] == "CLOSED->OPEN", out
    assert "OPEN->HALF_OPEN" in transitions, out
    assert transitions[-1] == "HALF_OPEN->CLOSED", out
    first_probe = transitions.index("OPEN->HALF_OPEN")
    assert transitions.index("HALF_OPEN->CLOSED") > first_probe
    live = [line for line in demo.lines if line.startswith("t=") and "rps=" in line]
    assert len(live) >= 8, out
    assert any("payments=OPEN(retry " in line for line in live), out

    # The pool grows under the rush (from min_size 2) and stays within max_size.
    sizes = [(int(m.group(1)), int(m.group(2))) for m in map(POOL.search, live) if m]
    assert len(sizes) == len(live), out
    assert sizes[0][0] == 2, out
    assert max(total for total, _ in sizes) > 2, out
    assert all(total <= limit == 8 for total, limit in sizes), out
    assert "scenario done: the payments breaker tripped" in out


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    for demo in start("--duration", "30", "--serve-for", "30"):
        demo.wait_for(r"rps=", timeout=20)  # the scenario is running
        demo.proc.send_signal(signal.SIGINT)
        assert demo.finish(timeout=15) == 0, demo.output
        assert demo.lines[-3:] == ["interrupted", "shutting down", "bye"], demo.output


def test_demo_serves_without_scenario_until_sigterm() -> None:
    for demo in start("--no-scenario", "--serve-for", "60"):
        base = demo.wait_for(URL.pattern, timeout=20).group(1)
        demo.wait_for(r"^serving ", timeout=10)
        with httpx.Client(base_url=base, timeout=5.0) as client:
            assert client.get("/payments/charge").status_code == 200
            r = client.post("/admin/faults", json={"payments_failing": True})
            assert r.json()["payments_failing"] is True
            assert client.get("/payments/charge").status_code == 502
            assert client.post("/admin/faults", json={"bogus": 1}).status_code == 400
            assert client.get("/inventory/abc").json()["sku"] == "abc"
            assert client.get("/metrics").status_code == 200
        demo.proc.send_signal(signal.SIGTERM)
        assert demo.finish(timeout=15) == 0, demo.output
        assert demo.lines[-1] == "bye", demo.output

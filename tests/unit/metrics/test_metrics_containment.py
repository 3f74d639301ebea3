"""A failing metrics backend never reaches the caller: the call's result is returned.

Two real ways a backend fails: an OpenTelemetry meter provider whose instruments raise on
record (a vendor SDK with a bug, an exporter misconfigured), and a multiprocess directory
that does not exist (a typo in ``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import Histogram, Meter, MeterProvider, NoOpHistogram, NoOpMeter
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear._http.endpoints import status_document
from switchgear._metrics import errors as _metrics_errors


class BrokenHistogram(NoOpHistogram):
    def record(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        raise RuntimeError("exporter misconfigured")


class BrokenMeter(NoOpMeter):
    def create_histogram(self, name: str, *args: Any, **kwargs: Any) -> Histogram:
        return BrokenHistogram(name)


class BrokenProvider(MeterProvider):
    """A meter provider whose histograms raise on every record."""

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> Meter:
        return BrokenMeter(name)


CALLS = 1000


def test_calls_keep_their_results_when_opentelemetry_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="switchgear")
    before = _metrics_errors.counts().get("opentelemetry", 0)
    metrics = sg.Metrics(
        "otel-broken", registry=CollectorRegistry(), meter_provider=BrokenProvider()
    )
    breaker = sg.CircuitBreaker("otel-broken", failure_threshold=10**6)

    @sg.protected("otel-broken", breaker=breaker, metrics=metrics)
    def double(x: int) -> int:
        return 2 * x

    @sg.protected("otel-broken", breaker=breaker, metrics=metrics)
    async def adouble(x: int) -> int:
        return 2 * x

    @sg.protected("otel-broken", breaker=breaker, metrics=metrics)
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    @sg.protected("otel-broken", breaker=breaker, metrics=metrics)
    async def anumbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @sg.protected("otel-broken", breaker=breaker, metrics=metrics)
    def refuse() -> None:
        raise KeyError("the caller's own error")

    async def run_async() -> tuple[list[int], list[list[int]]]:
        results = [await adouble(i) for i in range(CALLS)]
        gens = []
        for _ in range(10):
            gens.append([x async for x in anumbers(3)])
        return results, gens

    assert [double(i) for i in range(CALLS)] == [2 * i for i in range(CALLS)]
    async_results, async_gens = asyncio.run(run_async())
    assert async_results == [2 * i for i in range(CALLS)]
    assert async_gens == [[0, 1, 2]] * 10
    assert [list(numbers(3)) for _ in range(10)] == [[0, 1, 2]] * 10
    with pytest.raises(KeyError, match="the caller's own error"):
        refuse()  # the user's exception passes through, not the backend's
    # Prometheus still counted every call; the failures were counted, logged once.
    assert metrics.stats().request_count == 2 * CALLS + 21
    assert _metrics_errors.counts()["opentelemetry"] - before == 2 * CALLS + 21
    logged = [r for r in caplog.records if "opentelemetry metrics backend failed" in r.message]
    assert len(logged) <= 1  # once per process and kind of failure
    document = status_document({}, {}, (0, 0))
    assert document["metrics_errors"]["opentelemetry"] >= 2 * CALLS + 21


def test_a_missing_multiprocess_directory_is_refused_where_metrics_are_made(
    tmp_path: Path,
) -> None:
    """Said once, by name, at start-up; not as a FileNotFoundError on every request."""
    missing = tmp_path / "no-such-dir"
    script = textwrap.dedent(
        """
        import switchgear as sg

        try:
            sg.Metrics("mp")
        except ValueError as exc:
            print(exc)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(missing)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in proc.stdout
    assert "is not a writable directory" in proc.stdout


def test_a_contained_consumer_reports_instead_of_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="switchgear")
    before = _metrics_errors.counts().get("test-backend", 0)

    @_metrics_errors.contained("test-backend")
    def consumer(value: int) -> None:
        raise OSError(f"disk full at {value}")

    for i in range(50):
        consumer(i)
    assert _metrics_errors.counts()["test-backend"] - before == 50
    logged = [r for r in caplog.records if "test-backend metrics backend failed" in r.message]
    assert len(logged) == 1

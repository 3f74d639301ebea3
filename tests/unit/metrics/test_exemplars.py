"""Exemplars: a sampled span current at recording leaves its ids on the latency bucket."""

from __future__ import annotations

import itertools
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanContext
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import switchgear as sg
from switchgear._metrics import exemplars
from switchgear._metrics.facade import http_series

_names = itertools.count()
TRACER = TracerProvider().get_tracer("exemplar-tests")
QUIET = TracerProvider(sampler=ALWAYS_OFF).get_tracer("exemplar-tests-unsampled")


def bucket_exemplars(registry: CollectorRegistry, family: str) -> dict[str, dict[str, str]]:
    """``le`` -> exemplar labels of ``family``'s buckets, parsed from the OpenMetrics text."""
    text = generate_latest(registry).decode()  # type: ignore[no-untyped-call]
    found = {}
    for parsed in text_string_to_metric_families(text):  # type: ignore[no-untyped-call]
        if parsed.name != family:
            continue
        for s in parsed.samples:
            if s.name.endswith("_bucket") and s.exemplar is not None:
                found[s.labels["le"]] = {**s.exemplar.labels, "value": str(s.exemplar.value)}
    return found


def test_the_probe_finds_opentelemetry_s_context_variable() -> None:
    current = exemplars.context_probe()
    assert current is not None
    assert not current()  # nothing attached here
    with TRACER.start_as_current_span("probe"):
        assert current()


def exemplar_of(ids: SpanContext, value: str) -> dict[str, str]:
    """The exemplar a bucket shows for a span with ``ids`` and an observed ``value``."""
    return {"trace_id": f"{ids.trace_id:032x}", "span_id": f"{ids.span_id:016x}", "value": value}


def test_a_protected_call_in_a_sampled_span_leaves_an_exemplar_on_its_bucket() -> None:
    registry = CollectorRegistry()
    metrics = sg.Metrics(f"ex-{next(_names)}", registry=registry)
    metrics.record_request(0.002, True)  # no span: nothing extra
    assert bucket_exemplars(registry, "switchgear_request_duration_seconds") == {}
    with TRACER.start_as_current_span("user span") as span:
        metrics.record_request(0.03, True)
        ids = span.get_span_context()
    with QUIET.start_as_current_span("not sampled"):
        metrics.record_request(0.3, True)
    found = bucket_exemplars(registry, "switchgear_request_duration_seconds")
    assert found == {"0.05": exemplar_of(ids, "0.03")}


def test_exemplars_false_keeps_none() -> None:
    registry = CollectorRegistry()
    metrics = sg.Metrics(f"ex-{next(_names)}", registry=registry, exemplars=False)
    with TRACER.start_as_current_span("user span"):
        metrics.record_request(0.03, True)
    assert bucket_exemplars(registry, "switchgear_request_duration_seconds") == {}


def test_the_http_histogram_keeps_exemplars_per_series_and_bucket() -> None:
    registry = CollectorRegistry()
    http = http_series(registry)
    key = ("GET", "http", "/items/{id}", "200", "1.1", "")
    with TRACER.start_as_current_span("request") as span:
        http.record(key, 0.2, True)
        http.record(("GET", "http", "/other", "200", "1.1", ""), 0.2, False)  # exemplars off
    found = bucket_exemplars(registry, "http_server_request_duration_seconds")
    assert found == {"0.25": exemplar_of(span.get_span_context(), "0.2")}


def test_without_opentelemetry_there_is_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exemplars, "_probe", [])
    monkeypatch.setitem(sys.modules, "opentelemetry.context", None)  # import fails
    assert exemplars.context_probe() is None
    assert exemplars.Exemplars.create(True, 13) is None
    series = sg.Metrics(f"ex-{next(_names)}", registry=CollectorRegistry()).series
    assert series.exemplars is None  # recorded by the closure without the check

"""The family table is the one source: every exporter and the docs say what it says."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear._metrics.facade import http_series
from switchgear._metrics.families import FAMILIES, OVERRIDE_GAUGES, POOL_GAUGES, WINDOW_FIGURES
from switchgear._metrics.pool_series import PoolGauges
from switchgear._metrics.series import WindowFigures, WindowSums
from switchgear.testing import FakeClock
from tests.unit.metrics.fakes import FakeBreaker, FakePool
from tests.unit.metrics.test_limit_metrics import measured_limit

ROOT = Path(__file__).resolve().parents[3]
_names = itertools.count()


def populated(**options: object) -> tuple[CollectorRegistry, list[object]]:
    """A Metrics with a breaker, a pool and a measured limit attached and one call recorded,
    and one HTTP request in the standard HTTP series (another one still active).

    Returns what must stay alive while exporting: metrics hold breakers and pools weakly.
    """
    registry = CollectorRegistry()
    m = sg.Metrics(f"families-{next(_names)}", registry=registry, **options)  # type: ignore[arg-type]
    breaker, pool = FakeBreaker(m.name), FakePool(f"families-pool-{next(_names)}")
    m.attach(breaker)
    m.attach(pool)
    m.record_request(0.01, True)
    pool.acquired(0.002)
    http = http_series(registry, options.get("meter_provider"))
    http.active(("GET", "http"), 1)
    http.record(("GET", "http", "/items/{id}", "200", "1.1", ""), 0.01, False)
    limit = measured_limit(f"families-limit-{next(_names)}", FakeClock())
    m.attach(limit)
    return registry, [m, breaker, pool, limit]


def test_prometheus_exports_each_family_with_the_table_type_and_help() -> None:
    registry, alive = populated()
    exported = {family.name: family for family in registry.collect()}
    for family in FAMILIES.values():
        if family.key in ("degraded", "memory_limit"):
            continue  # only shared breakers have it; absent on a machine without a limit
        assert family.name in exported, family.name
        assert exported[family.name].type == family.kind, family.name
        assert exported[family.name].documentation == family.help, family.name
    assert set(exported) <= {f.name for f in FAMILIES.values()}
    assert alive


def test_opentelemetry_instruments_take_names_units_and_descriptions_from_the_table() -> None:
    reader = InMemoryMetricReader()
    _, alive = populated(meter_provider=MeterProvider(metric_readers=[reader]))
    data = reader.get_metrics_data()
    assert data is not None
    seen = {
        metric.name: metric
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    for family in FAMILIES.values():
        if not family.otel_name or family.key == "memory_limit":
            continue  # memory_limit reports nothing on a machine without a limit
        assert family.otel_name in seen, family.otel_name
        assert seen[family.otel_name].unit == family.otel_unit, family.otel_name
        assert seen[family.otel_name].description == family.help, family.otel_name
    assert set(seen) <= {f.otel_name for f in FAMILIES.values()}
    assert alive


def test_the_metrics_reference_documents_each_family_with_its_type_and_labels() -> None:
    text = (ROOT / "docs/metrics-reference.md").read_text()
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in text.splitlines():
        if not line.startswith(("| [`switchgear_", "| [`http_server_")):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        names = re.findall(r"`((?:switchgear|http_server)_\w+)`", cells[0].split("](")[0])
        labels = tuple(re.findall(r"`(\w+)`", cells[2]))
        for name in names:
            rows[name] = (cells[1], labels)
    expected = {
        family.sample_name: (
            family.kind,
            (*family.labels, "le") if family.kind == "histogram" else family.labels,
        )
        for family in FAMILIES.values()
    }
    assert rows == expected


def test_pool_gauges_are_in_the_order_pools_report_them() -> None:
    assert PoolGauges._fields == POOL_GAUGES
    assert OVERRIDE_GAUGES == ("size", "in_use", "available")


def test_window_gauges_are_in_the_order_window_sums_derive_them() -> None:
    assert WindowFigures._fields == WINDOW_FIGURES
    figures = WindowSums(requests=30, errors=3, latency_sum=1.5, covered=10.0).figures()
    assert figures == WindowFigures(qps=3.0, error_ratio=0.1, latency_avg=0.05)
    assert WindowSums(0, 0, 0.0, 10.0).figures() == WindowFigures(0.0, 0.0, 0.0)


def test_every_window_figure_is_a_family_of_the_table() -> None:
    assert {key for key in FAMILIES if key in WINDOW_FIGURES} == set(WINDOW_FIGURES)


def test_every_gauge_says_how_workers_merge_and_nothing_else_does() -> None:
    for family in FAMILIES.values():
        assert (family.merge != "") == (family.kind == "gauge"), family.key


def _rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of the markdown table rows whose first cell starts with ``first_cell``."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.strip().startswith(f"| {first_cell}")
    ]


def test_the_opentelemetry_table_lists_each_instrument_with_its_kind_unit_and_name() -> None:
    kinds = {"counter": "observable counter", "gauge": "observable gauge"}
    text = (ROOT / "docs/metrics.md").read_text()
    table = [
        row for row in _rows(text, "`switchgear.") + _rows(text, "`http.server.") if len(row) == 4
    ]
    rows = {}
    for name, kind, unit, prometheus in table:
        units = re.findall(r"`([^`]+)`", unit)
        rows[name.strip("`")] = (
            kind.split(",")[0],
            "" if unit.startswith("none") else units[0],
            prometheus.strip("`"),
        )
    expected = {
        f.otel_name: (
            "observable up-down counter" if f.key == "http_active" else kinds.get(f.kind, f.kind),
            f.otel_unit,
            f.name if f.kind == "histogram" else f.sample_name,
        )
        for f in FAMILIES.values()
        if f.otel_name
    }
    assert rows == expected


def test_the_multiprocess_table_lists_each_gauge_with_its_merge_mode() -> None:
    text = (ROOT / "docs/metrics.md").read_text()
    rows = {
        name.strip("`"): mode.strip("`")
        for name, mode, _ in _rows(text, "`switchgear_") + _rows(text, "`http_server_")
    }
    assert rows == {f.name: f.merge for f in FAMILIES.values() if f.kind == "gauge"}


def test_prometheus_and_opentelemetry_report_the_same_window_figures() -> None:
    clock = FakeClock()
    reader = InMemoryMetricReader()
    registry = CollectorRegistry()
    m = sg.Metrics(
        f"families-{next(_names)}",
        registry=registry,
        meter_provider=MeterProvider(metric_readers=[reader]),
        clock=clock,
    )
    for i in range(8):
        m.record_request(0.01 * (i + 1), i % 4 != 0)
        clock.advance(0.5)
    data = reader.get_metrics_data()
    assert data is not None
    otel_values = {
        metric.name: point.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint) and point.attributes == {"name": m.name}
    }
    for key in WINDOW_FIGURES:
        family = FAMILIES[key]
        value = registry.get_sample_value(family.name, {"name": m.name})
        assert value is not None, family.name
        assert value == otel_values[family.otel_name], family.name
    stats = m.window_stats()
    assert (stats.qps, stats.error_rate, stats.avg_latency) == tuple(
        otel_values[FAMILIES[key].otel_name] for key in WINDOW_FIGURES
    )

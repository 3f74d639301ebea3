"""The metric names of DESIGN §2.4: the only names a rule or a panel may read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str

    def series_names(self) -> tuple[str, ...]:
        """The names Prometheus stores: ``_total`` for counters, three for histograms."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


METRICS: tuple[Metric, ...] = (
    Metric("switchgear_requests_total", "counter", ("name", "outcome"), "executed calls"),
    Metric("switchgear_rejected_total", "counter", ("name", "reason"), "calls not executed"),
    Metric(
        "switchgear_cold_starts_total", "counter", ("name",), "calls that waited for a new resource"
    ),
    Metric(
        "switchgear_request_duration_seconds",
        "histogram",
        ("name",),
        "latency of executed calls",
    ),
    Metric("switchgear_circuit_state", "gauge", ("name", "state"), "current state (1/0)"),
    Metric(
        "switchgear_circuit_transitions_total",
        "counter",
        ("name", "from_state", "to_state"),
        "every breaker transition",
    ),
    Metric(
        "switchgear_circuit_time_seconds_total",
        "counter",
        ("name", "state"),
        "time spent in each state",
    ),
    Metric("switchgear_pool_size", "gauge", ("pool",), "resources in the pool"),
    Metric("switchgear_pool_in_use", "gauge", ("pool",), "resources leased"),
    Metric("switchgear_pool_available", "gauge", ("pool",), "idle resources"),
    Metric("switchgear_pool_waiting", "gauge", ("pool",), "callers waiting in acquire"),
    Metric("switchgear_pool_min_size", "gauge", ("pool",), "configured min_size"),
    Metric("switchgear_pool_max_size", "gauge", ("pool",), "configured max_size"),
    Metric("switchgear_pool_wait_seconds", "histogram", ("pool",), "time spent in acquire"),
    Metric(
        "switchgear_pool_scale_events_total",
        "counter",
        ("pool", "direction"),
        "autoscaler actions",
    ),
    Metric("switchgear_memory_used_bytes", "gauge", (), "process resident memory"),
    Metric("switchgear_memory_limit_bytes", "gauge", (), "memory limit (absent when unknown)"),
    Metric("switchgear_window_requests_per_second", "gauge", ("name",), "sliding-window QPS"),
    Metric("switchgear_window_error_ratio", "gauge", ("name",), "sliding-window error rate"),
    Metric(
        "switchgear_window_latency_avg_seconds",
        "gauge",
        ("name",),
        "sliding-window average latency",
    ),
)

#: Series Prometheus itself makes, which rules and panels may also read.
BUILTIN_SERIES: frozenset[str] = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

#: The states of ``switchgear_circuit_state`` and the reasons of ``switchgear_rejected_total``.
CIRCUIT_STATES: tuple[str, ...] = ("closed", "open", "half_open", "forced_open", "disabled")
REJECTION_REASONS: tuple[str, ...] = ("circuit_open", "half_open_full", "pool_full", "pool_timeout")


def known_series_names() -> frozenset[str]:
    """Every series name a query may select, recording rules aside."""
    return frozenset(n for m in METRICS for n in m.series_names()) | BUILTIN_SERIES


def metric(name: str) -> Metric:
    for m in METRICS:
        if m.name == name:
            return m
    raise KeyError(name)

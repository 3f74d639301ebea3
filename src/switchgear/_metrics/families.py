"""Every metric family switchgear exports, once: the table all exporters read.

The Prometheus collector, the multiprocess mirror, the OpenTelemetry bridge, the dashboard
and alert generator in ``tools/`` and the metrics reference in the docs (checked by a test)
all take names, types, labels, units and help texts from :data:`FAMILIES`. Names, types and
labels are public API: changing one breaks users' dashboards and alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FAMILIES",
    "HTTP_ATTRIBUTES",
    "HTTP_LABELS",
    "LIMIT_GAUGES",
    "LIMIT_RTT_ESTIMATES",
    "OVERRIDE_GAUGES",
    "POOL_GAUGES",
    "WINDOW_FIGURES",
    "Family",
]

Kind = Literal["counter", "gauge", "histogram"]
# How prometheus_client merges a gauge across the files of live workers.
Merge = Literal["", "livesum", "livemax"]  # "": not a gauge


@dataclass(frozen=True)
class Family:
    """One metric family and how each exporter spells it."""

    key: str  # the exporters' handle for it
    name: str  # Prometheus family name; counters get ``_total`` on their samples
    kind: Kind
    labels: tuple[str, ...]
    help: str
    unit: str = ""  # Prometheus unit (the name already ends with it)
    otel_name: str = ""  # OpenTelemetry instrument; "" when not exported there
    otel_unit: str = ""  # UCUM, as OpenTelemetry's semantic conventions write units
    merge: Merge = ""  # gauges in multiprocess mode
    # OpenTelemetry attribute keys, one per label, where they are not the labels themselves
    # (the HTTP semantic conventions' dotted keys).
    attributes: tuple[str, ...] = ()

    @property
    def otel_attributes(self) -> tuple[str, ...]:
        """The attribute key of each label, in label order."""
        return self.attributes or self.labels

    @property
    def sample_name(self) -> str:
        """The name on the family's (non-histogram) samples."""
        return f"{self.name}_total" if self.kind == "counter" else self.name


# The pool's gauges, in the order PoolSeries.gauges() returns them.
POOL_GAUGES = ("size", "in_use", "available", "waiting", "min_size", "max_size")
# The pool gauges Metrics.update_pool_stats() sets, in the order Series.pool_override holds them.
OVERRIDE_GAUGES = POOL_GAUGES[:3]
# An adaptive limit's gauges, in the order LimitSeries.gauges() returns them (then its RTTs).
LIMIT_GAUGES = ("limit_current", "limit_in_flight", "limit_min", "limit_max")
# The ``estimate`` label of the round-trip-time gauge, in the order LimitSeries.rtts() returns.
LIMIT_RTT_ESTIMATES = ("baseline", "recent")
# The sliding-window gauges, in the order WindowSums.figures() returns them.
WINDOW_FIGURES = ("qps", "error_ratio", "latency_avg")

# The standard HTTP server series (OpenTelemetry's stable HTTP semantic conventions): their
# attribute keys, and the labels OpenTelemetry's Prometheus translation makes of them. The
# middleware records every series under a tuple of values in this order ("" = absent).
HTTP_ATTRIBUTES = (
    "http.request.method",
    "url.scheme",
    "http.route",
    "http.response.status_code",
    "network.protocol.version",
    "error.type",
)
HTTP_LABELS = tuple(key.replace(".", "_") for key in HTTP_ATTRIBUTES)

_POOL_GAUGE_HELP = {
    "size": "Resources in the pool (idle and in use).",
    "in_use": "Pool resources currently leased.",
    "available": "Idle pool resources.",
    "waiting": "Callers waiting for a pool resource.",
    "min_size": "Configured minimum pool size.",
    "max_size": "Configured maximum pool size.",
}

_TABLE = (
    Family(
        "requests",
        "switchgear_requests",
        "counter",
        ("name", "outcome"),
        "Calls executed, by outcome (error: the breaker counted a failure).",
        otel_name="switchgear.requests",
        otel_unit="{request}",
    ),
    Family(
        "rejected",
        "switchgear_rejected",
        "counter",
        ("name", "reason"),
        "Calls not executed, by reason.",
        otel_name="switchgear.rejected",
        otel_unit="{request}",
    ),
    Family(
        "cold_starts",
        "switchgear_cold_starts",
        "counter",
        ("name",),
        "Calls that waited for a pool resource created for them.",
        otel_name="switchgear.cold_starts",
        otel_unit="{request}",
    ),
    Family(
        "duration",
        "switchgear_request_duration_seconds",
        "histogram",
        ("name",),
        "Duration of executed calls in seconds.",
        unit="seconds",
        otel_name="switchgear.request.duration",
        otel_unit="s",
    ),
    Family(
        "state",
        "switchgear_circuit_state",
        "gauge",
        ("name", "state"),
        "Circuit breaker state: 1 for the current state, 0 for the others.",
        # No unit "1": exporters would rename it ..._ratio.
        otel_name="switchgear.circuit.state",
        merge="livemax",
    ),
    Family(
        "degraded",
        "switchgear_circuit_storage_degraded",
        "gauge",
        ("name",),
        "1 while a shared breaker runs on local state because its storage (Redis) is unreachable.",
        merge="livemax",  # any live worker cut off from the store
    ),
    Family(
        "transitions",
        "switchgear_circuit_transitions",
        "counter",
        ("name", "from_state", "to_state"),
        "Circuit breaker state transitions.",
        otel_name="switchgear.circuit.transitions",
        otel_unit="{transition}",
    ),
    Family(
        "trips",
        "switchgear_circuit_trips",
        "counter",
        ("name", "reason"),
        "Circuit breaker trips (transitions to open), by the rule or event that caused them.",
        otel_name="switchgear.circuit.trips",
        otel_unit="{trip}",
    ),
    Family(
        "manual_actions",
        "switchgear_circuit_manual_actions",
        "counter",
        ("name", "action"),
        "Actions taken on a circuit breaker through the middleware's control plane.",
        otel_name="switchgear.circuit.manual_actions",
        otel_unit="{action}",
    ),
    Family(
        "circuit_time",
        "switchgear_circuit_time_seconds",
        "counter",
        ("name", "state"),
        "Seconds the circuit breaker has spent in each state.",
        unit="seconds",
        otel_name="switchgear.circuit.time",
        otel_unit="s",
    ),
    *(
        Family(
            key,
            f"switchgear_pool_{key}",
            "gauge",
            ("pool",),
            help,
            otel_name=f"switchgear.pool.{key}",
            otel_unit="{request}" if key == "waiting" else "{resource}",
            merge="livesum",
        )
        for key, help in _POOL_GAUGE_HELP.items()
    ),
    Family(
        "pool_wait",
        "switchgear_pool_wait_seconds",
        "histogram",
        ("pool",),
        "Seconds spent waiting in pool acquire.",
        unit="seconds",
        otel_name="switchgear.pool.wait",
        otel_unit="s",
    ),
    Family(
        "scale_events",
        "switchgear_pool_scale_events",
        "counter",
        ("pool", "direction"),
        "Pool resources added (up) or retired (down).",
        otel_name="switchgear.pool.scale_events",
        otel_unit="{resource}",
    ),
    Family(
        "limit_current",
        "switchgear_limit_current",
        "gauge",
        ("name",),
        "Calls in flight the adaptive limit allows now.",
        otel_name="switchgear.limit.current",
        otel_unit="{request}",
        merge="livesum",  # each worker has its own limit: the sum is the fleet's
    ),
    Family(
        "limit_in_flight",
        "switchgear_limit_in_flight",
        "gauge",
        ("name",),
        "Calls admitted by the adaptive limit and not yet finished.",
        otel_name="switchgear.limit.in_flight",
        otel_unit="{request}",
        merge="livesum",
    ),
    Family(
        "limit_min",
        "switchgear_limit_min",
        "gauge",
        ("name",),
        "Configured lowest value of the adaptive limit.",
        otel_name="switchgear.limit.min",
        otel_unit="{request}",
        merge="livesum",  # compares with the summed current limit
    ),
    Family(
        "limit_max",
        "switchgear_limit_max",
        "gauge",
        ("name",),
        "Configured highest value of the adaptive limit.",
        otel_name="switchgear.limit.max",
        otel_unit="{request}",
        merge="livesum",
    ),
    Family(
        "limit_rtt",
        "switchgear_limit_rtt_seconds",
        "gauge",
        ("name", "estimate"),
        "Round-trip times the adaptive limit compares: the no-load baseline and the recent "
        "median; absent until measured.",
        unit="seconds",
        otel_name="switchgear.limit.rtt",
        otel_unit="s",
        merge="livemax",
    ),
    Family(
        "memory_used",
        "switchgear_memory_used_bytes",
        "gauge",
        (),
        "Resident memory of the process in bytes.",
        unit="bytes",
        otel_name="switchgear.memory.used",
        otel_unit="By",
        merge="livesum",  # the workers share the container's limit
    ),
    Family(
        "memory_limit",
        "switchgear_memory_limit_bytes",
        "gauge",
        (),
        "Memory limit (cgroup, else RLIMIT_AS); absent when none.",
        unit="bytes",
        otel_name="switchgear.memory.limit",
        otel_unit="By",
        merge="livemax",
    ),
    Family(
        "qps",
        "switchgear_window_requests_per_second",
        "gauge",
        ("name",),
        "Calls per second over the sliding window.",
        otel_name="switchgear.window.requests_per_second",
        merge="livesum",
    ),
    Family(
        "error_ratio",
        "switchgear_window_error_ratio",
        "gauge",
        ("name",),
        "Errors / calls over the sliding window (0 without calls).",
        otel_name="switchgear.window.error_ratio",
        merge="livemax",
    ),
    Family(
        "latency_avg",
        "switchgear_window_latency_avg_seconds",
        "gauge",
        ("name",),
        "Mean call duration over the sliding window.",
        unit="seconds",
        otel_name="switchgear.window.latency_avg",
        otel_unit="s",
        merge="livemax",
    ),
    Family(
        "http_duration",
        "http_server_request_duration_seconds",
        "histogram",
        HTTP_LABELS,
        "Duration of HTTP server requests.",
        unit="seconds",
        otel_name="http.server.request.duration",
        otel_unit="s",
        attributes=HTTP_ATTRIBUTES,
    ),
    Family(
        "http_active",
        "http_server_active_requests",
        "gauge",
        HTTP_LABELS[:2],
        "Number of active HTTP server requests.",
        otel_name="http.server.active_requests",  # an up-down counter there
        otel_unit="{request}",
        merge="livesum",
        attributes=HTTP_ATTRIBUTES[:2],
    ),
)

# In exposition order.
FAMILIES: dict[str, Family] = {family.key: family for family in _TABLE}

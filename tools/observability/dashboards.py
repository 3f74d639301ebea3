"""The three Grafana dashboards: overview, circuit breakers, pools.

A dashboard is a :class:`~.panels.Board`: variables, annotations and panels in reading
order (left to right, rows of 24 columns; the SDK places them). A panel row is a few calls
of :func:`~.panels.ts` or :func:`~.panels.single_stat` whose widths add up to 24.

:func:`panel_queries`, :func:`variable_queries` and :func:`annotation_queries` list every
query of the JSON that is written, for the lint and the live contract tests;
:func:`substitute` replaces Grafana's variables so a query can be sent to Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge, gauge, heatmap, statetimeline, table
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm

from .config import DEFAULT, Config
from .panels import (
    DATASOURCE,
    JSON,
    Annotation,
    Board,
    colors,
    dashed,
    increase,
    last_value,
    legend,
    panel,
    quantile,
    rate,
    sel,
    single_stat,
    target,
    thresholds,
    ts,
    variable,
)
from .promql import number

__all__ = ["DATASOURCE", "Board", "dashboards"]

JOB = variable("job", "Job", "label_values(switchgear_memory_used_bytes, job)")
INSTANCE = variable(
    "instance", "Instance", 'label_values(switchgear_memory_used_bytes{job=~"$job"}, instance)'
)
_SCOPED = '{job=~"$job", instance=~"$instance"}'
NAME = variable("name", "Name", f"label_values(switchgear_requests_total{_SCOPED}, name)")
BREAKER = variable("name", "Breaker", f"label_values(switchgear_circuit_state{_SCOPED}, name)")
POOL = variable("pool", "Pool", f"label_values(switchgear_pool_size{_SCOPED}, pool)")

TRIPS = Annotation(
    "Breaker trips",
    f"sum by (name, reason) ({increase(sel('switchgear_circuit_trips_total', name=True))}) > 0",
    "Breaker {{name}} tripped: {{reason}}",
    "name,reason",
    "red",
)

# value mapping of the state timeline: closed < disabled < half_open < open < forced_open
STATE_CODES = (
    ("closed", 0, "green"),
    ("disabled", 1, "text"),
    ("half_open", 2, "yellow"),
    ("open", 3, "red"),
    ("forced_open", 4, "purple"),
)


def heat(title: str, description: str, bucket: str, unit: str = "reqps") -> heatmap.Panel:
    """Observations per second in each histogram bucket, the y axis in seconds."""
    expr = f"sum by (le) ({rate(bucket)})"
    p = panel(heatmap.Panel(), title, description, unit, [target(expr, "{{le}}", fmt="heatmap")])
    p.calculate(False).cell_gap(1).cell_values(heatmap.CellValues().unit(unit))
    p.color(
        heatmap.HeatmapColorOptions()
        .exponent(0.5)
        .fill("dark-orange")
        .mode(hm.HeatmapColorMode.SCHEME)
        .reverse(False)
        .scale(hm.HeatmapColorScale.EXPONENTIAL)
        .scheme("Oranges")
        .steps(64)
    )
    p.exemplars_color("rgba(255,0,255,0.7)").filter_values(heatmap.FilterValueRange().le(1e-09))
    p.show_legend().rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO))
    p.mode(common.TooltipDisplayMode.SINGLE).show_color_scale(False).hide_y_histogram()
    return p.y_axis(
        heatmap.YAxisConfig().axis_placement(common.AxisPlacement.LEFT).reverse(False).unit("s")
    )


def _error_ratio(by: str = "") -> str:
    agg = f"sum by ({by}) " if by else "sum"
    is_error = 'outcome="error"'
    errors = f"{agg}({rate(sel('switchgear_requests_total', is_error, name=True))})"
    total = f"{agg}({rate(sel('switchgear_requests_total', name=True))})"
    return f"({errors} or {f'0 * {total}' if by else 'vector(0)'})\n/\n({total} > 0)"


def _count_state(states: str) -> str:
    inner = sel("switchgear_circuit_state", f'state=~"{states}"', name=True)
    return f"count(max by (job, instance, name) ({inner}) == 1) or vector(0)"


def _by(labels: str, metric: str, *extra: str, fn: str = "rate", **scope: bool) -> str:
    inner = (rate if fn == "rate" else increase)(sel(metric, *extra, **scope))
    return f"sum by ({labels}) ({inner})"


def overview(config: Config = DEFAULT) -> Board:
    bucket = sel("switchgear_request_duration_seconds_bucket", name=True)
    budget, threshold = config.error_budget, config.latency_slo_threshold
    memory = (
        f"max(\n  {sel('switchgear_memory_used_bytes')}\n  /\n"
        f"  ({sel('switchgear_memory_limit_bytes')} > 0)\n)"
    )
    alerts = 'ALERTS{alertname=~"Switchgear.*", alertstate="firing", job=~"$job"}'
    hidden = {"Time": True, "Value": True, "__name__": True, "alertstate": True}
    organize = {"excludeByName": hidden, "indexByName": {"alertname": 0, "severity": 1}}
    return Board(
        "switchgear-overview",
        "switchgear / Overview",
        "Traffic, errors, latency, rejections, cold starts and memory of every "
        "switchgear-protected call, with breakers not closed and firing switchgear alerts.",
        [JOB, INSTANCE, NAME],
        [
            single_stat(
                "Calls per second",
                "Executed calls per second (success + error) over the selected names; "
                "rejected calls are not included.",
                "reqps",
                f"sum({rate(sel('switchgear_requests_total', name=True))})",
            ),
            single_stat(
                "Error ratio",
                "Failed / executed calls. Orange above the error budget "
                f"({number(budget * 100)} % = 1 - the {number(config.error_slo_target * 100)} % "
                f"SLO), red above the fast-burn rate (14.4 x budget).",
                "percentunit",
                _error_ratio(),
                steps=(("green", None), ("orange", budget), ("red", 14.4 * budget)),
            ),
            single_stat(
                "p99 latency",
                "99th percentile of executed calls' duration, interpolated from the 12 "
                f"histogram buckets. Orange above the latency SLO threshold ({threshold:g} s).",
                "s",
                quantile(0.99, bucket),
                steps=(("green", None), ("orange", threshold)),
            ),
            single_stat(
                "Rejected per second",
                "Calls refused without running (breaker open or half-open full, pool full "
                "or pool timeout), per second.",
                "reqps",
                f"sum({rate(sel('switchgear_rejected_total', name=True))}) or vector(0)",
                steps=(("green", None), ("orange", 0.001)),
            ),
            single_stat(
                "Breakers not closed",
                "Breakers (per instance) currently open, half-open, forced open or disabled. "
                "See the breakers dashboard for which and since when.",
                "short",
                _count_state("open|half_open|forced_open|disabled"),
                steps=(("green", None), ("red", 1)),
                decimals=0,
            ),
            panel(
                gauge.Panel(),
                "Memory used / limit",
                "Highest resident memory / memory limit over the selected instances. "
                "No data when no limit is known (the limit series is absent).",
                "percentunit",
                [target(memory)],
                4,
                4,
            )
            .reduce_options(last_value())
            .show_threshold_labels(False)
            .show_threshold_markers(True)
            .min(0)
            .max(1)
            .color_scheme(colors("thresholds"))
            .thresholds(thresholds(("green", None), ("orange", 0.8), ("red", config.memory_ratio))),
            ts(
                "Calls per second by name",
                "Executed calls per second for each protected name (function or route).",
                "reqps",
                [target(_by("name", "switchgear_requests_total", name=True), "{{name}}")],
            ),
            ts(
                "Error ratio by name",
                "Failed / executed calls per name. The red area starts at the error budget "
                f"({number(budget * 100)} %). No line for a name without calls.",
                "percentunit",
                [target(_error_ratio("name"), "{{name}}")],
                threshold_line=budget,
            ),
            ts(
                "Latency percentiles",
                "p50, p90 and p99 of executed calls' duration over the selected names, from "
                "switchgear_request_duration_seconds. The red area starts at the latency "
                f"SLO threshold ({threshold:g} s).",
                "s",
                [target(quantile(q, bucket), f"p{number(q * 100)}") for q in (0.5, 0.9, 0.99)],
                threshold_line=threshold,
            ),
            heat(
                "Latency heatmap",
                "Calls per second in each of the 12 latency buckets (1 ms ... 10 s, plus "
                "+Inf). Bands moving up mean calls got slower.",
                bucket,
            ),
            ts(
                "Rejected calls by reason",
                "Calls refused without running, per name and reason: circuit_open, "
                "half_open_full, pool_full, pool_timeout, limit_exceeded.",
                "reqps",
                [
                    target(
                        _by("name, reason", "switchgear_rejected_total", name=True),
                        "{{name}}: {{reason}}",
                    )
                ],
                stacked=True,
            ),
            ts(
                "Cold starts per second",
                "Calls that found no idle pool resource and waited for a new one to be "
                "created. Bursts after a deploy are expected; a steady rate is not.",
                "cps",
                [target(_by("name", "switchgear_cold_starts_total", name=True), "{{name}}")],
                bars=True,
            ),
            ts(
                "Memory used vs limit",
                "Resident memory per instance (summed over worker processes) and its memory "
                "limit (cgroup memory.max or RLIMIT_AS; absent when there is none).",
                "bytes",
                [
                    target(
                        f"sum by (instance) ({sel('switchgear_memory_used_bytes')})",
                        "used {{instance}}",
                    ),
                    target(
                        f"max by (instance) ({sel('switchgear_memory_limit_bytes')})",
                        "limit {{instance}}",
                    ),
                ],
                dash=dashed("limit .*"),
            ),
            panel(
                table.Panel(),
                "Firing switchgear alerts",
                'switchgear alerts firing now (ALERTS{alertname=~"Switchgear.*"}), with '
                "their labels. Runbooks: docs/runbooks.md in the switchgear repository.",
                "none",
                [target(alerts, instant=True, fmt="table")],
            )
            .cell_height(common.TableCellHeight.SM)
            .show_header(True)
            .footer(cb.TableFooterOptions().show(False))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options=organize)),
        ],
        [TRIPS],
    )


def _state_code_expr() -> str:
    parts = [
        f"{sel('switchgear_circuit_state', f'state={chr(34)}{state}{chr(34)}', name=True)} * {code}"
        for state, code, _ in STATE_CODES
    ]
    return "max by (instance, name) (\n  " + "\n  or ".join(parts) + "\n)"


def _share_not_closed() -> str:
    time, not_closed = "switchgear_circuit_time_seconds_total", 'state!="closed"'
    return (
        f"{_by('instance, name', time, not_closed, name=True)}\n/\n"
        f"({_by('instance, name', time, name=True)} > 0)"
    )


def breakers(config: Config = DEFAULT) -> Board:
    del config  # the same for every configuration; the parameter keeps the signatures uniform
    mapping = dm.ValueMap(
        options={
            str(code): dm.ValueMappingResult(color=color, index=i, text=state)
            for i, (state, code, color) in enumerate(STATE_CODES)
        }
    )
    by_breaker = 'reason=~"circuit_open|half_open_full"'
    return Board(
        "switchgear-breakers",
        "switchgear / Circuit breakers",
        "State, transitions, outcomes and rejections of every circuit breaker. "
        "Transitions are counted, so an open shorter than a scrape still shows.",
        [JOB, INSTANCE, BREAKER],
        [
            single_stat(
                "Open",
                "Breakers (per instance) open now: rejecting every call.",
                "short",
                _count_state("open"),
                steps=(("green", None), ("red", 1)),
                width=6,
                decimals=0,
            ),
            single_stat(
                "Half-open",
                "Breakers (per instance) half-open now: letting trial calls "
                "through to probe the dependency.",
                "short",
                _count_state("half_open"),
                steps=(("green", None), ("orange", 1)),
                width=6,
                decimals=0,
            ),
            single_stat(
                "Forced open or disabled",
                "Breakers put in forced_open or disabled by an "
                "operator (force_open() / disable()).",
                "short",
                _count_state("forced_open|disabled"),
                steps=(("green", None), ("purple", 1)),
                width=6,
                decimals=0,
            ),
            single_stat(
                "Rejected per second",
                "Calls rejected by breakers (circuit_open, half_open_full) per second.",
                "reqps",
                f"sum({rate(sel('switchgear_rejected_total', by_breaker, name=True))}) "
                "or vector(0)",
                steps=(("green", None), ("orange", 0.001)),
                width=6,
            ),
            panel(
                statetimeline.Panel(),
                "Breaker state",
                "State of each breaker on each instance: closed (green), half_open (yellow), "
                "open (red), forced_open (purple), disabled (grey). A state shorter than a "
                "scrape can be missed here; the transitions panel counts every one.",
                "none",
                [target(_state_code_expr(), "{{name}} @ {{instance}}")],
                width=24,
            )
            .align_value(common.TimelineValueAlignment.LEFT)
            .legend(legend())
            .merge_values(True)
            .row_height(0.9)
            .show_value(common.VisibilityMode.AUTO)
            .tooltip(
                cb.VizTooltipOptions()
                .mode(common.TooltipDisplayMode.SINGLE)
                .sort(common.SortOrder.NONE)
            )
            .color_scheme(colors("thresholds"))
            .mappings([mapping])
            .min(0)
            .max(4)
            .thresholds(thresholds(("green", None)))
            .fill_opacity(80)
            .line_width(0),
            ts(
                "Transitions",
                "State changes per breaker in each $__rate_interval window, from the "
                "switchgear_circuit_transitions_total counter (counted by the process that "
                "made the change, so shared breakers count each trip once).",
                "short",
                [
                    target(
                        _by(
                            "name, from_state, to_state",
                            "switchgear_circuit_transitions_total",
                            fn="increase",
                            name=True,
                        ),
                        "{{name}}: {{from_state}} → {{to_state}}",
                    )
                ],
                bars=True,
            ),
            ts(
                "Share of time not closed",
                "Share of wall time each breaker spent open, half-open, forced open or "
                "disabled, from switchgear_circuit_time_seconds_total (exact, not sampled).",
                "percentunit",
                [target(_share_not_closed(), "{{name}} @ {{instance}}")],
                max_value=1,
            ),
            ts(
                "Calls by outcome",
                "Executed calls per second by breaker and outcome (error = a call the "
                "breaker counts as a failure).",
                "reqps",
                [
                    target(
                        _by("name, outcome", "switchgear_requests_total", name=True),
                        "{{name}}: {{outcome}}",
                    )
                ],
                stacked=True,
            ),
            ts(
                "Rejections by reason",
                "Calls refused without running, by breaker and reason (circuit_open, "
                "half_open_full, pool_full, pool_timeout, limit_exceeded).",
                "reqps",
                [
                    target(
                        _by("name, reason", "switchgear_rejected_total", name=True),
                        "{{name}}: {{reason}}",
                    )
                ],
                stacked=True,
            ),
            ts(
                "Failure ratio",
                "Failed / executed calls per breaker: what the failure_rate_threshold rule "
                "compares against (over the breaker's own window).",
                "percentunit",
                [target(_error_ratio("name"), "{{name}}")],
                max_value=1,
            ),
            panel(
                bargauge.Panel(),
                "Time not closed over the range",
                "Mean share of the dashboard's time range each breaker spent not closed.",
                "percentunit",
                [target(_share_not_closed(), "{{name}} @ {{instance}}")],
            )
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .min_viz_height(16)
            .min_viz_width(8)
            .name_placement(common.BarGaugeNamePlacement.AUTO)
            .orientation(common.VizOrientation.HORIZONTAL)
            .reduce_options(last_value("mean"))
            .show_unfilled(True)
            .sizing(common.BarGaugeSizing.AUTO)
            .value_mode(common.BarGaugeValueMode.COLOR)
            .min(0)
            .max(1)
            .color_scheme(colors("thresholds"))
            .thresholds(thresholds(("green", None), ("orange", 0.01), ("red", 0.1))),
        ],
        [TRIPS],
    )


def pools(config: Config = DEFAULT) -> Board:
    wait_bucket = sel("switchgear_pool_wait_seconds_bucket", pool=True)
    wait = config.pool_wait_threshold
    by_pool_reason = 'reason=~"pool_full|pool_timeout"'

    def pool_sum(metric: str) -> str:
        return f"sum by (pool) ({sel(metric, pool=True)})"

    in_use, max_size = (
        sel("switchgear_pool_in_use", pool=True),
        sel("switchgear_pool_max_size", pool=True),
    )
    waiting = sel("switchgear_pool_waiting", pool=True)
    return Board(
        "switchgear-pools",
        "switchgear / Pools",
        "Size, use, waiting callers, wait time and autoscaling of every "
        "DynamicPool, against its configured min and max size.",
        [JOB, INSTANCE, POOL, NAME],
        [
            single_stat(
                "Pools saturated",
                "Pools (per instance) at max_size with callers waiting now.",
                "short",
                f"count(\n  {in_use} >= {max_size}\n  and {waiting} > 0\n) or vector(0)",
                steps=(("green", None), ("red", 1)),
                width=6,
                decimals=0,
            ),
            single_stat(
                "Callers waiting",
                "Callers blocked in acquire() right now, over the selected pools.",
                "short",
                f"sum({waiting})",
                steps=(("green", None), ("orange", 1)),
                width=6,
                decimals=0,
            ),
            single_stat(
                "Utilisation",
                "Resources in use / pool size over the selected pools.",
                "percentunit",
                f"sum({in_use})\n/\n(sum({sel('switchgear_pool_size', pool=True)}) > 0)",
                steps=(("green", None), ("orange", 0.8), ("red", 0.95)),
                width=6,
            ),
            single_stat(
                "p99 wait",
                "99th percentile of the time spent in acquire(), over the selected pools. "
                f"Orange above the alert threshold ({wait:g} s).",
                "s",
                quantile(0.99, wait_bucket),
                steps=(("green", None), ("orange", wait)),
                width=6,
            ),
            ts(
                "Size, in use and available vs min/max",
                "Resources per pool, summed over instances: total size, leased (in use), idle "
                "(available), and the configured min_size / max_size (dashed).",
                "short",
                [
                    target(pool_sum(f"switchgear_pool_{m}"), f"{{{{pool}}}} {legend}")
                    for m, legend in (
                        ("size", "size"),
                        ("in_use", "in use"),
                        ("available", "available"),
                        ("min_size", "min"),
                        ("max_size", "max"),
                    )
                ],
                dash=dashed(".* (min|max)"),
            ),
            ts(
                "Waiting callers vs max size",
                "Callers blocked in acquire() per pool, with max_size (dashed) for scale. "
                "Waiting while size is below max means the autoscaler is behind.",
                "short",
                [
                    target(pool_sum("switchgear_pool_waiting"), "{{pool}} waiting"),
                    target(pool_sum("switchgear_pool_max_size"), "{{pool}} max"),
                ],
                dash=dashed(".* (min|max)"),
            ),
            ts(
                "Utilisation",
                "Resources in use / pool size per pool: what the autoscaler compares with "
                "scale_up_threshold and scale_down_threshold (it also counts waiters).",
                "percentunit",
                [
                    target(
                        f"{pool_sum('switchgear_pool_in_use')}\n/\n"
                        f"({pool_sum('switchgear_pool_size')} > 0)",
                        "{{pool}}",
                    )
                ],
                max_value=1,
            ),
            ts(
                "Wait time percentiles",
                "p50, p90 and p99 of the time spent in acquire() per pool, from "
                "switchgear_pool_wait_seconds.",
                "s",
                [
                    target(quantile(q, wait_bucket, by="pool"), f"{{{{pool}}}} p{number(q * 100)}")
                    for q in (0.5, 0.9, 0.99)
                ],
                threshold_line=wait,
            ),
            ts(
                "Scale events",
                "Autoscaler actions per pool and direction in each $__rate_interval window. "
                "Ups and downs alternating quickly is thrashing.",
                "short",
                [
                    target(
                        _by(
                            "pool, direction",
                            "switchgear_pool_scale_events_total",
                            fn="increase",
                            pool=True,
                        ),
                        "{{pool}} {{direction}}",
                    )
                ],
                bars=True,
            ),
            ts(
                "Pool rejections",
                "Calls refused because the pool was full (max_waiting reached) or the wait "
                "hit acquire_timeout, per name.",
                "reqps",
                [
                    target(
                        _by("name, reason", "switchgear_rejected_total", by_pool_reason, name=True),
                        "{{name}}: {{reason}}",
                    )
                ],
                stacked=True,
            ),
            ts(
                "Cold starts per second",
                "Calls that waited for a new resource to be created, per name.",
                "cps",
                [target(_by("name", "switchgear_cold_starts_total", name=True), "{{name}}")],
                bars=True,
            ),
            heat(
                "Wait time heatmap",
                "acquire() calls per second in each wait-time bucket (1 ms ... 10 s, +Inf).",
                wait_bucket,
                unit="ops",
            ),
        ],
    )


def dashboards(config: Config = DEFAULT) -> list[Board]:
    return [overview(config), breakers(config), pools(config)]


def filename(board: Board) -> str:
    return board.filename


def render_dashboard(board: Board) -> str:
    return json.dumps(board.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- listing every query -----------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    dashboard_uid: str
    panel_id: int
    panel_title: str
    panel_type: str
    unit: str
    ref_id: str
    expr: str
    legend: str
    instant: bool
    format: str


@dataclass(frozen=True)
class VariableQuery:
    dashboard_uid: str
    name: str
    query: str  # label_values(<selector>, <label>)

    @property
    def selector(self) -> str:
        return _parse_label_values(self.query)[0]

    @property
    def label(self) -> str:
        return _parse_label_values(self.query)[1]


@dataclass(frozen=True)
class AnnotationQuery:
    dashboard_uid: str
    name: str
    expr: str


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_]\w*)\)$")


def _parse_label_values(query: str) -> tuple[str, str]:
    match = _LABEL_VALUES.match(query)
    if match is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group("selector").strip(), match.group("label")


def _models(config: Config) -> list[JSON]:
    return [b.to_json() for b in dashboards(config)]


def panel_queries(config: Config = DEFAULT) -> list[PanelQuery]:
    """Every target of every panel, read back from the JSON model that is written to disk."""
    return [
        PanelQuery(
            m["uid"],
            p["id"],
            p["title"],
            p["type"],
            p["fieldConfig"]["defaults"]["unit"],
            t["refId"],
            t["expr"],
            t["legendFormat"],
            t.get("instant", False),
            t["format"],
        )
        for m in _models(config)
        for p in m["panels"]
        for t in p["targets"]
    ]


def variable_queries(config: Config = DEFAULT) -> list[VariableQuery]:
    return [
        VariableQuery(m["uid"], v["name"], v["query"]["query"])
        for m in _models(config)
        for v in m["templating"]["list"]
        if v["type"] == "query"
    ]


def annotation_queries(config: Config = DEFAULT) -> list[AnnotationQuery]:
    return [
        AnnotationQuery(m["uid"], a["name"], a["expr"])
        for m in _models(config)
        for a in m["annotations"]["list"]
    ]


def substitute(
    expr: str, values: Mapping[str, str] | None = None, rate_interval: str = "1m"
) -> str:
    """Replace Grafana's variables so Prometheus can run ``expr``.

    ``values`` maps variable names to regexes (default ``.+`` = All);
    ``$__rate_interval`` becomes ``rate_interval``.
    """
    chosen = dict(values or {})

    def one(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        return rate_interval if name == "__rate_interval" else chosen.get(name, ".+")

    return re.sub(r"\$(?:\{(?P<braced>\w+)\}|(?P<plain>\w+))", one, expr)

"""The three Grafana dashboards (Grafana 11 JSON model), built from plain Python.

Conventions every panel follows (``tests/integration/test_dashboards.py`` checks them all):

* one ``datasource`` variable; every panel, target and annotation uses
  ``{"type": "prometheus", "uid": "${datasource}"}``, so file provisioning works as well as
  the import dialog;
* every selector carries ``job=~"$job", instance=~"$instance"`` (and ``name``/``pool`` where
  the metric has that label); every ``rate``/``increase`` reads ``[$__rate_interval]``;
* every panel has a description and a unit; only current panel types; stable uids.

:func:`panel_queries`, :func:`variable_queries` and :func:`annotation_queries` list every
query with where it is used, for the lint test and the live contract test;
:func:`substitute` replaces the Grafana variables so a query can be sent to Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import DEFAULT, Config
from .promql import number

JSON = dict[str, Any]
DATASOURCE: JSON = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 11.0; later 11.x/12.x migrate it on load
TAG = "switchgear"
RATE = "[$__rate_interval]"
GRID_WIDTH = 24

# value mapping of the state timeline: closed < disabled < half_open < open < forced_open
STATE_CODES: tuple[tuple[str, int, str], ...] = (
    ("closed", 0, "green"),
    ("disabled", 1, "text"),
    ("half_open", 2, "yellow"),
    ("open", 3, "red"),
    ("forced_open", 4, "purple"),
)


# --- query helpers ---------------------------------------------------------------------------


def sel(metric: str, *extra: str, name: bool = False, pool: bool = False) -> str:
    """A selector scoped by the dashboard variables."""
    matchers = ['job=~"$job"', 'instance=~"$instance"']
    if name:
        matchers.append('name=~"$name"')
    if pool:
        matchers.append('pool=~"$pool"')
    matchers.extend(extra)
    return f"{metric}{{{', '.join(matchers)}}}"


def rate(selector: str) -> str:
    return f"rate({selector}{RATE})"


def increase(selector: str) -> str:
    return f"increase({selector}{RATE})"


def quantile(q: float, bucket_selector: str, by: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({number(q)}, sum by ({labels}) ({rate(bucket_selector)}))"


# --- panel model -------------------------------------------------------------------------------


@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    format: str = "time_series"  # "heatmap" and "table" also used

    def to_json(self, ref_id: str) -> JSON:
        return {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": self.expr,
            "format": self.format,
            "instant": self.instant,
            "legendFormat": self.legend or "__auto",
            "range": not self.instant,
            "refId": ref_id,
        }


@dataclass
class Panel:
    title: str
    type: str
    description: str
    unit: str
    targets: list[Target]
    width: int = 12
    height: int = 8
    options: JSON = field(default_factory=dict)
    defaults: JSON = field(default_factory=dict)  # extra fieldConfig.defaults
    overrides: list[JSON] = field(default_factory=list)
    transformations: list[JSON] = field(default_factory=list)

    def to_json(self, panel_id: int, x: int, y: int) -> JSON:
        defaults: JSON = {"unit": self.unit, **self.defaults}
        panel: JSON = {
            "datasource": DATASOURCE,
            "description": self.description,
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "id": panel_id,
            "options": self.options,
            "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
            "title": self.title,
            "type": self.type,
        }
        if self.transformations:
            panel["transformations"] = self.transformations
        return panel


def _thresholds(*steps: tuple[str, float | None]) -> JSON:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in steps],
    }


_LEGEND: JSON = {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True}
_TOOLTIP: JSON = {"mode": "multi", "sort": "desc"}


def timeseries(
    title: str,
    description: str,
    unit: str,
    targets: list[Target],
    *,
    stacked: bool = False,
    bars: bool = False,
    min_value: float | None = 0,
    max_value: float | None = None,
    threshold_line: float | None = None,
    width: int = 12,
    overrides: list[JSON] | None = None,
) -> Panel:
    custom: JSON = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else (30 if stacked else 10),
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
        "thresholdsStyle": {"mode": "off" if threshold_line is None else "line+area"},
    }
    defaults: JSON = {"color": {"mode": "palette-classic"}, "custom": custom}
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    if threshold_line is not None:
        defaults["thresholds"] = _thresholds(("transparent", None), ("red", threshold_line))
    return Panel(
        title,
        "timeseries",
        description,
        unit,
        targets,
        width=width,
        options={"legend": _LEGEND, "tooltip": _TOOLTIP},
        defaults=defaults,
        overrides=overrides or [],
    )


def stat(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    steps: Sequence[tuple[str, float | None]] = (("green", None),),
    width: int = 4,
    decimals: int | None = None,
) -> Panel:
    defaults: JSON = {"color": {"mode": "thresholds"}, "thresholds": _thresholds(*steps)}
    if decimals is not None:
        defaults["decimals"] = decimals
    return Panel(
        title,
        "stat",
        description,
        unit,
        [Target(expr)],
        width=width,
        height=4,
        options={
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
        defaults=defaults,
    )


def heatmap(
    title: str, description: str, bucket_selector: str, *, unit: str = "reqps", width: int = 12
) -> Panel:
    return Panel(
        title,
        "heatmap",
        description,
        unit,  # the cells: observations per second in each bucket
        [Target(f"sum by (le) ({rate(bucket_selector)})", legend="{{le}}", format="heatmap")],
        width=width,
        options={
            "calculate": False,
            "cellGap": 1,
            "cellValues": {"unit": unit},
            "color": {
                "exponent": 0.5,
                "fill": "dark-orange",
                "mode": "scheme",
                "reverse": False,
                "scale": "exponential",
                "scheme": "Oranges",
                "steps": 64,
            },
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-09},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": False},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": "s"},
        },
    )


# --- dashboards --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str  # label_values(...)

    def to_json(self) -> JSON:
        return {
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "datasource": DATASOURCE,
            "definition": self.query,
            "hide": 0,
            "includeAll": True,
            "allValue": ".+",
            "label": self.label,
            "multi": True,
            "name": self.name,
            "options": [],
            "query": {"query": self.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        }


DATASOURCE_VARIABLE: JSON = {
    "current": {},
    "hide": 0,
    "includeAll": False,
    "label": "Data source",
    "multi": False,
    "name": "datasource",
    "options": [],
    "query": "prometheus",
    "refresh": 1,
    "regex": "",
    "skipUrlSync": False,
    "type": "datasource",
}

JOB_VAR = Variable("job", "Job", "label_values(switchgear_memory_used_bytes, job)")
INSTANCE_VAR = Variable(
    "instance", "Instance", 'label_values(switchgear_memory_used_bytes{job=~"$job"}, instance)'
)
NAME_VAR = Variable(
    "name",
    "Name",
    'label_values(switchgear_requests_total{job=~"$job", instance=~"$instance"}, name)',
)
BREAKER_VAR = Variable(
    "name",
    "Breaker",
    'label_values(switchgear_circuit_state{job=~"$job", instance=~"$instance"}, name)',
)
POOL_VAR = Variable(
    "pool", "Pool", 'label_values(switchgear_pool_size{job=~"$job", instance=~"$instance"}, pool)'
)


@dataclass(frozen=True)
class Annotation:
    name: str
    expr: str
    title: str
    color: str

    def to_json(self) -> JSON:
        return {
            "datasource": DATASOURCE,
            "enable": True,
            "expr": self.expr,
            "iconColor": self.color,
            "name": self.name,
            "tagKeys": "name,reason",
            "titleFormat": self.title,
            "useValueForTime": False,
        }


TRIPS = Annotation(
    "Breaker trips",
    "sum by (name, reason) ("
    + increase(sel("switchgear_circuit_trips_total", name=True))
    + ") > 0",
    "Breaker {{name}} tripped: {{reason}}",
    "red",
)


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    variables: list[Variable]
    panels: list[Panel]
    annotations: list[Annotation] = field(default_factory=list)

    def layout(self) -> list[tuple[Panel, int, int]]:
        """Left to right, top to bottom; a row is as tall as its tallest panel."""
        placed: list[tuple[Panel, int, int]] = []
        x = y = row_height = 0
        for panel in self.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            placed.append((panel, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return placed

    def to_json(self) -> JSON:
        return {
            "annotations": {"list": [a.to_json() for a in self.annotations]},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [
                {
                    "asDropdown": False,
                    "icon": "external link",
                    "includeVars": True,
                    "keepTime": True,
                    "tags": [TAG],
                    "targetBlank": False,
                    "title": "switchgear",
                    "tooltip": "",
                    "type": "dashboards",
                    "url": "",
                }
            ],
            "panels": [p.to_json(i, x, y) for i, (p, x, y) in enumerate(self.layout(), start=1)],
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "tags": [TAG],
            "templating": {"list": [DATASOURCE_VARIABLE, *(v.to_json() for v in self.variables)]},
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


def _error_ratio(by: str = "") -> str:
    agg = f"sum by ({by}) " if by else "sum"
    is_error = 'outcome="error"'
    errors = f"{agg}({rate(sel('switchgear_requests_total', is_error, name=True))})"
    total = f"{agg}({rate(sel('switchgear_requests_total', name=True))})"
    fallback = f"0 * {total}" if by else "vector(0)"
    return f"({errors} or {fallback})\n/\n({total} > 0)"


def _count_state(states: str) -> str:
    inner = sel("switchgear_circuit_state", f'state=~"{states}"', name=True)
    return f"count(max by (job, instance, name) ({inner}) == 1) or vector(0)"


def overview(config: Config = DEFAULT) -> Dashboard:
    duration = "switchgear_request_duration_seconds"
    bucket = sel(f"{duration}_bucket", name=True)
    budget = config.error_budget
    threshold = config.latency_slo_threshold
    return Dashboard(
        uid="switchgear-overview",
        title="switchgear / Overview",
        description="Traffic, errors, latency, rejections, cold starts and memory of every "
        "switchgear-protected call, with breakers not closed and firing switchgear alerts.",
        variables=[JOB_VAR, INSTANCE_VAR, NAME_VAR],
        annotations=[TRIPS],
        panels=[
            stat(
                "Calls per second",
                "Executed calls per second (success + error) over the selected names; "
                "rejected calls are not included.",
                "reqps",
                f"sum({rate(sel('switchgear_requests_total', name=True))})",
            ),
            stat(
                "Error ratio",
                "Failed / executed calls. Orange above the error budget "
                f"({number(budget * 100)} % = 1 - the {number(config.error_slo_target * 100)} % "
                f"SLO), red above the fast-burn rate (14.4 x budget).",
                "percentunit",
                _error_ratio(),
                steps=(("green", None), ("orange", budget), ("red", 14.4 * budget)),
            ),
            stat(
                "p99 latency",
                "99th percentile of executed calls' duration, interpolated from the 12 "
                f"histogram buckets. Orange above the latency SLO threshold ({threshold:g} s).",
                "s",
                quantile(0.99, bucket),
                steps=(("green", None), ("orange", threshold)),
            ),
            stat(
                "Rejected per second",
                "Calls refused without running (breaker open or half-open full, pool full "
                "or pool timeout), per second.",
                "reqps",
                f"sum({rate(sel('switchgear_rejected_total', name=True))}) or vector(0)",
                steps=(("green", None), ("orange", 0.001)),
            ),
            stat(
                "Breakers not closed",
                "Breakers (per instance) currently open, half-open, forced open or disabled. "
                "See the breakers dashboard for which and since when.",
                "short",
                _count_state("open|half_open|forced_open|disabled"),
                steps=(("green", None), ("red", 1)),
                decimals=0,
            ),
            Panel(
                "Memory used / limit",
                "gauge",
                "Highest resident memory / memory limit over the selected instances. "
                "No data when no limit is known (the limit series is absent).",
                "percentunit",
                [
                    Target(
                        "max(\n  "
                        + sel("switchgear_memory_used_bytes")
                        + "\n  /\n  ("
                        + sel("switchgear_memory_limit_bytes")
                        + " > 0)\n)"
                    )
                ],
                width=4,
                height=4,
                options={
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "showThresholdLabels": False,
                    "showThresholdMarkers": True,
                },
                defaults={
                    "min": 0,
                    "max": 1,
                    "color": {"mode": "thresholds"},
                    "thresholds": _thresholds(
                        ("green", None), ("orange", 0.8), ("red", config.memory_ratio)
                    ),
                },
            ),
            timeseries(
                "Calls per second by name",
                "Executed calls per second for each protected name (function or route).",
                "reqps",
                [
                    Target(
                        f"sum by (name) ({rate(sel('switchgear_requests_total', name=True))})",
                        "{{name}}",
                    )
                ],
            ),
            timeseries(
                "Error ratio by name",
                "Failed / executed calls per name. The red area starts at the error budget "
                f"({number(budget * 100)} %). No line for a name without calls.",
                "percentunit",
                [Target(_error_ratio("name"), "{{name}}")],
                threshold_line=budget,
            ),
            timeseries(
                "Latency percentiles",
                "p50, p90 and p99 of executed calls' duration over the selected names, from "
                "switchgear_request_duration_seconds. The red area starts at the latency "
                f"SLO threshold ({threshold:g} s).",
                "s",
                [Target(quantile(q, bucket), f"p{number(q * 100)}") for q in (0.5, 0.9, 0.99)],
                threshold_line=threshold,
            ),
            heatmap(
                "Latency heatmap",
                "Calls per second in each of the 12 latency buckets (1 ms ... 10 s, plus "
                "+Inf). Bands moving up mean calls got slower.",
                bucket,
            ),
            timeseries(
                "Rejected calls by reason",
                "Calls refused without running, per name and reason: circuit_open, "
                "half_open_full, pool_full, pool_timeout, limit.",
                "reqps",
                [
                    Target(
                        "sum by (name, reason) ("
                        + rate(sel("switchgear_rejected_total", name=True))
                        + ")",
                        "{{name}}: {{reason}}",
                    )
                ],
                stacked=True,
            ),
            timeseries(
                "Cold starts per second",
                "Calls that found no idle pool resource and waited for a new one to be "
                "created. Bursts after a deploy are expected; a steady rate is not.",
                "cps",
                [
                    Target(
                        f"sum by (name) ({rate(sel('switchgear_cold_starts_total', name=True))})",
                        "{{name}}",
                    )
                ],
                bars=True,
            ),
            timeseries(
                "Memory used vs limit",
                "Resident memory per instance (summed over worker processes) and its memory "
                "limit (cgroup memory.max or RLIMIT_AS; absent when there is none).",
                "bytes",
                [
                    Target(
                        f"sum by (instance) ({sel('switchgear_memory_used_bytes')})",
                        "used {{instance}}",
                    ),
                    Target(
                        f"max by (instance) ({sel('switchgear_memory_limit_bytes')})",
                        "limit {{instance}}",
                    ),
                ],
                overrides=[
                    {
                        "matcher": {"id": "byRegexp", "options": "limit .*"},
                        "properties": [
                            {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
                            {"id": "custom.fillOpacity", "value": 0},
                        ],
                    }
                ],
            ),
            Panel(
                "Firing switchgear alerts",
                "table",
                'switchgear alerts firing now (ALERTS{alertname=~"Switchgear.*"}), with '
                "their labels. Runbooks: docs/runbooks.md in the switchgear repository.",
                "none",
                [
                    Target(
                        'ALERTS{alertname=~"Switchgear.*", alertstate="firing", job=~"$job"}',
                        instant=True,
                        format="table",
                    )
                ],
                options={"cellHeight": "sm", "showHeader": True, "footer": {"show": False}},
                transformations=[
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {
                                "Time": True,
                                "Value": True,
                                "__name__": True,
                                "alertstate": True,
                            },
                            "indexByName": {"alertname": 0, "severity": 1},
                        },
                    }
                ],
            ),
        ],
    )


def _state_code_expr() -> str:
    parts = [
        sel("switchgear_circuit_state", 'state="' + state + '"', name=True) + f" * {code}"
        for state, code, _ in STATE_CODES
    ]
    return "max by (instance, name) (\n  " + "\n  or ".join(parts) + "\n)"


def _share_not_closed() -> str:
    time = "switchgear_circuit_time_seconds_total"
    not_closed = 'state!="closed"'
    return (
        f"sum by (instance, name) ({rate(sel(time, not_closed, name=True))})\n/\n"
        f"(sum by (instance, name) ({rate(sel(time, name=True))}) > 0)"
    )


def breakers(config: Config = DEFAULT) -> Dashboard:
    del config  # same for every configuration; the parameter keeps the signatures uniform
    mappings = [
        {
            "type": "value",
            "options": {
                str(code): {"color": color, "index": i, "text": state}
                for i, (state, code, color) in enumerate(STATE_CODES)
            },
        }
    ]
    return Dashboard(
        uid="switchgear-breakers",
        title="switchgear / Circuit breakers",
        description="State, transitions, outcomes and rejections of every circuit breaker. "
        "Transitions are counted, so an open shorter than a scrape still shows.",
        variables=[JOB_VAR, INSTANCE_VAR, BREAKER_VAR],
        annotations=[TRIPS],
        panels=[
            stat(
                "Open",
                "Breakers (per instance) open now: rejecting every call.",
                "short",
                _count_state("open"),
                steps=(("green", None), ("red", 1)),
                width=6,
                decimals=0,
            ),
            stat(
                "Half-open",
                "Breakers (per instance) half-open now: letting trial calls "
                "through to probe the dependency.",
                "short",
                _count_state("half_open"),
                steps=(("green", None), ("orange", 1)),
                width=6,
                decimals=0,
            ),
            stat(
                "Forced open or disabled",
                "Breakers put in forced_open or disabled by an "
                "operator (force_open() / disable()).",
                "short",
                _count_state("forced_open|disabled"),
                steps=(("green", None), ("purple", 1)),
                width=6,
                decimals=0,
            ),
            stat(
                "Rejected per second",
                "Calls rejected by breakers (circuit_open, half_open_full) per second.",
                "reqps",
                "sum("
                + rate(
                    sel(
                        "switchgear_rejected_total",
                        'reason=~"circuit_open|half_open_full"',
                        name=True,
                    )
                )
                + ") or vector(0)",
                steps=(("green", None), ("orange", 0.001)),
                width=6,
            ),
            Panel(
                "Breaker state",
                "state-timeline",
                "State of each breaker on each instance: closed (green), half_open (yellow), "
                "open (red), forced_open (purple), disabled (grey). A state shorter than a "
                "scrape can be missed here; the transitions panel counts every one.",
                "none",
                [Target(_state_code_expr(), "{{name}} @ {{instance}}")],
                width=24,
                options={
                    "alignValue": "left",
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "mergeValues": True,
                    "rowHeight": 0.9,
                    "showValue": "auto",
                    "tooltip": {"mode": "single", "sort": "none"},
                },
                defaults={
                    "color": {"mode": "thresholds"},
                    "mappings": mappings,
                    "min": 0,
                    "max": 4,
                    "thresholds": _thresholds(("green", None)),
                    "custom": {"fillOpacity": 80, "lineWidth": 0},
                },
            ),
            timeseries(
                "Transitions",
                "State changes per breaker in each $__rate_interval window, from the "
                "switchgear_circuit_transitions_total counter (counted by the process that "
                "made the change, so shared breakers count each trip once).",
                "short",
                [
                    Target(
                        "sum by (name, from_state, to_state) ("
                        + increase(sel("switchgear_circuit_transitions_total", name=True))
                        + ")",
                        "{{name}}: {{from_state}} → {{to_state}}",
                    )
                ],
                bars=True,
            ),
            timeseries(
                "Share of time not closed",
                "Share of wall time each breaker spent open, half-open, forced open or "
                "disabled, from switchgear_circuit_time_seconds_total (exact, not sampled).",
                "percentunit",
                [Target(_share_not_closed(), "{{name}} @ {{instance}}")],
                max_value=1,
            ),
            timeseries(
                "Calls by outcome",
                "Executed calls per second by breaker and outcome (error = a call the "
                "breaker counts as a failure).",
                "reqps",
                [
                    Target(
                        "sum by (name, outcome) ("
                        + rate(sel("switchgear_requests_total", name=True))
                        + ")",
                        "{{name}}: {{outcome}}",
                    )
                ],
                stacked=True,
            ),
            timeseries(
                "Rejections by reason",
                "Calls refused without running, by breaker and reason (circuit_open, "
                "half_open_full, pool_full, pool_timeout, limit).",
                "reqps",
                [
                    Target(
                        "sum by (name, reason) ("
                        + rate(sel("switchgear_rejected_total", name=True))
                        + ")",
                        "{{name}}: {{reason}}",
                    )
                ],
                stacked=True,
            ),
            timeseries(
                "Failure ratio",
                "Failed / executed calls per breaker: what the failure_rate_threshold rule "
                "compares against (over the breaker's own window).",
                "percentunit",
                [Target(_error_ratio("name"), "{{name}}")],
                max_value=1,
            ),
            Panel(
                "Time not closed over the range",
                "bargauge",
                "Mean share of the dashboard's time range each breaker spent not closed.",
                "percentunit",
                [Target(_share_not_closed(), "{{name}} @ {{instance}}")],
                options={
                    "displayMode": "gradient",
                    "minVizHeight": 16,
                    "minVizWidth": 8,
                    "namePlacement": "auto",
                    "orientation": "horizontal",
                    "reduceOptions": {"calcs": ["mean"], "fields": "", "values": False},
                    "showUnfilled": True,
                    "sizing": "auto",
                    "valueMode": "color",
                },
                defaults={
                    "min": 0,
                    "max": 1,
                    "color": {"mode": "thresholds"},
                    "thresholds": _thresholds(("green", None), ("orange", 0.01), ("red", 0.1)),
                },
            ),
        ],
    )


def pools(config: Config = DEFAULT) -> Dashboard:
    wait_bucket = sel("switchgear_pool_wait_seconds_bucket", pool=True)

    def pool_sum(metric: str) -> str:
        return f"sum by (pool) ({sel(metric, pool=True)})"

    dashed = [
        {
            "matcher": {"id": "byRegexp", "options": ".* (min|max)"},
            "properties": [
                {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
                {"id": "custom.fillOpacity", "value": 0},
            ],
        }
    ]
    return Dashboard(
        uid="switchgear-pools",
        title="switchgear / Pools",
        description="Size, use, waiting callers, wait time and autoscaling of every "
        "DynamicPool, against its configured min and max size.",
        variables=[JOB_VAR, INSTANCE_VAR, POOL_VAR, NAME_VAR],
        panels=[
            stat(
                "Pools saturated",
                "Pools (per instance) at max_size with callers waiting now.",
                "short",
                "count(\n  "
                + sel("switchgear_pool_in_use", pool=True)
                + " >= "
                + sel("switchgear_pool_max_size", pool=True)
                + "\n  and "
                + sel("switchgear_pool_waiting", pool=True)
                + " > 0\n) or vector(0)",
                steps=(("green", None), ("red", 1)),
                width=6,
                decimals=0,
            ),
            stat(
                "Callers waiting",
                "Callers blocked in acquire() right now, over the selected pools.",
                "short",
                f"sum({sel('switchgear_pool_waiting', pool=True)})",
                steps=(("green", None), ("orange", 1)),
                width=6,
                decimals=0,
            ),
            stat(
                "Utilisation",
                "Resources in use / pool size over the selected pools.",
                "percentunit",
                f"sum({sel('switchgear_pool_in_use', pool=True)})\n/\n"
                f"(sum({sel('switchgear_pool_size', pool=True)}) > 0)",
                steps=(("green", None), ("orange", 0.8), ("red", 0.95)),
                width=6,
            ),
            stat(
                "p99 wait",
                "99th percentile of the time spent in acquire(), over the selected pools. "
                f"Orange above the alert threshold ({config.pool_wait_threshold:g} s).",
                "s",
                quantile(0.99, wait_bucket),
                steps=(("green", None), ("orange", config.pool_wait_threshold)),
                width=6,
            ),
            timeseries(
                "Size, in use and available vs min/max",
                "Resources per pool, summed over instances: total size, leased (in use), idle "
                "(available), and the configured min_size / max_size (dashed).",
                "short",
                [
                    Target(pool_sum("switchgear_pool_size"), "{{pool}} size"),
                    Target(pool_sum("switchgear_pool_in_use"), "{{pool}} in use"),
                    Target(pool_sum("switchgear_pool_available"), "{{pool}} available"),
                    Target(pool_sum("switchgear_pool_min_size"), "{{pool}} min"),
                    Target(pool_sum("switchgear_pool_max_size"), "{{pool}} max"),
                ],
                overrides=dashed,
            ),
            timeseries(
                "Waiting callers vs max size",
                "Callers blocked in acquire() per pool, with max_size (dashed) for scale. "
                "Waiting while size is below max means the autoscaler is behind.",
                "short",
                [
                    Target(pool_sum("switchgear_pool_waiting"), "{{pool}} waiting"),
                    Target(pool_sum("switchgear_pool_max_size"), "{{pool}} max"),
                ],
                overrides=dashed,
            ),
            timeseries(
                "Utilisation",
                "Resources in use / pool size per pool: what the autoscaler compares with "
                "scale_up_threshold and scale_down_threshold (it also counts waiters).",
                "percentunit",
                [
                    Target(
                        f"{pool_sum('switchgear_pool_in_use')}\n/\n"
                        f"({pool_sum('switchgear_pool_size')} > 0)",
                        "{{pool}}",
                    )
                ],
                max_value=1,
            ),
            timeseries(
                "Wait time percentiles",
                "p50, p90 and p99 of the time spent in acquire() per pool, from "
                "switchgear_pool_wait_seconds.",
                "s",
                [
                    Target(quantile(q, wait_bucket, by="pool"), f"{{{{pool}}}} p{number(q * 100)}")
                    for q in (0.5, 0.9, 0.99)
                ],
                threshold_line=config.pool_wait_threshold,
            ),
            timeseries(
                "Scale events",
                "Autoscaler actions per pool and direction in each $__rate_interval window. "
                "Ups and downs alternating quickly is thrashing.",
                "short",
                [
                    Target(
                        "sum by (pool, direction) ("
                        + increase(sel("switchgear_pool_scale_events_total", pool=True))
                        + ")",
                        "{{pool}} {{direction}}",
                    )
                ],
                bars=True,
            ),
            timeseries(
                "Pool rejections",
                "Calls refused because the pool was full (max_waiting reached) or the wait "
                "hit acquire_timeout, per name.",
                "reqps",
                [
                    Target(
                        "sum by (name, reason) ("
                        + rate(
                            sel(
                                "switchgear_rejected_total",
                                'reason=~"pool_full|pool_timeout"',
                                name=True,
                            )
                        )
                        + ")",
                        "{{name}}: {{reason}}",
                    )
                ],
                stacked=True,
            ),
            timeseries(
                "Cold starts per second",
                "Calls that waited for a new resource to be created, per name.",
                "cps",
                [
                    Target(
                        f"sum by (name) ({rate(sel('switchgear_cold_starts_total', name=True))})",
                        "{{name}}",
                    )
                ],
                bars=True,
            ),
            heatmap(
                "Wait time heatmap",
                "acquire() calls per second in each wait-time bucket (1 ms ... 10 s, +Inf).",
                wait_bucket,
                unit="ops",
            ),
        ],
    )


def dashboards(config: Config = DEFAULT) -> list[Dashboard]:
    return [overview(config), breakers(config), pools(config)]


def filename(dashboard: Dashboard) -> str:
    return f"{dashboard.uid}.json"


def render_dashboard(dashboard: Dashboard) -> str:
    return json.dumps(dashboard.to_json(), indent=2, ensure_ascii=False) + "\n"


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


_LABEL_VALUES = re.compile(
    r"^label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\)$"
)


def _parse_label_values(query: str) -> tuple[str, str]:
    match = _LABEL_VALUES.match(query)
    if match is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group("selector").strip(), match.group("label")


def panel_queries(config: Config = DEFAULT) -> list[PanelQuery]:
    """Every target of every panel, read back from the JSON model that is written to disk."""
    out: list[PanelQuery] = []
    for dashboard in dashboards(config):
        model = dashboard.to_json()
        for panel in model["panels"]:
            for target in panel["targets"]:
                out.append(
                    PanelQuery(
                        dashboard_uid=model["uid"],
                        panel_id=panel["id"],
                        panel_title=panel["title"],
                        panel_type=panel["type"],
                        unit=panel["fieldConfig"]["defaults"]["unit"],
                        ref_id=target["refId"],
                        expr=target["expr"],
                        legend=target["legendFormat"],
                        instant=target["instant"],
                        format=target["format"],
                    )
                )
    return out


def variable_queries(config: Config = DEFAULT) -> list[VariableQuery]:
    return [VariableQuery(d.uid, v.name, v.query) for d in dashboards(config) for v in d.variables]


def annotation_queries(config: Config = DEFAULT) -> list[AnnotationQuery]:
    return [
        AnnotationQuery(d.uid, a.name, a.expr) for d in dashboards(config) for a in d.annotations
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
        if name == "__rate_interval":
            return rate_interval
        return chosen.get(name, ".+")

    return re.sub(r"\$(?:\{(?P<braced>\w+)\}|(?P<plain>\w+))", one, expr)

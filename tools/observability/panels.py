"""Grafana dashboards from a plain description in ``boards/*.yaml``, built with Grafana's own
SDK (``grafana-foundation-sdk``, the release for Grafana 11.6: ``schemaVersion`` 41).

A board file names the dashboard (``uid``, ``title``, ``description``), its query variables
(keys of :data:`VARIABLES`), its annotations (keys of :data:`ANNOTATIONS`) and its panels in
reading order: left to right in rows of 24 columns, placed by the SDK. A panel is a mapping
whose first key is its type, with the title as value; then ``unit``, ``description``, its
query (``expr`` with ``legend``, ``instant`` and ``format``, or ``targets``: a list of such)
and the options of its type (:data:`OPTIONS`); ``width`` overrides the type's usual width.
``${name}`` is a value of the :class:`Config` (:func:`.runbooks.values`), so a threshold
line can never disagree with the alert.

The SDK's schema has no field for a query variable's ``definition`` (what Grafana's editor
shows) nor for a Prometheus annotation's title and tags: :func:`build` adds them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import (
    bargauge,
    gauge,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

JSON = dict[str, Any]
Spec = Mapping[str, Any]
BOARDS = Path(__file__).resolve().parent / "boards"
DATASOURCE: JSON = {"type": "prometheus", "uid": "${datasource}"}
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "switchgear"
_SCOPED = '{job=~"$job", instance=~"$instance"}'

#: Query variables a board may list: (name, label, query).
VARIABLES = {
    "job": ("job", "Job", "label_values(switchgear_memory_used_bytes, job)"),
    "instance": (
        "instance",
        "Instance",
        'label_values(switchgear_memory_used_bytes{job=~"$job"}, instance)',
    ),
    "name": ("name", "Name", f"label_values(switchgear_requests_total{_SCOPED}, name)"),
    "breaker": ("name", "Breaker", f"label_values(switchgear_circuit_state{_SCOPED}, name)"),
    "pool": ("pool", "Pool", f"label_values(switchgear_pool_size{_SCOPED}, pool)"),
    "limit": ("limit", "Limit", f"label_values(switchgear_limit_current{_SCOPED}, name)"),
}

_TRIPS = 'switchgear_circuit_trips_total{job=~"$job", instance=~"$instance", name=~"$name"}'
#: Annotations a board may list: name -> (expr, title, tag keys, colour).
ANNOTATIONS = {
    "Breaker trips": (
        f"sum by (name, reason) (increase({_TRIPS}[$__rate_interval])) > 0",
        "Breaker {{name}} tripped: {{reason}}",
        "name,reason",
        "red",
    ),
}


def _target(spec: Spec, ref_id: str) -> prometheus.Dataquery:
    query = (
        prometheus.Dataquery().datasource(DS).editor_mode(pm.QueryEditorMode.CODE)
        .expr(spec["expr"]).format(pm.PromQueryFormat(spec.get("format", "time_series")))
        .legend_format(spec.get("legend", "__auto")).ref_id(ref_id)
    )  # fmt: skip
    if spec.get("exemplar"):  # Grafana draws the exemplars of the buckets (trace links)
        query.exemplar(True)
    return query.instant() if spec.get("instant") else query.range()


def _thresholds(steps: Mapping[str, float | None]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for color, value in steps.items()])
    )  # fmt: skip


def _colors(mode: str) -> db.FieldColor:
    return db.FieldColor().mode(dm.FieldColorModeId(mode))


def _reduce(calc: str) -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs([calc]).fields("").values(False)


def _legend() -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions().calcs([]).display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM).show_legend(True)
    )  # fmt: skip


def _tooltip(mode: str, sort: str) -> cb.VizTooltipOptions:
    return cb.VizTooltipOptions().mode(common.TooltipDisplayMode(mode)).sort(common.SortOrder(sort))


def _timeseries(p: timeseries.Panel, s: Spec) -> None:
    bars, stacked, line = s.get("bars", False), s.get("stacked", False), s.get("threshold_line")
    p.legend(_legend()).tooltip(_tooltip("multi", "desc")).color_scheme(_colors("palette-classic"))
    p.min(0).line_width(1).show_points(common.VisibilityMode.NEVER).span_nulls(False)
    p.draw_style(common.GraphDrawStyle("bars" if bars else "line"))
    p.fill_opacity(60 if bars else (30 if stacked else 10))
    p.stacking(
        cb.StackingConfig().group("A").mode(common.StackingMode("normal" if stacked else "none"))
    )
    style = common.GraphThresholdsStyleMode("off" if line is None else "line+area")
    p.thresholds_style(cb.GraphThresholdsStyleConfig().mode(style))
    if "max" in s:
        p.max(s["max"])
    if line is not None:
        p.thresholds(_thresholds({"transparent": None, "red": line}))
    if "dashed" in s:  # series drawn as unfilled dashed lines, such as configured bounds
        dash = dm.DynamicConfigValue(
            id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"}
        )
        fill = dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0)
        p.override_by_regexp(s["dashed"], [dash, fill])


def _stat(p: stat.Panel, s: Spec) -> None:
    p.color_scheme(_colors("thresholds")).thresholds(_thresholds(s.get("steps", {"green": None})))
    p.color_mode(common.BigValueColorMode.VALUE).graph_mode(common.BigValueGraphMode.AREA)
    p.justify_mode(common.BigValueJustifyMode.AUTO).orientation(common.VizOrientation.AUTO)
    p.reduce_options(_reduce("lastNotNull")).text_mode(common.BigValueTextMode.AUTO)
    if "decimals" in s:
        p.decimals(s["decimals"])


def _gauge(p: gauge.Panel, s: Spec) -> None:
    p.reduce_options(_reduce("lastNotNull")).show_threshold_labels(False)
    p.show_threshold_markers(True).min(0).max(1).color_scheme(_colors("thresholds"))
    p.thresholds(_thresholds(s["steps"]))


def _bargauge(p: bargauge.Panel, s: Spec) -> None:
    p.display_mode(common.BarGaugeDisplayMode.GRADIENT).min_viz_height(16).min_viz_width(8)
    p.name_placement(common.BarGaugeNamePlacement.AUTO).show_unfilled(True)
    p.orientation(common.VizOrientation.HORIZONTAL).reduce_options(_reduce("mean"))
    p.sizing(common.BarGaugeSizing.AUTO).value_mode(common.BarGaugeValueMode.COLOR)
    p.min(0).max(1).color_scheme(_colors("thresholds")).thresholds(_thresholds(s["steps"]))


def _heatmap(p: heatmap.Panel, s: Spec) -> None:
    """Cells: observations per second in each bucket (the panel's unit); y axis in seconds."""
    colors = (
        heatmap.HeatmapColorOptions().exponent(0.5).fill("dark-orange").reverse(False)
        .mode(hm.HeatmapColorMode.SCHEME).scale(hm.HeatmapColorScale.EXPONENTIAL)
        .scheme("Oranges").steps(64)
    )  # fmt: skip
    p.calculate(False).cell_gap(1).cell_values(heatmap.CellValues().unit(s["unit"])).color(colors)
    p.exemplars_color("rgba(255,0,255,0.7)").filter_values(heatmap.FilterValueRange().le(1e-09))
    p.show_legend().rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO))
    p.mode(common.TooltipDisplayMode.SINGLE).show_color_scale(False).hide_y_histogram()
    left = common.AxisPlacement.LEFT
    p.y_axis(heatmap.YAxisConfig().axis_placement(left).reverse(False).unit("s"))


def _table(p: table.Panel, s: Spec) -> None:
    p.cell_height(common.TableCellHeight.SM).show_header(True)
    p.footer(cb.TableFooterOptions().show(False))
    p.with_transformation(dm.DataTransformerConfig(id_val="organize", options=s["organize"]))


def _state_timeline(p: statetimeline.Panel, s: Spec) -> None:
    """``states``: state -> [value, colour], in the order of their values."""
    results = {
        str(value): dm.ValueMappingResult(color=color, index=i, text=state)
        for i, (state, (value, color)) in enumerate(s["states"].items())
    }
    p.align_value(common.TimelineValueAlignment.LEFT).legend(_legend()).merge_values(True)
    p.row_height(0.9).show_value(common.VisibilityMode.AUTO).tooltip(_tooltip("single", "none"))
    p.color_scheme(_colors("thresholds")).mappings([dm.ValueMap(options=results)])
    p.min(0).max(len(results) - 1).thresholds(_thresholds({"green": None}))
    p.fill_opacity(80).line_width(0)


#: Panel type -> (SDK builder, its options, width, height, the function applying them).
OPTIONS: dict[str, tuple[type[Any], set[str], int, int, Callable[[Any, Spec], None]]] = {
    "timeseries": (timeseries.Panel, {"stacked", "bars", "max", "threshold_line", "dashed"},
                   12, 8, _timeseries),
    "stat": (stat.Panel, {"steps", "decimals"}, 4, 4, _stat),
    "gauge": (gauge.Panel, {"steps"}, 4, 4, _gauge),
    "bargauge": (bargauge.Panel, {"steps"}, 12, 8, _bargauge),
    "heatmap": (heatmap.Panel, set(), 12, 8, _heatmap),
    "table": (table.Panel, {"organize"}, 12, 8, _table),
    "state-timeline": (statetimeline.Panel, {"states"}, 12, 8, _state_timeline),
}  # fmt: skip
_COMMON = {
    "unit",
    "description",
    "width",
    "expr",
    "legend",
    "instant",
    "format",
    "targets",
    "exemplar",
}


def panel(spec: Spec, panel_id: int) -> Any:
    """The SDK builder of one panel; an option its type does not have raises ``ValueError``."""
    kind = next(iter(spec))
    make, options, width, height, apply = OPTIONS[kind]
    unknown = set(spec) - {kind} - _COMMON - options
    if unknown:
        raise ValueError(f"{kind} {spec[kind]!r}: unknown options {sorted(unknown)}")
    p = make().id(panel_id).title(spec[kind]).description(spec["description"])
    p.unit(spec["unit"]).datasource(DS).span(spec.get("width", width)).height(height)
    for i, target in enumerate(spec.get("targets", [spec])):
        p.with_target(_target(target, chr(ord("A") + i)))
    apply(p, spec)
    return p


def load(name: str, values: Mapping[str, str]) -> JSON:
    """A board file with its ``${placeholders}`` filled in."""
    text = (BOARDS / f"{name}.yaml").read_text(encoding="utf-8")
    board: JSON = yaml.safe_load(
        re.sub(r"\$\{([A-Za-z_]\w*)\}", lambda m: values[m.group(1)], text)
    )
    return board


def build(board: Spec) -> JSON:
    """The dashboard's JSON model."""
    d = (
        db.Dashboard(board["title"]).uid(board["uid"]).description(board["description"])
        .tags([TAG]).editable().fiscal_year_start_month(0).refresh("30s").time("now-1h", "now")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR).timezone("browser").version(1).week_start("")
        .link(
            db.DashboardLink("switchgear").type(dm.DashboardLinkType.DASHBOARDS).tags([TAG])
            .as_dropdown(False).icon("external link").include_vars(True).keep_time(True)
            .target_blank(False).tooltip("").url("")
        )
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    )  # fmt: skip
    for key in board["variables"]:
        name, label, query = VARIABLES[key]
        d.with_variable(
            db.QueryVariable(name).label(label).datasource(DS).regex("").multi(True)
            .query({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
            .hide(dm.VariableHide.DONT_HIDE).include_all(True).all_value(".+")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
        )  # fmt: skip
    for name in board.get("annotations", []):
        expr, _, _, color = ANNOTATIONS[name]
        d.annotation(
            db.AnnotationQuery().name(name).datasource(DS).enable(True).icon_color(color).expr(expr)
        )
    for i, spec in enumerate(board["panels"], start=1):
        d.with_panel(panel(spec, i))
    model: JSON = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    model["id"] = None
    for var in model["templating"]["list"]:
        if var["type"] == "query":
            var["definition"] = var["query"]["query"]
    for item in model["annotations"].setdefault("list", []):
        _, title, tags, _ = ANNOTATIONS[item["name"]]
        item |= {"tagKeys": tags, "titleFormat": title, "useValueForTime": False}
    return model

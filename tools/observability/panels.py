"""Panels, variables and dashboards with Grafana's own SDK (``grafana-foundation-sdk``, the
release for Grafana 11.6: ``schemaVersion`` 41); the dashboards are in :mod:`.dashboards`.

Conventions every panel follows (``tests/integration/test_dashboards.py`` checks them all):

* one ``datasource`` variable; every panel, target and annotation uses
  ``{"type": "prometheus", "uid": "${datasource}"}``, so file provisioning works as well as
  the import dialog;
* every selector carries ``job=~"$job", instance=~"$instance"`` (and ``name``/``pool`` where
  the metric has that label); every ``rate``/``increase`` reads ``[$__rate_interval]``;
* every panel has a description and a unit; only current panel types; stable uids.

The SDK's schema has no field for a query variable's ``definition`` (what Grafana's editor
shows) nor for a Prometheus annotation's title and tags: :meth:`Board.to_json` adds them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from .promql import number

JSON = dict[str, Any]
DATASOURCE: JSON = {"type": "prometheus", "uid": "${datasource}"}
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "switchgear"
RATE = "[$__rate_interval]"
Steps = Sequence[tuple[str, float | None]]


# --- queries -----------------------------------------------------------------------------------


def sel(metric: str, *extra: str, name: bool = False, pool: bool = False) -> str:
    """A selector scoped by the dashboard variables."""
    matchers = ['job=~"$job"', 'instance=~"$instance"']
    matchers += ['name=~"$name"'] if name else []
    matchers += ['pool=~"$pool"'] if pool else []
    return f"{metric}{{{', '.join([*matchers, *extra])}}}"


def rate(selector: str) -> str:
    return f"rate({selector}{RATE})"


def increase(selector: str) -> str:
    return f"increase({selector}{RATE})"


def quantile(q: float, bucket_selector: str, by: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({number(q)}, sum by ({labels}) ({rate(bucket_selector)}))"


def target(
    expr: str, legend: str = "", *, instant: bool = False, fmt: str = "time_series"
) -> prometheus.Dataquery:
    query = (
        prometheus.Dataquery()
        .datasource(DS)
        .editor_mode(pm.QueryEditorMode.CODE)
        .expr(expr)
        .format(pm.PromQueryFormat(fmt))
        .legend_format(legend or "__auto")
    )
    return query.instant() if instant else query.range()


# --- panels ------------------------------------------------------------------------------------


class PanelBuilder(Protocol):
    def title(self, title: str) -> Any: ...
    def description(self, description: str) -> Any: ...
    def unit(self, unit: str) -> Any: ...
    def datasource(self, datasource: dm.DataSourceRef) -> Any: ...
    def span(self, w: int) -> Any: ...
    def height(self, h: int) -> Any: ...
    def with_target(self, target: prometheus.Dataquery) -> Any: ...
    def build(self) -> dm.Panel: ...


P = TypeVar("P", bound=PanelBuilder)


def panel(
    builder: P,
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    width: int = 12,
    height: int = 8,
) -> P:
    """Title, description, unit, data source, size and targets (refIds A, B, ...)."""
    builder.title(title).description(description).unit(unit).datasource(DS)
    builder.span(width).height(height)
    for i, t in enumerate(targets):
        builder.with_target(t.ref_id(chr(ord("A") + i)))
    return builder


def thresholds(*steps: tuple[str, float | None]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for color, value in steps])
    )


def colors(mode: str) -> db.FieldColor:
    return db.FieldColor().mode(dm.FieldColorModeId(mode))


def last_value(calc: str = "lastNotNull") -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs([calc]).fields("").values(False)


def legend() -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions()
        .calcs([])
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def dashed(regexp: str) -> tuple[str, list[dm.DynamicConfigValue]]:
    """An override drawing the series matching ``regexp`` as unfilled dashed lines."""
    return regexp, [
        dm.DynamicConfigValue(id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"}),
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
    ]


def ts(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    stacked: bool = False,
    bars: bool = False,
    max_value: float | None = None,
    threshold_line: float | None = None,
    dash: tuple[str, list[dm.DynamicConfigValue]] | None = None,
) -> timeseries.Panel:
    """A time series panel: lines (or bars), from 0, optionally stacked or with a red area."""
    p = panel(timeseries.Panel(), title, description, unit, targets)
    p.legend(legend()).tooltip(
        cb.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )
    p.color_scheme(colors("palette-classic")).min(0)
    p.draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
    p.fill_opacity(60 if bars else (30 if stacked else 10)).line_width(1)
    p.show_points(common.VisibilityMode.NEVER).span_nulls(False)
    p.stacking(
        cb.StackingConfig().group("A").mode(common.StackingMode("normal" if stacked else "none"))
    )
    style = "off" if threshold_line is None else "line+area"
    p.thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode(style)))
    if max_value is not None:
        p.max(max_value)
    if threshold_line is not None:
        p.thresholds(thresholds(("transparent", None), ("red", threshold_line)))
    if dash is not None:
        p.override_by_regexp(*dash)
    return p


def single_stat(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    steps: Steps = (("green", None),),
    width: int = 4,
    decimals: int | None = None,
) -> stat.Panel:
    """A stat panel: the last value, coloured by ``steps``."""
    p = panel(stat.Panel(), title, description, unit, [target(expr)], width, 4)
    p.color_scheme(colors("thresholds")).thresholds(thresholds(*steps))
    p.color_mode(common.BigValueColorMode.VALUE).graph_mode(common.BigValueGraphMode.AREA)
    p.justify_mode(common.BigValueJustifyMode.AUTO).orientation(common.VizOrientation.AUTO)
    p.reduce_options(last_value()).text_mode(common.BigValueTextMode.AUTO)
    if decimals is not None:
        p.decimals(decimals)
    return p


# --- dashboards --------------------------------------------------------------------------------


def variable(name: str, label: str, query: str) -> db.QueryVariable:
    """A multi-value query variable, All = ``.+``, refreshed when the time range changes."""
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .hide(dm.VariableHide.DONT_HIDE)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .regex("")
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


@dataclass(frozen=True)
class Annotation:
    """A Prometheus annotation: events where ``expr`` has a sample, titled by labels."""

    name: str
    expr: str
    title: str
    tags: str
    color: str

    def builder(self) -> db.AnnotationQuery:
        return (
            db.AnnotationQuery()
            .name(self.name)
            .datasource(DS)
            .enable(True)
            .icon_color(self.color)
            .expr(self.expr)
        )


@dataclass(frozen=True)
class Board:
    """One dashboard: its identity, variables, annotations and panels in reading order."""

    uid: str
    title: str
    description: str
    variables: Sequence[db.QueryVariable]
    panels: Sequence[PanelBuilder]
    annotations: Sequence[Annotation] = ()

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"

    def builder(self) -> db.Dashboard:
        d = (
            db.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags([TAG])
            .editable()
            .fiscal_year_start_month(0)
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .refresh("30s")
            .time("now-1h", "now")
            .timezone("browser")
            .version(1)
            .week_start("")
        )
        d.link(
            db.DashboardLink("switchgear")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .icon("external link")
            .include_vars(True)
            .keep_time(True)
            .target_blank(False)
            .tooltip("")
            .url("")
        )
        d.with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        for v in self.variables:
            d.with_variable(v)
        for a in self.annotations:
            d.annotation(a.builder())
        for i, p in enumerate(self.panels, start=1):
            d.with_panel(p.id(i))  # type: ignore[attr-defined]
        return d

    def to_json(self) -> JSON:
        model: JSON = json.loads(json.dumps(self.builder().build(), cls=JSONEncoder))
        model["id"] = None
        for var in model["templating"]["list"]:
            if var["type"] == "query":
                var["definition"] = var["query"]["query"]
        by_name = {a.name: a for a in self.annotations}
        for item in model["annotations"].setdefault("list", []):
            a = by_name[item["name"]]
            item |= {"tagKeys": a.tags, "titleFormat": a.title, "useValueForTime": False}
        return model

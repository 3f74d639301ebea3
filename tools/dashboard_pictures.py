"""Draw each shipped Grafana dashboard from real Prometheus data, as a PNG for the docs.

Grafana itself is not needed: the panels are laid out on Grafana's 24-column grid from each
dashboard's ``gridPos``, and every target is run through Prometheus' ``query_range`` with the
variables substituted the way Grafana would. Time series, heatmaps and state timelines are
drawn as lines (a heatmap as its bucket rates, one band per ``le``), stat/gauge/bar-gauge
panels as their last value, tables as text. The live contract test calls :func:`render` on
the Prometheus it ran; with ``SWITCHGEAR_PICTURES_DIR`` set, the PNGs are kept there (the
docs' pictures come from ``SWITCHGEAR_PICTURES_DIR=docs/img``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from tools.observability import substitute

__all__ = ["Series", "render", "render_all"]

DASHBOARDS = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"

#: (expr, start, end) -> Prometheus ``query_range`` result (``[{"metric":..., "values":...}]``)
Fetch = Callable[[str, float, float], list[dict[str, Any]]]

_GRID_COLUMNS = 24
_INCH_PER_COLUMN = 0.75
_INCH_PER_ROW = 0.42
_LINE_PANELS = {"timeseries", "state-timeline", "heatmap"}
_VALUE_PANELS = {"stat", "gauge", "bargauge"}


@dataclass(frozen=True)
class Series:
    """One series of one target: its legend and its finite points."""

    legend: str
    times: list[float]
    values: list[float]


def legend_of(template: str, labels: Mapping[str, str]) -> str:
    """Grafana's ``legendFormat``: ``{{label}}`` replaced, ``__auto`` = the label set."""
    if template in ("", "__auto"):
        shown = {k: v for k, v in labels.items() if k != "__name__"}
        return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def _series(result: Iterable[dict[str, Any]], template: str) -> list[Series]:
    out = []
    for item in result:
        points = [(float(t), float(v)) for t, v in item["values"]]
        points = [(t, v) for t, v in points if math.isfinite(v)]
        if points:
            times, values = zip(*points, strict=True)
            out.append(Series(legend_of(template, item["metric"]), list(times), list(values)))
    return out


def _fmt(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "bytes":
        return f"{value / 2**20:.0f} MiB"
    if unit in ("reqps", "cps", "ops"):
        return f"{value:.1f}/s"
    return f"{value:.3g}"


def _draw_lines(ax: Axes, series: list[Series], start: float, panel_type: str) -> None:
    if panel_type == "heatmap":
        # One band per bucket: the rate of calls that landed in it (upper bound in the legend).
        series = sorted(series, key=lambda s: _le(s.legend))
    for s in series[:12]:
        ax.plot([t - start for t in s.times], s.values, linewidth=1.2, label=s.legend[:40])
    if 1 < len(series) <= 12:
        ax.legend(fontsize=5, loc="upper left", framealpha=0.6)
    ax.set_xlabel("seconds into the run", fontsize=6)


def _le(legend: str) -> float:
    match = re.search(r"([0-9.]+|\+Inf)", legend)
    if match is None:
        return math.inf
    return math.inf if match.group(1) == "+Inf" else float(match.group(1))


def _draw_value(ax: Axes, series: list[Series], unit: str) -> None:
    ax.axis("off")
    if not series:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=10, color="grey")
        return
    lines = [
        f"{_fmt(s.values[-1], unit)}" + (f"  {s.legend[:24]}" if len(series) > 1 else "")
        for s in series[:4]
    ]
    ax.text(0.5, 0.45, "\n".join(lines), ha="center", va="center", fontsize=12 - 2 * len(lines))


def _draw_table(ax: Axes, series: list[Series]) -> None:
    ax.axis("off")
    rows = [s.legend[:60] for s in series[:8]] or ["(no rows)"]
    ax.text(0.02, 0.95, "\n".join(rows), ha="left", va="top", fontsize=6, family="monospace")


def render(
    dashboard: Mapping[str, Any],
    fetch: Fetch,
    start: float,
    end: float,
    out: Path,
    variables: Mapping[str, str] | None = None,
    rate_interval: str = "1m",
) -> dict[str, int]:
    """Draw ``dashboard`` over ``[start, end]`` into ``out``; returns series drawn per panel."""
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(
        figsize=(_GRID_COLUMNS * _INCH_PER_COLUMN, rows * _INCH_PER_ROW), layout="constrained"
    )
    grid = fig.add_gridspec(rows, _GRID_COLUMNS)
    drawn: dict[str, int] = {}
    for panel in panels:
        pos = panel["gridPos"]
        ax = fig.add_subplot(grid[pos["y"] : pos["y"] + pos["h"], pos["x"] : pos["x"] + pos["w"]])
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "none")
        series: list[Series] = []
        for target in panel.get("targets", []):
            expr = substitute(target["expr"], variables, rate_interval)
            series += _series(fetch(expr, start, end), target.get("legendFormat", ""))
        kind = panel["type"]
        if kind in _VALUE_PANELS:
            _draw_value(ax, series, unit)
        elif kind == "table":
            _draw_table(ax, series)
        else:
            _draw_lines(ax, series, start, kind)
            ax.tick_params(labelsize=6)
            ax.set_ylabel(unit, fontsize=6)
        ax.set_title(panel["title"], fontsize=8, loc="left")
        drawn[panel["title"]] = len(series)
    fig.suptitle(f"{dashboard['title']}  (uid {dashboard['uid']})", fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return drawn


def render_all(
    fetch: Fetch,
    start: float,
    end: float,
    out_dir: Path,
    variables: Mapping[str, str] | None = None,
    rate_interval: str = "1m",
    only: str | None = None,
) -> dict[str, dict[str, int]]:
    """:func:`render` every shipped dashboard (or the one with uid ``only``) to ``<uid>.png``."""
    results = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        if only is not None and dashboard["uid"] != only:
            continue
        target = out_dir / f"{dashboard['uid']}.png"
        results[dashboard["uid"]] = render(
            dashboard, fetch, start, end, target, variables, rate_interval
        )
    return results

"""The three Grafana dashboards (overview, circuit breakers, pools), and every query in them.

Each dashboard is ``boards/<name>.yaml`` (:mod:`.panels` says how one reads);
:func:`panel_queries`, :func:`variable_queries` and :func:`annotation_queries` list every
query of the JSON that is written, for the lint and the live contract tests;
:func:`substitute` replaces Grafana's variables so a query can be sent to Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from . import runbooks
from .config import DEFAULT, Config
from .panels import DATASOURCE, JSON, build, load

__all__ = ["DATASOURCE", "Board", "dashboards"]

NAMES = ("overview", "breakers", "pools")


@dataclass(frozen=True)
class Board:
    """One dashboard: its board file's description and the JSON model built from it."""

    spec: JSON

    @property
    def uid(self) -> str:
        return str(self.spec["uid"])

    @property
    def title(self) -> str:
        return str(self.spec["title"])

    @property
    def description(self) -> str:
        return str(self.spec["description"])

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"

    @cached_property
    def model(self) -> JSON:
        return build(self.spec)

    def to_json(self) -> JSON:
        return self.model


def dashboards(config: Config = DEFAULT) -> list[Board]:
    values = runbooks.values(config)
    return [Board(load(name, values)) for name in NAMES]


def render_dashboard(board: Board) -> str:
    return json.dumps(board.model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


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

    # ``${1}`` is a label_replace group, not a variable.
    return re.sub(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)\}|(?P<plain>[A-Za-z_]\w*))", one, expr)

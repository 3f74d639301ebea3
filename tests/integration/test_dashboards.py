"""Lint of the generated Grafana dashboards, and the generator's --check."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tools.observability import generate
from tools.observability.catalog import METRICS, known_series_names, metric
from tools.observability.dashboards import (
    DATASOURCE,
    annotation_queries,
    dashboards,
    panel_queries,
    substitute,
    variable_queries,
)
from tools.observability.rules import alerts, recording_rules
from tools.observability.yamlout import dump

from tests.conftest import require_binary
from tests.promql_reading import metric_names, ranges, selectors

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
UIDS = {
    "switchgear-overview.json": "switchgear-overview",
    "switchgear-breakers.json": "switchgear-breakers",
    "switchgear-pools.json": "switchgear-pools",
}
PANEL_TYPES = {
    "timeseries",
    "stat",
    "state-timeline",
    "heatmap",
    "table",
    "bargauge",
    "gauge",
    "text",
}
CATALOG = {m.name for m in METRICS}
RATE_FUNCTIONS = re.compile(r"\b(?:rate|irate|increase|delta|idelta|deriv|changes|resets)\s*\(")


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8"))
    return data


def _exprs(model: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in model["panels"] for t in p["targets"]]
    out += [a["expr"] for a in model["annotations"]["list"] if "expr" in a]
    return out


DASHBOARDS = sorted(UIDS)


def test_generated_files_are_up_to_date() -> None:
    assert generate.check() == [], "run: python -m tools.observability"


def test_check_command_exits_zero_and_flags_drift(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.observability", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a fresh tree: everything missing; then written; then one file edited, one extra
    assert set(generate.check(tmp_path)) == set(generate.outputs())
    generate.write(tmp_path)
    assert generate.check(tmp_path) == []
    (tmp_path / "grafana/dashboards/switchgear-pools.json").write_text("{}\n")
    (tmp_path / "grafana/dashboards/stray.json").write_text("{}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tools.observability", "--check", "--root", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "grafana/dashboards/switchgear-pools.json" in proc.stdout
    assert "grafana/dashboards/stray.json" in proc.stdout


def test_the_three_dashboards_are_the_generated_ones() -> None:
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == DASHBOARDS
    assert {f"{d.uid}.json" for d in dashboards()} == set(DASHBOARDS)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_model(name: str) -> None:
    model = _load(name)
    assert model["uid"] == UIDS[name]
    assert model["schemaVersion"] >= 39
    assert model["id"] is None
    assert "switchgear" in model["tags"]
    assert model["title"]
    assert model["description"]
    text = json.dumps(model)
    assert "__inputs" not in text
    assert "DS_PROMETHEUS" not in text
    assert "${DS_" not in text


@pytest.mark.parametrize("name", DASHBOARDS)
def test_variables(name: str) -> None:
    model = _load(name)
    variables = {v["name"]: v for v in model["templating"]["list"]}
    ds = [v for v in variables.values() if v["type"] == "datasource"]
    assert len(ds) == 1
    assert ds[0]["name"] == "datasource"
    assert ds[0]["query"] == "prometheus"
    assert {"job", "instance"} <= variables.keys()
    assert variables.keys() & {"name", "pool"}
    for var in variables.values():
        if var["type"] == "datasource":
            continue
        assert var["type"] == "query"
        assert var["datasource"] == DATASOURCE
        assert var["query"]["query"].startswith("label_values(")
        assert var["definition"] == var["query"]["query"]
        assert var["multi"]
        assert var["includeAll"]
        assert var["allValue"] == ".+"
        assert var["refresh"] == 2  # on time range change
    # a variable may only use variables defined before it
    seen: list[str] = []
    for var in model["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        for used in re.findall(r"\$(\w+)", query):
            assert used in seen, (var["name"], used)
        seen.append(var["name"])


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels(name: str) -> None:
    model = _load(name)
    panels = model["panels"]
    assert panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        where = f"{name}: {panel['title']!r}"
        assert panel["type"] in PANEL_TYPES, where
        assert panel["title"].strip(), where
        assert panel["description"].strip(), where
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        assert panel["datasource"] == DATASOURCE, where
        assert panel["targets"], where
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, where
            assert target["expr"].strip(), where
        if panel["type"] == "heatmap":
            assert all(t["format"] == "heatmap" for t in panel["targets"]), where
            assert panel["options"]["yAxis"]["unit"] == "s", where
    for annotation in model["annotations"]["list"]:
        assert annotation["datasource"] == DATASOURCE


@pytest.mark.parametrize("name", DASHBOARDS)
def test_grid_positions_do_not_overlap(name: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _load(name)["panels"]:
        pos = panel["gridPos"]
        assert pos["w"] > 0, panel["title"]
        assert pos["h"] > 0, panel["title"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_queries_use_rate_interval_and_the_variables(name: str) -> None:
    model = _load(name)
    defined = {v["name"] for v in model["templating"]["list"]}
    for expr in _exprs(model):
        assert ranges(expr) == ["$__rate_interval"] * len(RATE_FUNCTIONS.findall(expr)), expr
        for used in re.findall(r"\$\{?([A-Za-z_]\w*)\}?", expr):  # ${1}: a regex group
            assert used == "__rate_interval" or used in defined, (expr, used)
        for sel in selectors(expr):
            if sel.name == "ALERTS":
                continue
            assert 'job=~"$job"' in sel.matchers, expr
            assert 'instance=~"$instance"' in sel.matchers, expr
            base = sel.name.removesuffix("_bucket").removesuffix("_count")
            assert base in CATALOG, f"unknown metric {sel.name!r} in {expr!r}"
            labels = metric(base).labels
            for label in ("name", "pool"):
                # An adaptive limit's series are named by the limit: the $limit variable.
                var = "limit" if label == "name" and base.startswith("switchgear_limit_") else label
                if label in labels and var in defined:
                    assert f'{label}=~"${var}"' in sel.matchers, (expr, var)


def test_every_metric_name_exists() -> None:
    known = known_series_names() | {r.record for r in recording_rules()}
    exprs = [e for name in DASHBOARDS for e in _exprs(_load(name))]  # as committed
    exprs += [v.selector for v in variable_queries()]
    exprs += [a.expr for a in alerts()] + [r.expr for r in recording_rules()]
    for expr in exprs:
        assert metric_names(expr), f"no metric in {expr!r}"
        unknown = metric_names(expr) - known
        assert not unknown, f"unknown metric {unknown} in {expr!r}"


def test_panel_queries_list_every_target_on_disk() -> None:
    on_disk = sorted(
        (m["uid"], p["id"], t["refId"], t["expr"])
        for m in (_load(n) for n in DASHBOARDS)
        for p in m["panels"]
        for t in p["targets"]
    )
    listed = sorted((q.dashboard_uid, q.panel_id, q.ref_id, q.expr) for q in panel_queries())
    assert listed == on_disk
    assert {v.label for v in variable_queries()} == {"job", "instance", "name", "pool"}


def test_substitute() -> None:
    expr = 'rate(m{job=~"$job", name=~"${name}"}[$__rate_interval])'
    assert substitute(expr, {"job": "api"}) == 'rate(m{job=~"api", name=~".+"}[1m])'


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    """Dashboard targets, variable selectors and runbook queries as recording rules."""
    promtool = require_binary("promtool")
    exprs = [substitute(q.expr, rate_interval="5m") for q in panel_queries()]
    exprs += [substitute(q.expr, rate_interval="5m") for q in annotation_queries()]
    exprs += [f"group({substitute(v.selector)})" for v in variable_queries()]
    exprs += [query for a in alerts() for _, query in a.runbook.diagnosis]
    rules = [{"record": f"switchgear_lint:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "queries.yaml"
    path.write_text(dump({"groups": [{"name": "lint", "rules": rules}]}), encoding="utf-8")
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


def test_provisioning_example() -> None:
    ds = (ROOT / "grafana/provisioning/datasources/switchgear.yaml").read_text(encoding="utf-8")
    assert "type: prometheus" in ds
    assert "timeInterval:" in ds
    prov = (ROOT / "grafana/provisioning/dashboards/switchgear.yaml").read_text(encoding="utf-8")
    assert "type: file" in prov
    assert "path: /var/lib/grafana/dashboards/switchgear" in prov
    import yaml

    assert yaml.safe_load(ds)["datasources"][0]["type"] == "prometheus"
    assert yaml.safe_load(prov)["providers"][0]["type"] == "file"

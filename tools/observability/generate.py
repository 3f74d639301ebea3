"""Every generated file, and writing or checking them against the working tree."""

from __future__ import annotations

from pathlib import Path

from . import provisioning
from .config import DEFAULT, Config
from .dashboards import dashboards, render_dashboard
from .docs import render_dashboards_doc, render_runbooks
from .rules import render_rules

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = "alerts/switchgear-alerts.yaml"
DASHBOARDS_DIR = "grafana/dashboards"


def outputs(config: Config = DEFAULT) -> dict[str, str]:
    """Repository-relative path -> content of every generated file."""
    files = {RULES_FILE: render_rules(config)}
    files |= {f"{DASHBOARDS_DIR}/{d.filename}": render_dashboard(d) for d in dashboards(config)}
    files["grafana/provisioning/datasources/switchgear.yaml"] = provisioning.datasources()
    files["grafana/provisioning/dashboards/switchgear.yaml"] = provisioning.dashboard_provider()
    files["docs/runbooks.md"] = render_runbooks(config)
    files["docs/dashboards.md"] = render_dashboards_doc(config)
    return files


def _leftovers(root: Path, expected: dict[str, str]) -> list[str]:
    """Dashboards on disk that are not generated (every JSON file there is)."""
    found = sorted(p.relative_to(root).as_posix() for p in root.glob(f"{DASHBOARDS_DIR}/*.json"))
    return [rel for rel in found if rel not in expected]


def _stale(root: Path, expected: dict[str, str]) -> list[str]:
    """Paths that are missing or differ from ``expected``."""
    return [
        rel
        for rel, text in expected.items()
        if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text
    ]


def check(root: Path = ROOT, config: Config = DEFAULT) -> list[str]:
    """Paths that are missing, differ from a fresh generation, or should not exist."""
    expected = outputs(config)
    return _stale(root, expected) + _leftovers(root, expected)


def write(root: Path = ROOT, config: Config = DEFAULT) -> list[str]:
    """Write every generated file; remove leftovers; return the paths that changed."""
    expected = outputs(config)
    stale, leftovers = _stale(root, expected), _leftovers(root, expected)
    for rel in stale:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(expected[rel], encoding="utf-8", newline="\n")
    for rel in leftovers:
        (root / rel).unlink()
    return stale + leftovers

"""Every generated file, and writing or checking them against the working tree."""

from __future__ import annotations

from pathlib import Path

from . import provisioning
from .config import DEFAULT, Config
from .dashboards import dashboards, filename, render_dashboard
from .docs import render_dashboards_doc, render_runbooks
from .rules import render_rules

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = "alerts/switchgear-alerts.yaml"
DASHBOARDS_DIR = "grafana/dashboards"

#: Directories whose every file of that suffix is generated: a leftover file is stale too.
OWNED = ((DASHBOARDS_DIR, ".json"),)


def outputs(config: Config = DEFAULT) -> dict[str, str]:
    """Repository-relative path -> content of every generated file."""
    files = {RULES_FILE: render_rules(config)}
    files |= {f"{DASHBOARDS_DIR}/{filename(d)}": render_dashboard(d) for d in dashboards(config)}
    files["grafana/provisioning/datasources/switchgear.yaml"] = provisioning.datasources()
    files["grafana/provisioning/dashboards/switchgear.yaml"] = provisioning.dashboard_provider()
    files["docs/runbooks.md"] = render_runbooks(config)
    files["docs/dashboards.md"] = render_dashboards_doc(config)
    return files


def _leftovers(root: Path, expected: dict[str, str]) -> list[str]:
    extra = []
    for directory, suffix in OWNED:
        base = root / directory
        if base.is_dir():
            for path in sorted(base.glob(f"*{suffix}")):
                rel = path.relative_to(root).as_posix()
                if rel not in expected:
                    extra.append(rel)
    return extra


def check(root: Path = ROOT, config: Config = DEFAULT) -> list[str]:
    """Paths that are missing, differ from a fresh generation, or should not exist."""
    expected = outputs(config)
    stale = []
    for rel, text in expected.items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(rel)
    return stale + _leftovers(root, expected)


def write(root: Path = ROOT, config: Config = DEFAULT) -> list[str]:
    """Write every generated file; remove leftovers; return the paths that changed."""
    expected = outputs(config)
    changed = []
    for rel, text in expected.items():
        path = root / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        changed.append(rel)
    for rel in _leftovers(root, expected):
        (root / rel).unlink()
        changed.append(rel)
    return changed

"""A linter for the hand-written promtool tests in ``alerts/tests/``.

Every alert of the rules file has its own test file, ``<alert without Switchgear, in
snake_case>.yaml``, whose cases are named ``<kind>: <what>`` with ``kind`` one of
``fires``, ``zero_traffic``, ``short_spike`` and ``other``. The linter holds each file to:

* a ``fires``, a ``zero_traffic`` and a ``short_spike`` case;
* cases other than ``fires`` expect nothing at every check (quiet);
* a ``fires`` case expects the alert at some check, and nothing one evaluation before the
  first of them (the check marked ``# before``); a check with nothing expected after a firing
  one comes one evaluation after the last (``# resolved``); some case shows a resolve;
* an alert with ``keep_firing_for`` has a firing check marked ``# kept`` before its resolve;
* expected labels carry the rule's severity, expected annotations are literal strings (no
  ``{{``) and name the alert's ``runbook_url``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

KINDS = ("fires", "zero_traffic", "short_spike", "other")
RECORDING_TESTS = "recording_rules.yaml"
_MARKER = re.compile(r"^\s*- eval_time:.*#\s*(before|kept|resolved)\b")
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def test_filename(alert: str) -> str:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", alert.removeprefix("Switchgear")).lower()
    return f"{snake}.yaml"


def seconds(text: str) -> float:
    return sum(int(n) * _UNIT[u] for n, u in _DURATION.findall(str(text)))


def _markers(text: str) -> list[str]:
    """The marker of every check, in file order ("" for an unmarked one)."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("- eval_time:"):
            match = _MARKER.match(line)
            out.append(match.group(1) if match else "")
    return out


def _lint_case(case: Mapping[str, Any], marks: list[str], step: float) -> list[str]:
    name = str(case.get("name", ""))
    kind = name.split(":", 1)[0]
    checks = case.get("alert_rule_test") or []
    times = [seconds(c["eval_time"]) for c in checks]
    firing = [t for t, c in zip(times, checks, strict=True) if c.get("exp_alerts")]
    if kind not in KINDS:
        return [f"case {name!r}: name must start with one of {KINDS}"]
    if kind != "fires":
        return [f"case {name!r}: a {kind} case expects an alert" for _ in firing[:1]]
    if not firing:
        return [f"case {name!r}: a fires case never expects the alert"]
    first, last = min(firing), max(firing)
    problems = []
    for t, c, mark in zip(times, checks, marks, strict=True):
        fires = bool(c.get("exp_alerts"))
        wanted = {first - step: "before", last + step: "resolved"}.get(t) if not fires else None
        if not fires and wanted is None:
            problems.append(f"case {name!r}: quiet check at {t:g}s is neither before nor resolve")
        if (mark == "kept" and not fires) or (mark in ("before", "resolved") and mark != wanted):
            problems.append(f"case {name!r}: check at {t:g}s is marked {mark!r}")
    if first - step not in times or first - step in firing:
        problems.append(f"case {name!r}: no quiet check one evaluation before {first:g}s")
    return problems


def lint_file(path: Path, rule: Mapping[str, Any]) -> list[str]:
    """Problems of one alert's test file, against that alert's rule."""
    text = path.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    step = seconds(doc.get("evaluation_interval", "1m"))
    marks = iter(_markers(text))
    problems: list[str] = []
    kinds, resolves, kept = set(), False, False
    for case in doc["tests"]:
        checks = case.get("alert_rule_test") or []
        case_marks = [next(marks) for _ in checks]
        kinds.add(str(case.get("name", "")).split(":", 1)[0])
        problems += _lint_case(case, case_marks, seconds(case.get("interval", step)))
        resolves |= "resolved" in case_marks
        kept |= "kept" in case_marks and "resolved" in case_marks
        for check in checks:
            problems += _lint_expected(check, rule)
    problems += [f"no {k} case" for k in ("fires", "zero_traffic", "short_spike") if k not in kinds]
    if not resolves:
        problems.append("no case shows the alert resolve (# resolved)")
    if rule.get("keep_firing_for") and not kept:
        problems.append("keep_firing_for is set but no case has a # kept check before a resolve")
    return [f"{path.name}: {p}" for p in problems]


def _lint_expected(check: Mapping[str, Any], rule: Mapping[str, Any]) -> list[str]:
    problems = []
    if check.get("alertname") != rule["alert"]:
        problems.append(f"check at {check['eval_time']} is for {check.get('alertname')!r}")
    for exp in check.get("exp_alerts") or []:
        if exp.get("exp_labels", {}).get("severity") != rule["labels"]["severity"]:
            problems.append(f"check at {check['eval_time']}: severity is not the rule's")
        annotations = exp.get("exp_annotations", {})
        if set(annotations) != set(rule["annotations"]):
            problems.append(f"check at {check['eval_time']}: not every annotation expected")
        if any("{{" in str(v) for v in annotations.values()):
            problems.append(f"check at {check['eval_time']}: an annotation is not literal")
        if annotations.get("runbook_url") != rule["annotations"]["runbook_url"]:
            problems.append(f"check at {check['eval_time']}: runbook_url is not the rule's")
    return problems


def lint(rules_file: Path, tests_dir: Path) -> list[str]:
    """Every problem of the test files against the alerts of ``rules_file``."""
    groups = yaml.safe_load(rules_file.read_text(encoding="utf-8"))["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    expected = {test_filename(name): rule for name, rule in rules.items()}
    present = {p.name for p in tests_dir.glob("*.yaml")}
    problems = [f"missing {name}" for name in sorted(set(expected) - present)]
    problems += [
        f"{n}: no alert of that name" for n in sorted(present - {*expected, RECORDING_TESTS})
    ]
    for name in sorted(set(expected) & present):
        problems += lint_file(tests_dir / name, expected[name])
    return problems

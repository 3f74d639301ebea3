"""The Prometheus rules: promtool check/test, coverage of every alert, runbooks, metric names."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tools.observability.catalog import METRICS, known_series_names
from tools.observability.config import DEFAULT, LATENCY_BUCKETS, Config
from tools.observability.rules import alerts, recording_rules

from tests import promtool_lint as testlint
from tests.conftest import require_binary
from tests.promql_reading import metric_names

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "switchgear-alerts.yaml"
TESTS_DIR = ROOT / "alerts" / "tests"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
TEST_FILES = sorted(p.name for p in TESTS_DIR.glob("*.yaml"))


def _alerts_in_rules_file() -> list[str]:
    return re.findall(r"^\s+- alert: (\w+)$", RULES.read_text(encoding="utf-8"), re.MULTILINE)


# --- promtool ------------------------------------------------------------------------------


def test_promtool_check_rules_is_clean() -> None:
    promtool = require_binary("promtool")
    proc = subprocess.run(
        [promtool, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = len(recording_rules()) + len(alerts())
    assert f"SUCCESS: {expected} rules found" in proc.stdout


@pytest.fixture(scope="module")
def promtool_results() -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    """``promtool test rules`` on every file, in parallel (the SLO files take a few seconds)."""
    promtool = require_binary("promtool")

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [promtool, "test", "rules", name],
            cwd=TESTS_DIR,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        yield dict(zip(TEST_FILES, pool.map(run, TEST_FILES), strict=True))


@pytest.mark.parametrize("filename", TEST_FILES)
def test_promtool_unit_tests_pass(
    filename: str, promtool_results: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    proc = promtool_results[filename]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


# --- coverage of the promtool tests ---------------------------------------------------------


def test_every_alert_in_the_rules_file_has_a_firing_promtool_test() -> None:
    defined = _alerts_in_rules_file()
    assert sorted(defined) == sorted(a.name for a in alerts())
    firing: set[str] = set()
    pattern = re.compile(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:")
    for path in TESTS_DIR.glob("*.yaml"):
        firing |= set(pattern.findall(path.read_text(encoding="utf-8")))
    assert set(defined) <= firing, f"no firing expectation for {set(defined) - firing}"


def test_the_promtool_tests_pass_the_linter() -> None:
    """Each alert's file: fires, not one step early, quiet cases, resolve, literal annotations."""
    assert testlint.lint(RULES, TESTS_DIR) == []
    assert sorted(
        [testlint.test_filename(a.name) for a in alerts()] + ["recording_rules.yaml"]
    ) == (TEST_FILES)


_LINTED = "circuit_breaker_open.yaml"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "eval_time: 9m  # before: one evaluation before it may fire\n",
            "eval_time: 8m\n",
            "before",
        ),
        ("  # kept: condition false, keep_firing_for holds it", "", "kept"),
        ("eval_time: 23m  # resolved", "eval_time: 25m", "neither before nor resolve"),
        ("for 5m; calls through it", "for {{ $labels.for }}; calls through it", "not literal"),
        ("- name: 'short_spike:", "- name: 'other:", "no short_spike case"),
        ("severity: warning", "severity: critical", "severity"),
    ],
)
def test_the_linter_catches_a_weakened_test(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    text = (TESTS_DIR / _LINTED).read_text(encoding="utf-8")
    assert old in text
    for name in TEST_FILES:
        (tmp_path / name).write_text((TESTS_DIR / name).read_text(encoding="utf-8"))
    (tmp_path / _LINTED).write_text(text.replace(old, new, 1), encoding="utf-8")
    problems = testlint.lint(RULES, tmp_path)
    assert problems, problem
    assert all(p.startswith(_LINTED) for p in problems), problems
    assert any(problem in p for p in problems), problems


# --- rule shape -----------------------------------------------------------------------------


def test_alerts_have_severity_summary_description_and_runbook_url() -> None:
    text = RULES.read_text(encoding="utf-8")
    for alert in alerts():
        assert alert.name.startswith("Switchgear")
        assert alert.severity in {"critical", "warning", "info"}
        assert alert.summary
        assert alert.description
        assert alert.runbook_url(DEFAULT) == f"docs/runbooks.md#{alert.name.lower()}"
        block = text.split(f"- alert: {alert.name}\n", 1)[1].split("\n      - ", 1)[0]
        for key in ("severity:", "summary:", "description:", "runbook_url:"):
            assert key in block, (alert.name, key)


def test_ratio_recording_rules_guard_their_denominator() -> None:
    for rule in recording_rules():
        if ":ratio_" in rule.record:
            assert re.search(r"/ on \(job, name\)\n\(.* > 0\)$", rule.expr), rule.record


def test_every_metric_name_in_the_rules_and_runbooks_exists() -> None:
    allowed = known_series_names() | {r.record for r in recording_rules()}
    allowed |= {"scrape_duration_seconds"}  # Prometheus' own, used in a runbook query
    for alert in alerts():
        exprs = [alert.expr, *(q for _, q in alert.runbook.diagnosis)]
        for expr in exprs:
            unknown = metric_names(expr) - allowed
            assert not unknown, f"{alert.name}: unknown metric {unknown} in {expr!r}"
    for rule in recording_rules():
        assert not metric_names(rule.expr) - allowed, rule.record


def test_latency_threshold_must_be_a_bucket_bound() -> None:
    assert DEFAULT.latency_slo_threshold in LATENCY_BUCKETS
    with pytest.raises(ValueError, match="latency_slo_threshold"):
        Config(latency_slo_threshold=0.3)
    with pytest.raises(ValueError, match="error_slo_target"):
        Config(error_slo_target=1.0)


def test_rules_follow_a_config() -> None:
    """The live contract test renders the same rules with short windows."""
    from tools.observability.rules import render_rules

    short = Config(breaker_open_for=10, breaker_open_keep_firing_for=5)
    text = render_rules(short)
    block = text.split("- alert: SwitchgearCircuitBreakerOpen\n", 1)[1]
    assert "for: 10s" in block.split("labels:")[0]
    assert "keep_firing_for: 5s" in block.split("labels:")[0]


# --- runbooks -------------------------------------------------------------------------------


def _github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_every_alert_has_a_runbook_section() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    sections = {
        _github_anchor(m.group(1)): m.start() for m in re.finditer(r"^## (.+)$", text, re.MULTILINE)
    }
    for alert in alerts():
        path, _, anchor = alert.runbook_url(DEFAULT).partition("#")
        assert path.endswith("docs/runbooks.md")
        assert anchor in sections, f"no runbook section for {alert.name}"
        body = text[sections[anchor] :].split("\n## ", 1)[0]
        for part in ("### Meaning", "### Impact", "### Diagnosis", "### Mitigation", "```promql"):
            assert part in body, (alert.name, part)


def test_every_runbook_template_belongs_to_an_alert_and_fills_in() -> None:
    from tools.observability import runbooks

    names = {a.name for a in alerts()}
    assert {p.name for p in runbooks.TEMPLATES.glob("*.md")} == {
        runbooks.template_path(n).name for n in names
    }
    for alert in alerts(Config(breaker_open_for=17, rejection_ratio=0.125)):
        assert "${" not in alert.runbook.text, alert.name
        assert alert.runbook.text.startswith("**Fires when:** "), alert.name
        assert alert.runbook.diagnosis, alert.name
    # the numbers come from the Config: a changed threshold shows in the prose
    shown = {a.name: a.runbook.text for a in alerts(Config(breaker_open_for=17))}
    assert "`for: 17s`" in shown["SwitchgearCircuitBreakerOpen"]


# --- the catalog against the design and the metrics docs -------------------------------------


def _names_in_table(text: str) -> set[str]:
    """Metric names in the first column of a Markdown table.

    A cell names full metrics (``switchgear_pool_size``, also as a link) or continues the
    first one with suffixes (``switchgear_pool_size`` / ``_in_use``).
    """
    names: set[str] = set()
    for line in text.splitlines():
        if not line.startswith(("| `switchgear_", "| [`switchgear_", "| [`http_server_")):
            continue
        cell = line.split("|")[1]
        parts = re.findall(r"`([a-z_]+)`", cell)
        base = "_".join(parts[0].split("_")[:2])  # switchgear_pool, switchgear_memory
        for part in parts:
            names.add(part if part.startswith(("switchgear_", "http_server_")) else base + part)
    return names


def test_catalog_matches_the_metrics_docs() -> None:
    # The metrics reference holds the table (docs/metrics.md before it existed).
    docs = next(
        (
            ROOT / "docs" / page
            for page in ("metrics-reference.md", "metrics.md")
            if (ROOT / "docs" / page).is_file()
        ),
        None,
    )
    if docs is None:
        pytest.skip("the metrics docs are not written yet")
    assert _names_in_table(docs.read_text(encoding="utf-8")) == {m.name for m in METRICS}


def test_rules_with_an_absolute_runbook_address(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    import sys

    out = tmp_path / "rules.yaml"
    base = "https://docs.example.com/switchgear/runbooks/"
    run = [sys.executable, "-m", "tools.observability"]
    done = subprocess.run(
        [*run, "--runbook-base-url", base, "--rules-to", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    urls = re.findall(r"runbook_url: '?([^'\n]+)'?$", out.read_text(), re.MULTILINE)
    assert len(urls) == len(alerts())
    assert all(url.startswith(base + "#") for url in urls), urls
    check = subprocess.run(
        [promtool, "check", "rules", str(out)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    relative = subprocess.run(
        [*run, "--runbook-base-url", "docs/runbooks.md", "--rules-to", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert relative.returncode == 2
    assert "absolute http(s) URL" in relative.stderr

"""The live contract: the shipped dashboards and alert rules against a real Prometheus.

One campaign, shared by every test of this module (about a minute):

1. the demo app (``python -m examples.demo --no-scenario``) serves on a free 127.0.0.1 port,
   and the Debian ``prometheus`` binary scrapes it every second and evaluates the shipped
   rules, rendered from ``tools.observability`` with the short windows of :data:`LIVE`;
2. steady traffic from :class:`examples.demo.load.BackgroundLoad`; a **clean run** of
   :data:`CLEAN_SECONDS` without faults, during which no alert may fire;
3. faults, injected through the app's ``POST /admin/faults``: the payment gateway fails until
   the breaker-open alert fires, then recovers until the alert resolves; the inventory
   database turns slow until the pool is saturated; the app is restarted (SIGTERM, then
   started again on the same port).

Then, through Prometheus' HTTP API: every dashboard panel query (variables substituted the
way Grafana would, ``$__rate_interval`` = 4 scrape intervals) returns at least one finite
value, every finite value in its unit's range; every variable query and annotation returns
values; the breaker-open alert went pending -> firing -> resolved. Exemptions are listed in
:data:`NO_DATA_WITHOUT_MEMORY_LIMIT`, each with its reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.demo.app import INVENTORY_POOL, INVENTORY_ROUTE, PAYMENTS_LIMIT, PAYMENTS_ROUTE
from examples.demo.load import BackgroundLoad
from tools.dashboard_pictures import render_all
from tools.observability import (
    PanelQuery,
    annotation_queries,
    panel_queries,
    substitute,
    variable_queries,
)
from tools.observability.config import BurnWindow, Config
from tools.observability.rules import alerts, recording_rules, render_rules

from tests.conftest import free_port, require_binary, stop_process

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(240)

JOB = "switchgear"
SCRAPE_SECONDS = 1
#: Grafana's ``$__rate_interval`` for a 1 s scrape interval: 4 x the scrape interval.
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"
CLEAN_SECONDS = 15.0
BREAKER_ALERT = "SwitchgearCircuitBreakerOpen"
OPEN_TIMEOUT = 2.0

#: The shipped rules with windows short enough to go pending -> firing -> resolved in a test.
LIVE = Config(
    job=JOB,
    fast_burn=(
        BurnWindow(long=20, short=5, factor=14.4, budget_share="live test"),
        BurnWindow(long=40, short=10, factor=6.0, budget_share="live test"),
    ),
    slow_burn=(
        BurnWindow(long=60, short=10, factor=3.0, budget_share="live test"),
        BurnWindow(long=120, short=20, factor=1.0, budget_share="live test"),
    ),
    fast_burn_for=2,
    fast_burn_keep_firing_for=2,
    slow_burn_for=5,
    slow_burn_keep_firing_for=5,
    breaker_open_for=3,
    breaker_open_keep_firing_for=2,
    breaker_not_recovering_window=30,
    breaker_flap_window=30,
    breaker_flap_keep_firing_for=5,
    rejection_window=10,
    rejection_for=3,
    rejection_keep_firing_for=2,
    pool_waiting_window=5,
    pool_saturated_for=2,
    pool_saturated_keep_firing_for=2,
    pool_wait_window=10,
    pool_wait_for=3,
    pool_wait_keep_firing_for=2,
    pool_thrash_window=30,
    pool_thrash_keep_firing_for=5,
    memory_for=5,
    memory_keep_firing_for=2,
    cold_start_window=30,
    cold_start_for=3,
    cold_start_keep_firing_for=2,
    target_down_for=2,
    # Longer than Prometheus' start-up: static targets are first scraped up to 5 s after it
    # starts (service discovery updates are throttled to 5 s), and rules run from the start.
    metrics_absent_for=20,
)

#: (dashboard uid, panel title, refId) -> why the query may return no data. Only applied when
#: the app exports no ``switchgear_memory_limit_bytes``: with no cgroup or RLIMIT_AS limit the
#: library leaves the limit series absent on purpose, so used / limit has no
#: data rather than +Inf. With a limit, these queries must return data like every other one.
NO_DATA_WITHOUT_MEMORY_LIMIT = {
    ("switchgear-overview", "Memory used / limit", "A"): "no memory limit: limit series absent",
    ("switchgear-overview", "Memory used vs limit", "B"): "no memory limit: limit series absent",
}

#: The value range of every unit the dashboards use.
UNIT_RANGES: dict[str, tuple[float, float]] = {
    "percentunit": (0.0, 1.0),
    "percent": (0.0, 100.0),
    "reqps": (0.0, math.inf),
    "cps": (0.0, math.inf),
    "ops": (0.0, math.inf),
    "s": (0.0, math.inf),
    "bytes": (0.0, math.inf),
    "short": (0.0, math.inf),
    "none": (0.0, math.inf),
}


def wait_until(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    details: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``predicate`` every 0.2 s until it holds; fail after ``timeout`` with ``details()``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{details()}")
        time.sleep(0.2)


def regex_value(value: str) -> str:
    """A literal for a ``=~"..."`` matcher: regex-escaped, then escaped for a PromQL string."""
    return re.escape(value).replace("\\", "\\\\")


# -- the processes ---------------------------------------------------------------------------


class App:
    """The demo app as a subprocess on a fixed port (so a restart keeps its address)."""

    def __init__(self, port: int, tmp: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tmp / "app.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_codes: list[int] = []

    def start(self) -> None:
        argv = [sys.executable, "-m", "examples.demo", "--no-scenario", "--port", str(self.port)]
        argv += ["--serve-for", "600", "--open-timeout", str(OPEN_TIMEOUT)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=out)
        wait_until("the demo app to answer", self._ready, 30, lambda: self.log_text)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"the demo app exited ({self.proc.returncode}):\n{self.log_text}")
        try:
            return httpx.get(f"{self.url}/admin/faults", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.exit_codes.append(stop_process(self.proc))
            self.proc = None

    def faults(self, **changes: object) -> None:
        r = httpx.post(f"{self.url}/admin/faults", json=changes, timeout=5.0)
        assert r.status_code == 200, r.text

    @property
    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Prometheus:
    """The ``prometheus`` server, scraping the app and evaluating the rules."""

    def __init__(self, binary: str, tmp: Path, app_port: int, config: Config) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = tmp / "rules.yaml"
        rules.write_text(render_rules(config), encoding="utf-8")
        settings = {  # JSON is YAML
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "scrape_timeout": f"{SCRAPE_SECONDS}s",
                "evaluation_interval": f"{SCRAPE_SECONDS}s",
            },
            "rule_files": [str(rules)],
            "scrape_configs": [
                {
                    "job_name": config.job,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}],
                }
            ],
        }
        config_file = tmp / "prometheus.yml"
        config_file.write_text(json.dumps(settings), encoding="utf-8")
        self.log = tmp / "prometheus.log"
        argv = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=tmp, stdout=out, stderr=out)
        self.client = httpx.Client(base_url=self.url, timeout=10.0)
        wait_until("Prometheus to be ready", self._ready, 30, lambda: self.log_text)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited ({self.proc.returncode}):\n{self.log_text}")
        try:
            return self.client.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)

    @property
    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _api(self, path: str, params: dict[str, Any]) -> Any:
        r = self.client.get(f"/api/v1/{path}", params=params)
        assert r.status_code == 200, (path, params, r.text)
        body = r.json()
        assert body["status"] == "success", (path, params, r.text)
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("query", params)
        assert data["resultType"] == "vector", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
        data = self._api("query_range", params)
        assert data["resultType"] == "matrix", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, selector: str, start: float, end: float) -> list[str]:
        params = {"match[]": selector, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        values: list[str] = self._api(f"label/{label}/values", params)
        return values

    def rules(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self._api("rules", {})["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self._api("alerts", {})["alerts"]
        return alerts

    def scalar(self, expr: str) -> float | None:
        """The single value of ``expr`` now, None when it has no data."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


# -- the campaign ------------------------------------------------------------------------------


@dataclass
class Campaign:
    prometheus: Prometheus
    app: App
    clean: tuple[float, float] = (0.0, 0.0)
    faults: tuple[float, float] = (0.0, 0.0)
    #: Distinct consecutive states of the payments breaker-open alert seen via /api/v1/alerts.
    breaker_alert_states: list[str] = field(default_factory=list)
    firing_at: float = 0.0
    firing_during_clean: list[dict[str, Any]] = field(default_factory=list)
    memory_limit_exported: bool = False

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    @property
    def whole_run(self) -> tuple[float, float]:
        return self.clean[0], self.faults[1]


def _breaker_alert_state(prometheus: Prometheus) -> str:
    for alert in prometheus.alerts():
        labels = alert["labels"]
        if labels.get("alertname") == BREAKER_ALERT and labels.get("name") == PAYMENTS_ROUTE:
            return str(alert["state"])
    return "inactive"


def _watch_breaker_alert(campaign: Campaign, until: str, timeout: float) -> None:
    """Poll the breaker alert, recording its state changes, until it reads ``until``."""
    states = campaign.breaker_alert_states

    def reached() -> bool:
        state = _breaker_alert_state(campaign.prometheus)
        if not states or states[-1] != state:
            states.append(state)
            if state == "firing":
                campaign.firing_at = time.time()
        return state == until

    wait_until(
        f"the {BREAKER_ALERT} alert to be {until}",
        reached,
        timeout,
        lambda: f"states seen: {states}\n{campaign.app.log_text}",
    )


def _run(campaign: Campaign, load: BackgroundLoad) -> None:
    prom, app = campaign.prometheus, campaign.app
    job = f'job="{JOB}"'

    # Scraped, with traffic on both routes (so both breakers exist).
    def scraped() -> bool:
        names = prom.query(f"count by (name) (switchgear_circuit_state{{{job}}})")
        calls = prom.scalar(f"sum(switchgear_requests_total{{{job}}})")
        found = {series["metric"]["name"] for series in names}
        return {PAYMENTS_ROUTE, INVENTORY_ROUTE} <= found and calls is not None and calls > 0

    wait_until("the first scrapes of the demo app", scraped, 30, lambda: prom.log_text)
    metrics = httpx.get(f"{app.url}/metrics", timeout=5.0).text
    campaign.memory_limit_exported = "\nswitchgear_memory_limit_bytes " in metrics

    # The clean run: steady traffic, no faults; nothing may fire.
    start = time.time()
    while time.time() - start < CLEAN_SECONDS:
        campaign.firing_during_clean += [a for a in prom.alerts() if a["state"] == "firing"]
        time.sleep(0.5)
    campaign.clean = (start, time.time())

    # The payment gateway fails until the breaker alert fires, then recovers.
    app.faults(payments_failing=True)
    _watch_breaker_alert(campaign, "firing", timeout=30)
    app.faults(payments_failing=False)
    _watch_breaker_alert(campaign, "inactive", timeout=30)

    # The inventory database turns slow: more shoppers than connections, all waiting.
    app.faults(inventory_latency=0.5)
    load.set_workers("inventory", 12)
    pool = f'pool="{INVENTORY_POOL}", {job}'
    saturated = (
        f"switchgear_pool_in_use{{{pool}}} >= switchgear_pool_max_size{{{pool}}}"
        f" and switchgear_pool_waiting{{{pool}}} > 0"
    )
    pool_now = f'{{__name__=~"switchgear_pool_(size|in_use|waiting|max_size)", {pool}}}'

    def pool_details() -> str:
        figures = {r["metric"]["__name__"]: r["value"][1] for r in prom.query(pool_now)}
        return f"pool now: {figures}\nload: {load.totals()}"

    wait_until("the pool to be saturated", lambda: bool(prom.query(saturated)), 30, pool_details)
    wait_until(  # a few scrapes of it, so rates over the saturation have data
        "saturation at 3 scrapes",
        lambda: bool(prom.query(f"count_over_time(({saturated})[10s:1s]) >= 3")),
        30,
        pool_details,
    )
    app.faults(inventory_latency=0.03)
    load.set_workers("inventory", 2)

    # A restart on the same port: counters start from 0 again, gauges come back.
    app.stop()
    app.start()
    restarted = f"changes(process_start_time_seconds{{{job}}}[2m]) >= 1"
    wait_until(
        "Prometheus to scrape the restarted app",
        lambda: bool(prom.query(restarted)),
        30,
        lambda: f"up: {prom.query(f'up{{{job}}}')}\n{app.log_text}",
    )
    recovering = f'sum(rate(switchgear_requests_total{{{job}, name="{PAYMENTS_ROUTE}"}}[4s])) > 0'
    wait_until(
        "traffic to show up in rates after the restart",
        lambda: bool(prom.query(recovering)),
        30,
        lambda: f"load: {load.totals()}\n{app.log_text}",
    )
    campaign.faults = (campaign.clean[1], time.time())


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    binary = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("live")
    with ExitStack() as stack:
        app = App(free_port(), tmp)
        stack.callback(app.stop)
        app.start()
        prometheus = Prometheus(binary, tmp, app.port, LIVE)
        stack.callback(prometheus.stop)
        campaign = Campaign(prometheus, app)
        with BackgroundLoad(app.url, {"payments": 2, "inventory": 2}, pause=0.05) as load:
            _run(campaign, load)
        yield campaign
    assert all(code == 0 for code in app.exit_codes), app.log_text


# -- alerts ----------------------------------------------------------------------------------


def test_nothing_fires_in_the_clean_run(campaign: Campaign) -> None:
    assert campaign.firing_during_clean == []
    start, end = campaign.clean
    fired = campaign.prometheus.query_range('ALERTS{alertstate="firing"}', start, end)
    assert fired == [], [series["metric"] for series in fired]


def test_every_rule_is_loaded_and_evaluates_without_error(campaign: Campaign) -> None:
    rules = campaign.prometheus.rules()
    names = sorted(r["name"] for r in rules)
    expected = [r.record for r in recording_rules(LIVE)] + [a.name for a in alerts(LIVE)]
    assert names == sorted(expected)
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert broken == {}


def test_transition_counters_exist_at_zero_before_the_first_trip(campaign: Campaign) -> None:
    # increase() needs a sample before the first trip; a series born at 1 hides the trip.
    trip = (
        f'switchgear_circuit_transitions_total{{job="{JOB}", name="{PAYMENTS_ROUTE}", '
        'from_state="closed", to_state="open"}'
    )
    result = campaign.prometheus.query(trip, campaign.clean[1])
    assert [float(s["value"][1]) for s in result] == [0.0]


def test_breaker_open_alert_goes_pending_firing_resolved(campaign: Campaign) -> None:
    assert campaign.breaker_alert_states == ["inactive", "pending", "firing", "inactive"]
    # Prometheus' own record of it agrees, and it is labelled for routing.
    series = campaign.prometheus.query_range(
        f'ALERTS{{alertname="{BREAKER_ALERT}", name="{PAYMENTS_ROUTE}"}}', *campaign.faults
    )
    states = {s["metric"]["alertstate"] for s in series}
    assert states == {"pending", "firing"}
    for s in series:
        assert s["metric"]["job"] == JOB
        assert s["metric"]["instance"] == campaign.instance
        assert s["metric"]["severity"] == "warning"


def test_the_faults_were_seen(campaign: Campaign) -> None:
    prom = campaign.prometheus
    start, end = campaign.faults
    window = f"{math.ceil(end - start) + 5}s"
    job = f'job="{JOB}"'
    at = end

    def value(expr: str) -> float:
        result = prom.query(expr, at)
        assert result, expr
        return float(result[0]["value"][1])

    # The breaker tripped and closed again (the restart reset the counters: max over time).
    for old, new in (("closed", "open"), ("half_open", "closed")):
        count = (
            f"switchgear_circuit_transitions_total{{{job}, "
            f'name="{PAYMENTS_ROUTE}", from_state="{old}", to_state="{new}"}}'
        )
        assert value(f"max_over_time({count}[{window}])") >= 1, (old, new)
    # The pool was saturated: everything in use and callers waiting.
    assert value(f'max_over_time(switchgear_pool_waiting{{pool="{INVENTORY_POOL}"}}[{window}])') > 0
    assert value(f'max_over_time(switchgear_pool_in_use{{pool="{INVENTORY_POOL}"}}[{window}])') == 8
    # The restart happened, and the load driver saw it.
    assert value(f"changes(process_start_time_seconds{{{job}}}[{window}])") >= 1
    assert campaign.app.exit_codes == [0]


# -- dashboards ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chosen(campaign: Campaign) -> dict[str, dict[str, str]]:
    """Per dashboard, each variable's value as Grafana sends it with every value selected.

    Variables are resolved in order (``job``, then ``instance`` for that job, ...), each from
    its own ``label_values`` query; a variable without values fails here.
    """
    prom = campaign.prometheus
    start, end = campaign.whole_run
    out: dict[str, dict[str, str]] = {}
    for var in variable_queries():
        values = out.setdefault(var.dashboard_uid, {})
        selector = substitute(var.selector, values, RATE_INTERVAL)
        found = prom.label_values(var.label, selector, start, end)
        assert found, f"variable {var.name!r} of {var.dashboard_uid}: no values for {selector}"
        values[var.name] = "(" + "|".join(regex_value(v) for v in found) + ")"
    return out


def test_every_variable_query_returns_the_expected_values(
    campaign: Campaign, chosen: dict[str, dict[str, str]]
) -> None:
    prom = campaign.prometheus
    start, end = campaign.whole_run
    expected = {
        "job": {JOB},
        "instance": {campaign.instance},
        "pool": {INVENTORY_POOL},
        "name": {PAYMENTS_ROUTE, INVENTORY_ROUTE, INVENTORY_POOL},
        "limit": {PAYMENTS_LIMIT},
    }
    for var in variable_queries():
        selector = substitute(var.selector, chosen[var.dashboard_uid], RATE_INTERVAL)
        found = set(prom.label_values(var.label, selector, start, end))
        assert expected[var.name] <= found, (var, found)


PANEL_QUERIES = panel_queries()


@pytest.mark.parametrize(
    "query",
    PANEL_QUERIES,
    ids=[f"{q.dashboard_uid}/{q.panel_id}{q.ref_id}" for q in PANEL_QUERIES],
)
def test_every_panel_query_returns_finite_values_in_range(
    campaign: Campaign, chosen: dict[str, dict[str, str]], query: PanelQuery
) -> None:
    prom = campaign.prometheus
    exempt = NO_DATA_WITHOUT_MEMORY_LIMIT.get(
        (query.dashboard_uid, query.panel_title, query.ref_id)
    )
    expr = substitute(query.expr, chosen[query.dashboard_uid], RATE_INTERVAL)
    if query.instant:
        # An instant panel shows the state at the dashboard's "now": evaluate it at a moment
        # of the run when there is something to show (the breaker alert firing).
        result = prom.query(expr, campaign.firing_at)
        points = [float(s["value"][1]) for s in result]
    else:
        result = prom.query_range(expr, *campaign.whole_run)
        points = [float(v) for s in result for _, v in s["values"]]
    finite = [p for p in points if math.isfinite(p)]
    if exempt is not None and not campaign.memory_limit_exported:
        assert finite == [], f"exempt ({exempt}) but returned data: drop the exemption"
        pytest.skip(f"{query.panel_title}: {exempt}")
    assert finite, f"{query.dashboard_uid} / {query.panel_title} ({query.ref_id}): no data\n{expr}"
    low, high = UNIT_RANGES[query.unit]
    outside = [p for p in finite if not low - 1e-9 <= p <= high + 1e-9]
    assert outside == [], f"{query.panel_title} ({query.unit}) out of [{low}, {high}]: {outside}"


def test_annotation_queries_mark_the_trip(
    campaign: Campaign, chosen: dict[str, dict[str, str]]
) -> None:
    # Needs the transition counters at 0 before the first trip: increase() of a series born
    # at 1 is empty, so the annotation would miss the first trip of every breaker.
    prom = campaign.prometheus
    for annotation in annotation_queries():
        expr = substitute(annotation.expr, chosen[annotation.dashboard_uid], RATE_INTERVAL)
        result = prom.query_range(expr, *campaign.faults)
        names = {s["metric"].get("name") for s in result}
        assert PAYMENTS_ROUTE in names, (annotation, result)
        # The annotation says which rule tripped it (its title shows the reason label).
        reasons = {
            s["metric"].get("reason") for s in result if s["metric"].get("name") == PAYMENTS_ROUTE
        }
        assert "consecutive_failures" in reasons, (annotation, result)


def test_exemptions_and_units_name_real_queries() -> None:
    # Keyed by panel title and refId: a renamed panel must not silently lose its check.
    keys = {(q.dashboard_uid, q.panel_title, q.ref_id) for q in PANEL_QUERIES}
    assert set(NO_DATA_WITHOUT_MEMORY_LIMIT) <= keys
    assert {q.unit for q in PANEL_QUERIES} <= set(UNIT_RANGES)


def test_dashboard_pictures_drawn_from_the_run(
    campaign: Campaign, chosen: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    # The docs' pictures:
    #   SWITCHGEAR_PICTURES_DIR=docs/img pytest tests/integration/test_live_contract.py
    out_dir = Path(os.environ.get("SWITCHGEAR_PICTURES_DIR") or tmp_path)
    start, end = campaign.whole_run

    def fetch(expr: str, first: float, last: float) -> list[dict[str, Any]]:
        return campaign.prometheus.query_range(expr, first, last)

    drawn: dict[str, dict[str, int]] = {}
    for uid in chosen:
        drawn |= render_all(fetch, start, end, out_dir, chosen[uid], RATE_INTERVAL, only=uid)
    assert set(drawn) == {q.dashboard_uid for q in PANEL_QUERIES}
    exempt_titles = {title for _, title, _ in NO_DATA_WITHOUT_MEMORY_LIMIT}
    for uid, panels in drawn.items():
        assert (out_dir / f"{uid}.png").stat().st_size > 20_000, uid
        empty = {title for title, count in panels.items() if count == 0}
        if not campaign.memory_limit_exported:
            empty -= exempt_titles
        assert not empty, f"{uid}: panels drawn without data: {sorted(empty)}"

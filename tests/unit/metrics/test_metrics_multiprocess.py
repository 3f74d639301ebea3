"""Multiprocess mode: real worker processes writing into one PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

import switchgear as sg
from switchgear._metrics.families import FAMILIES

ROOT = Path(__file__).resolve().parents[3]

WORKER = textwrap.dedent(
    """
    import os, sys
    import switchgear as sg
    from switchgear._metrics import multiprocess as _metrics_mp
    from switchgear.testing import FakeClock
    from tests.unit.metrics.fakes import FakeBreaker, FakePool
    from tests.unit.metrics.test_limit_metrics import measured_limit

    durations = [float(d) for d in sys.argv[1].split(",")]
    m = sg.Metrics("mp")
    breaker = FakeBreaker("mp")
    pool = FakePool("engines", min_size=1, max_size=4)
    m.attach(breaker)
    m.attach(pool)
    for i, d in enumerate(durations):
        m.record_request(d, i % 2 == 0, cold_start=i == 0)
    m.record_rejection("pool_full")
    breaker.move(sg.BreakerState.OPEN)
    breaker.durations[sg.BreakerState.CLOSED] = 1.5  # time in a state is written once it grows
    pool.acquired(0.002)
    pool.scaled("up", 1)
    real = sg.DynamicPool(None, name="slots", min_size=1, max_size=1)
    m.attach(real)
    for _ in range(3):
        real.release(real.acquire())  # immediate: written to this worker's file one by one
    limit = measured_limit("downstream", FakeClock(), rtt=durations[0])
    m.attach(limit)
    limit.acquire()  # one call in flight in each worker
    from switchgear._metrics.facade import http_series
    http = http_series(None)
    http.active(("GET", "http"), 1)  # one request still in flight in each worker
    for d in durations:
        http.record(("GET", "http", "/items/{id}", "200", "1.1", ""), d, True)
    http.record(("GET", "http", "", "503", "1.1", "503"), 0.01, True)
    _metrics_mp.refresh_local()
    print(os.getpid())
    """
)

RENDER = textwrap.dedent(
    """
    import sys
    from switchgear._metrics import render_latest
    body, content_type = render_latest(accept=sys.argv[1])
    sys.stdout.write(content_type + "\\n")
    sys.stdout.write(body.decode())
    """
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def python(script: str, *args: str, multiproc_dir: Path | None) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter at the repository root; it must succeed.

    ``PROMETHEUS_MULTIPROC_DIR`` is ``multiproc_dir``, or unset when that is None.
    """
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if multiproc_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def run(script: str, arg: str, directory: Path) -> str:
    return python(script, arg, multiproc_dir=directory).stdout


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def merged(directory: Path) -> Samples:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return parse(generate_latest(registry).decode())


def key(metric: str, /, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (metric, tuple(sorted(labels.items())))


@pytest.fixture
def two_workers(tmp_path: Path) -> tuple[Path, int, int]:
    a = run(WORKER, "0.001,0.02,0.3,12.0", tmp_path)
    b = run(WORKER, "0.004,0.004,2.5", tmp_path)
    return tmp_path, int(a.strip()), int(b.strip())


def test_counts_and_histograms_are_summed_over_workers(two_workers: tuple[Path, int, int]) -> None:
    directory, _, _ = two_workers
    s = merged(directory)
    assert s[key("switchgear_requests_total", name="mp", outcome="success")] == 2 + 2
    assert s[key("switchgear_requests_total", name="mp", outcome="error")] == 2 + 1
    assert s[key("switchgear_cold_starts_total", name="mp")] == 2
    assert s[key("switchgear_rejected_total", name="mp", reason="pool_full")] == 2
    assert s[key("switchgear_rejected_total", name="mp", reason="circuit_open")] == 0
    h = "switchgear_request_duration_seconds"
    cumulative = {
        "0.001": 1,
        "0.005": 3,
        "0.025": 4,
        "0.5": 5,
        "2.5": 6,
        "10.0": 6,
        "+Inf": 7,
    }
    for le, count in cumulative.items():
        assert s[key(f"{h}_bucket", name="mp", le=le)] == count, le
    assert s[key(f"{h}_count", name="mp")] == 7
    assert s[key(f"{h}_sum", name="mp")] == pytest.approx(0.001 + 0.02 + 0.3 + 12 + 0.008 + 2.5)
    t = "switchgear_circuit_transitions_total"
    assert s[key(t, name="mp", from_state="closed", to_state="open")] == 2
    assert s[key(t, name="mp", from_state="half_open", to_state="closed")] == 0  # from attach
    assert s[key("switchgear_pool_wait_seconds_count", pool="engines")] == 2
    assert s[key("switchgear_pool_wait_seconds_count", pool="slots")] == 2 * 3
    assert s[key("switchgear_pool_scale_events_total", pool="engines", direction="up")] == 2


def test_the_files_hold_every_family_of_the_table_with_its_type_and_merge(
    two_workers: tuple[Path, int, int],
) -> None:
    directory, _, _ = two_workers
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    exported = {family.name: family.type for family in registry.collect()}
    # Only shared breakers have the first; the second is absent while no limit is known.
    optional = {FAMILIES["degraded"].name, FAMILIES["memory_limit"].name}
    table = {family.name: family.kind for family in FAMILIES.values()}
    assert set(table) - optional <= set(exported) <= set(table)
    assert exported == {name: table[name] for name in exported}

    merges: dict[str, set[str]] = {}
    for path in directory.glob("gauge_*.db"):
        merge = path.name.split("_")[1]
        for key, *_ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            merges.setdefault(json.loads(key)[0], set()).add(merge)
    gauges = {f.name: {f.merge} for f in FAMILIES.values() if f.kind == "gauge"}
    assert set(gauges) - optional <= set(merges)
    assert merges == {name: gauges[name] for name in merges}


def test_standard_http_series_are_summed_over_workers(
    two_workers: tuple[Path, int, int],
) -> None:
    directory, pid_a, _ = two_workers
    s = merged(directory)
    h = "http_server_request_duration_seconds"
    ok = {
        "http_request_method": "GET",
        "url_scheme": "http",
        "http_route": "/items/{id}",
        "http_response_status_code": "200",
        "network_protocol_version": "1.1",
        "error_type": "",  # absent: Prometheus drops empty labels when it ingests them
    }
    assert s[key(f"{h}_count", **ok)] == 7
    assert s[key(f"{h}_bucket", **ok, le="0.005")] == 3
    failed = {**ok, "http_route": "", "http_response_status_code": "503", "error_type": "503"}
    assert s[key(f"{h}_count", **failed)] == 2
    active = key("http_server_active_requests", http_request_method="GET", url_scheme="http")
    assert s[active] == 2  # livesum
    mark_process_dead(pid_a, str(directory))  # type: ignore[no-untyped-call]
    assert merged(directory)[active] == 1


def test_live_gauges_aggregate_and_drop_dead_workers(two_workers: tuple[Path, int, int]) -> None:
    directory, pid_a, _ = two_workers
    s = merged(directory)
    assert s[key("switchgear_circuit_state", name="mp", state="open")] == 1  # livemax
    assert s[key("switchgear_circuit_state", name="mp", state="closed")] == 0
    assert s[key("switchgear_pool_size", pool="engines")] == 6  # livesum: 3 + 3
    assert s[key("switchgear_pool_max_size", pool="engines")] == 8
    assert s[key("switchgear_limit_current", name="downstream")] == 6 + 6  # livesum
    assert s[key("switchgear_limit_in_flight", name="downstream")] == 2
    assert s[key("switchgear_limit_min", name="downstream")] == 4
    assert s[key("switchgear_limit_max", name="downstream")] == 18
    # livemax: the slower worker's round trips (0.004 s and 0.001 s were measured)
    rtt = "switchgear_limit_rtt_seconds"
    assert s[key(rtt, name="downstream", estimate="recent")] == pytest.approx(0.004)
    assert s[key(rtt, name="downstream", estimate="baseline")] == pytest.approx(0.004)
    used = s[key("switchgear_memory_used_bytes")]
    assert used > 2_000_000
    assert key("switchgear_window_requests_per_second", name="mp") in s
    mark_process_dead(pid_a, str(directory))  # type: ignore[no-untyped-call]
    s = merged(directory)
    assert s[key("switchgear_pool_size", pool="engines")] == 3
    assert s[key("switchgear_limit_current", name="downstream")] == 6
    assert s[key("switchgear_memory_used_bytes")] < used
    # Counters keep the dead worker's contribution.
    assert s[key("switchgear_requests_total", name="mp", outcome="success")] == 4


def test_render_latest_merges_every_process(two_workers: tuple[Path, int, int]) -> None:
    directory, _, _ = two_workers
    out = run(RENDER, "text/plain", directory)
    content_type, _, body = out.partition("\n")
    assert content_type.startswith("text/plain")
    s = parse(body)
    assert s[key("switchgear_request_duration_seconds_count", name="mp")] == 7
    out = run(RENDER, "application/openmetrics-text", directory)
    assert out.startswith("application/openmetrics-text")
    assert out.rstrip().endswith("# EOF")


NO_LIMIT = textwrap.dedent(
    """
    import switchgear as sg
    from switchgear._metrics import multiprocess as _metrics_mp
    m = sg.Metrics("mem")
    m.update_memory_stats(1000, 0)
    m.record_request(0.1, True)
    _metrics_mp.refresh_local()
    """
)


def test_memory_limit_is_absent_when_no_limit_is_known(tmp_path: Path) -> None:
    run(NO_LIMIT, "", tmp_path)
    s = merged(tmp_path)
    assert s[key("switchgear_memory_used_bytes")] == 1000
    assert key("switchgear_memory_limit_bytes") not in s


FORKED = textwrap.dedent(
    """
    import logging, os
    from prometheus_client import CollectorRegistry
    import switchgear as sg
    logging.basicConfig(format="%(message)s")
    m = sg.Metrics("forked", registry=CollectorRegistry())
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_worker_without_multiproc_dir_warns(tmp_path: Path) -> None:
    result = python(FORKED, multiproc_dir=None)
    assert result.stderr.count("PROMETHEUS_MULTIPROC_DIR is not set") == 1


LATE = textwrap.dedent(
    """
    import os, sys
    import prometheus_client  # imported first: its value storage is now in-process
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    import switchgear as sg
    from switchgear._metrics import render_latest
    m = sg.Metrics("late")
    m.record_request(0.01, True)
    m.record_request(0.02, False)
    sys.stdout.write(render_latest()[0].decode())
    print(len(os.listdir(sys.argv[1])))
    """
)


def test_a_multiproc_dir_set_too_late_keeps_and_renders_metrics_in_process(
    tmp_path: Path,
) -> None:
    result = python(LATE, str(tmp_path), multiproc_dir=None)  # the script sets it, late
    assert 'switchgear_requests_total{name="late",outcome="success"} 1.0' in result.stdout
    assert 'switchgear_requests_total{name="late",outcome="error"} 1.0' in result.stdout
    assert result.stdout.rstrip().endswith("\n0")  # no files written that nothing would read
    assert result.stderr.count("set after prometheus_client was imported") == 1


DEGRADED = textwrap.dedent(
    """
    import time
    import redis
    import switchgear as sg
    from switchgear._metrics import multiprocess as _metrics_mp
    from switchgear.redis import RedisStorage

    # Nothing listens on port 1: the store is unreachable, the breaker decides locally.
    client = redis.Redis(port=1, socket_timeout=0.05, socket_connect_timeout=0.05)
    breaker = sg.CircuitBreaker("shared", storage=RedisStorage(client, max_staleness=0.1))
    metrics = sg.Metrics("shared")
    metrics.attach(breaker)
    deadline = time.monotonic() + 20
    while not breaker.storage_degraded and time.monotonic() < deadline:
        breaker.call(lambda: 1)
        time.sleep(0.05)
    assert breaker.storage_degraded
    _metrics_mp.refresh_local()
    """
)


def test_storage_degraded_is_exported_in_multiprocess_mode(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    python(DEGRADED, multiproc_dir=tmp_path)
    body = run(RENDER, "text/plain", tmp_path)
    assert 'switchgear_circuit_storage_degraded{name="shared"} 1.0' in body


# -- dead workers are folded into one archive -------------------------------------------------

DEAD = 2000


def _render_seconds(directory: Path, rounds: int = 5) -> float:
    """Median seconds for a scrape of ``directory`` (a fresh MultiProcessCollector)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        merged(directory)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_dead_workers_fold_into_an_archive_with_the_same_totals(
    two_workers: tuple[Path, int, int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory, a, b = two_workers
    # A week of max_requests recycling: DEAD more dead workers, each with the files of a
    # real one (byte for byte what switchgear wrote there), under pids no process has.
    for i in range(DEAD):
        for kind in ("counter", "histogram", "gauge_livesum", "gauge_livemax"):
            source = directory / f"{kind}_{a if i % 2 else b}.db"
            if source.exists():
                shutil.copyfile(source, directory / f"{kind}_{4_000_000 + i}.db")
    dead = [a, b, *range(4_000_000, 4_000_000 + DEAD)]
    for pid in dead:  # prometheus_client's own: removes the live gauges only
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    before = merged(directory)
    before_files = len(list(directory.glob("*.db")))
    # A directory with no dead worker at all, for the render-time comparison.
    baseline = tmp_path_factory.mktemp("baseline")
    run(WORKER, "0.001", baseline)

    for pid in dead:
        sg.mark_process_dead(pid, str(directory))

    after = merged(directory)
    # Sample by sample: counts exactly; a latency sum up to float rounding (the additions
    # happen in another order).
    assert after.keys() == before.keys()
    for sample, value in before.items():
        if sample[0].endswith("_sum"):
            assert after[sample] == pytest.approx(value, rel=1e-12), sample
        else:
            assert after[sample] == value, sample
    assert before[key("switchgear_requests_total", name="mp", outcome="success")] == (
        (DEAD // 2) * 2 + (DEAD // 2) * 2 + 4
    )
    files = sorted(p.name for p in directory.glob("*.db"))
    assert files == ["counter_archive.db", "histogram_archive.db"], files
    assert before_files > 2 * DEAD
    # Scraping no longer grows with the dead: within 2x of a directory without any.
    assert _render_seconds(directory) <= 2 * _render_seconds(baseline)


def test_mark_process_dead_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="pid"):
        sg.mark_process_dead("123", str(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pid"):
        sg.mark_process_dead(0, str(tmp_path))
    with pytest.raises(ValueError, match="this process"):
        sg.mark_process_dead(os.getpid(), str(tmp_path))

"""Smoke test of benchmarks/bench_http.py: its parsing and table logic, and one tiny real run.

No timing is asserted: the figures are for docs/performance.md, not for pass/fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from benchmarks import bench_http as bh

from tests.conftest import require_binary

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:40000
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   712.31us  150.20us   4.10ms   90.12%
    Req/Sec    22.41k     1.02k   24.00k    70.00%
  Latency Distribution
     50%  690.00us
     75%  750.00us
     90%  820.00us
     99%    1.25ms
  111534 requests in 5.00s, 14.36MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  22306.80
Transfer/sec:      2.87MB
"""


def test_parse_wrk_reads_rate_p99_and_errors() -> None:
    result = bh.parse_wrk(WRK_OUTPUT)
    assert result.requests_per_second == pytest.approx(22306.80)
    assert result.p99_ms == pytest.approx(1.25)
    assert result.requests == 111534
    assert result.non_2xx == 2
    assert result.socket_errors == 4
    assert bh.parse_wrk(WRK_OUTPUT.replace("1.25ms", "980.00us")).p99_ms == pytest.approx(0.98)
    with pytest.raises(ValueError, match="unexpected wrk output"):
        bh.parse_wrk("wrk: connection refused\n")


def synthetic(rates: list[float], p99: float = 1.0) -> list[bh.WrkResult]:
    return [bh.WrkResult(requests_per_second=r, p99_ms=p99) for r in rates]


def test_summary_is_a_ratio_of_medians_and_the_table_and_bar_read_it() -> None:
    results = {
        "bare": synthetic([100.0, 1000.0, 990.0, 1010.0, 5.0], p99=2.0),  # median 990
        "switchgear + pool": synthetic([910.0, 920.0, 1.0, 930.0, 2000.0]),  # median 920
        "peer": synthetic([400.0, 440.0, 420.0]),
    }
    rows = {row.variant: row for row in bh.summarize(results, "bare")}
    assert rows["bare"].median_rps == 990.0
    assert rows["bare"].ratio == 1.0
    assert rows["switchgear + pool"].ratio == pytest.approx(920 / 990)
    assert rows["peer"].ratio == pytest.approx(420 / 990)
    assert rows["bare"].p99_ms == 2.0
    assert rows["peer"].spread == pytest.approx(40 / 420)

    table = bh.format_table("ASGI (uvicorn)", list(rows.values()))
    lines = table.splitlines()
    assert lines[0].startswith("| ASGI (uvicorn) | req/s (median) | ratio vs bare |")
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|"
    assert "| switchgear + pool | 920 | 0.93× | 1.00 ms |" in table
    assert table.count("| — | — |") == len(results)  # no CPU figures in these results
    assert len(lines) == 2 + len(results)

    assert bh.bar_verdict("asgi", list(rows.values())).endswith(": met")  # 0.93 >= 0.90
    assert bh.bar_verdict("wsgi", list(rows.values())).endswith(": MISSED")  # 0.93 < 0.95
    assert "not checked" in bh.bar_verdict("asgi", [rows["bare"]])


def test_cpu_per_request_is_a_median_and_relative_to_bare() -> None:
    def runs(cpu_us: list[float]) -> list[bh.WrkResult]:
        return [
            bh.WrkResult(
                requests_per_second=1000.0, p99_ms=1.0, requests=10_000, server_cpu_s=c / 100
            )
            for c in cpu_us
        ]

    rows = {
        r.variant: r
        for r in bh.summarize({"bare": runs([50, 60, 55]), "sg": runs([58, 70, 59])}, "bare")
    }
    assert rows["bare"].cpu_us == pytest.approx(55.0)
    assert rows["sg"].cpu_us == pytest.approx(59.0)
    assert rows["sg"].added_us == pytest.approx(4.0)
    assert "| 59.0 µs | +4.0 µs |" in bh.format_table("t", list(rows.values()))


BUSY_CHILD = """
import sys, time
t = time.process_time()
while time.process_time() - t < 0.3:
    pass
print("ready", flush=True)
time.sleep(60)
"""


def test_process_cpu_seconds_counts_live_children() -> None:
    """gunicorn's workers are children of the pid we hold: their CPU must be counted."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY_CHILD!r}])",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "ready"  # the child used >= 0.3 s of CPU
        assert bh.process_cpu_seconds(parent.pid) >= 0.25
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_measure_alternates_variants_and_discards_the_warmup() -> None:
    calls: list[tuple[str, float]] = []

    def run(url: str, seconds: float) -> bh.WrkResult:
        calls.append((url, seconds))
        return bh.WrkResult(requests_per_second=float(len(calls)), p99_ms=1.0)

    results = bh.measure({"a": "A", "b": "B"}, rounds=2, run=run, duration=5.0, warmup=1.0)
    assert calls == [("A", 1.0), ("B", 1.0), ("A", 5.0), ("B", 5.0), ("A", 5.0), ("B", 5.0)]
    assert [r.requests_per_second for r in results["a"]] == [3.0, 5.0]
    assert [r.requests_per_second for r in results["b"]] == [4.0, 6.0]


@pytest.mark.timeout(120)
def test_one_tiny_real_round(capsys: pytest.CaptureFixture[str]) -> None:
    wrk = require_binary("wrk")
    argv = ["--rounds", "1", "--duration", "1", "--warmup", "0", "--connections", "2"]
    argv += ["--variants", "switchgear", "--wrk", wrk, "--quiet"]
    assert bh.main(argv) == 0
    out = capsys.readouterr().out
    assert "| ASGI (uvicorn) |" in out
    assert "| WSGI (gunicorn) |" in out
    assert out.count("| switchgear |") == 2
    assert "non-2xx" not in out


@pytest.mark.parametrize("variant", bh.ASGI_VARIANTS)
def test_every_asgi_variant_answers_like_the_bare_app(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variant that errored would measure its error path, not the layer: same answers."""
    import asyncio

    import httpx

    monkeypatch.setenv(bh.VARIANT_ENV, variant)
    app = bh.make_asgi_app()

    async def fetch() -> list[tuple[int, bytes]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [
                ((r := await client.get(path)).status_code, r.content)
                for path in ("/items/3", "/items/41", "/nope")
            ]

    assert asyncio.run(fetch()) == [(200, b'{"id":3}'), (200, b'{"id":41}'), (404, b"Not Found")]

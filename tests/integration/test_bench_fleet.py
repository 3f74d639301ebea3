"""Smoke test of benchmarks/bench_fleet.py: a tiny real run against a real redis-server.

No figure is asserted against a bound (they are for docs/redis.md); what is asserted is that
the run measures both variants, that idle breakers cost only pings with push, and that every
trip reaches the other processes.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, require_binary


def test_a_tiny_fleet_run_measures_load_and_sees_the_trip_propagate() -> None:
    require_binary("redis-server")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.bench_fleet"),
            *("--processes", "3", "--breakers", "3", "--seconds", "2", "--rate", "50"),
            *("--max-staleness", "0.5"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    idle_off = re.search(r"^\| idle \| off \| ([\d,]+) \|", out, re.M)
    idle_on = re.search(r"^\| idle \| on \| ([\d,]+) \|", out, re.M)
    assert idle_off is not None, out
    assert idle_on is not None, out
    # Without push idle breakers refresh themselves; with it only the pings remain.
    assert int(idle_off.group(1).replace(",", "")) > int(idle_on.group(1).replace(",", ""))
    assert re.search(r"^idle, push off, by command: .*evalsha", out, re.M), out
    assert re.search(r"^idle, push on, by command: ping [\d.]+/s$", out, re.M), out
    for label in ("push off", "push on", "push on, every subscription cut just before"):
        row = re.search(rf"^\| {re.escape(label)}[^|]* \| ([\d.]+) \| .* \| 0 \|$", out, re.M)
        assert row is not None, (label, out)  # measured, and every process saw the trip

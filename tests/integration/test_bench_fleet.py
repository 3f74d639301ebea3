"""Smoke test of benchmarks/bench_fleet.py: a tiny real run against a real redis-server.

No figure is asserted against a bound (they are for docs/redis.md); what is asserted is that
the run measures the load and that the trip reaches the other process.
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
            *("--processes", "2", "--breakers", "3", "--seconds", "2", "--rate", "50"),
            *("--max-staleness", "0.5"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    idle = re.search(r"^\| idle \| ([\d,]+) \|", proc.stdout, re.M)
    assert idle is not None, proc.stdout
    assert int(idle.group(1).replace(",", "")) > 0  # idle breakers do refresh
    assert "evalsha" in proc.stdout
    assert "trip propagation to 1 processes" in proc.stdout, proc.stdout

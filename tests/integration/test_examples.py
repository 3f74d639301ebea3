from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_breaker_demo_runs_through_every_state() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.breaker_demo", "--open-timeout", "0.2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    transitions = [
        line.split("transition: ")[1] for line in proc.stdout.splitlines() if "transition: " in line
    ]
    assert transitions == ["closed -> open", "open -> half_open", "half_open -> closed"]
    assert "rejected (circuit_open" in proc.stdout

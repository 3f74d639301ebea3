"""Pre-fork mistakes caught at startup, under real gunicorn and uvicorn.

Several workers without ``PROMETHEUS_MULTIPROC_DIR``: one warning for the whole server, with
and without ``--preload``. A ``PROMETHEUS_MULTIPROC_DIR`` that does not exist: the server
does not start, and says which variable is wrong. One worker: nothing to say.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
WARNING = "PROMETHEUS_MULTIPROC_DIR is not set"

pytestmark = pytest.mark.timeout(90)


def run_server(argv: list[str], tmp: Path, port: int, **env: str) -> str:
    """Start a server, send it requests once it answers, stop it; everything it logged."""
    log = tmp / f"server-{port}.log"
    base = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    full_env = {**base, **env, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        served = 0
        while served < 20 and proc.poll() is None and time.monotonic() < deadline:
            try:
                # Fresh connections, so that several workers answer.
                if httpx.get(f"http://127.0.0.1:{port}/items/1", timeout=2.0).status_code == 200:
                    served += 1
            except httpx.TransportError:
                time.sleep(0.05)
        if proc.poll() is None:
            time.sleep(0.5)  # the last workers' startup logs
    finally:
        stop_process(proc, timeout=10)
    return log.read_text()


def gunicorn(tmp: Path, workers: int, *extra: str, **env: str) -> tuple[str, int | None]:
    port = free_port()
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "gunicorn", "tests.apps.flask_app:app", *extra]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    output = run_server(argv, tmp, port, SWITCHGEAR_TEST_STATE_DIR=str(state), **env)
    return output, None


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-load", "preload"])
def test_gunicorn_four_workers_without_the_directory_warn_once(
    tmp_path: Path, preload: bool
) -> None:
    output, _ = gunicorn(tmp_path, 4, *(["--preload"] if preload else []))
    assert output.count("Booting worker") == 4, output
    assert output.count(WARNING) == 1, output
    assert "the server runs 4 worker processes" in output


def test_gunicorn_one_worker_says_nothing(tmp_path: Path) -> None:
    output, _ = gunicorn(tmp_path, 1)
    assert "Booting worker" in output
    assert WARNING not in output


def test_gunicorn_with_a_missing_directory_fails_at_startup(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "tests.apps.flask_app:app"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(PYTHONPATH=str(ROOT), PROMETHEUS_MULTIPROC_DIR=str(missing))
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=60, check=False)
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode != 0
    assert f"PROMETHEUS_MULTIPROC_DIR={str(missing)!r} is not a writable directory" in output


def test_uvicorn_two_workers_without_the_directory_warn_once(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.apps.starlette_app:app", "--workers", "2"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    output = run_server(argv, tmp_path, port)
    assert output.count("Started server process") == 2, output
    assert output.count(WARNING) == 1, output
    assert "the server runs 2 worker processes" in output

"""An adaptive limit in front of a real dependency, under real servers and wrk.

Two uvicorn processes: a *dependency* that serves ``--capacity`` requests at a time
(an ``asyncio.Semaphore``) for ``--service`` seconds each and queues the rest, and a
*front* app whose handler calls it over HTTP (httpx, one pooled client, 1 s timeout)
through ``@protected``, with or without an ``AdaptiveLimit``. wrk drives the front well past
the dependency's capacity. The front records the latency of each request it answered with
the dependency's result; rejected requests (``503``) and timeouts (``504``) are not goodput.

Reported per variant, rounds alternating: goodput (answers with a result per second), the
front's p50/p99 over those answers, and the share of requests rejected or timed out. A
client that got a ``503`` waits one service time before its next request.

Run:  .venv/bin/python -m benchmarks.bench_limit_real [--rounds 3] [--duration 8]
      [--connections 100] [--capacity 10] [--service 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.bench_http import free_port

ROOT = Path(__file__).resolve().parent.parent
ROLE = "SWITCHGEAR_LIMIT_ROLE"


# -- the two apps (run inside uvicorn) ---------------------------------------------------------


def make_dependency() -> Any:  # pragma: no cover - runs in the server
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    capacity = int(os.environ["DEP_CAPACITY"])
    service = float(os.environ["DEP_SERVICE"])
    gate: dict[str, asyncio.Semaphore] = {}

    async def work(request: Any) -> PlainTextResponse:
        sem = gate.setdefault("sem", asyncio.Semaphore(capacity))
        async with sem:
            await asyncio.sleep(service)
        return PlainTextResponse("done")

    return Starlette(routes=[Route("/", work)])


def make_front() -> Any:  # pragma: no cover - runs in the server
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    import switchgear as sg

    url = os.environ["DEP_URL"]
    limited = os.environ["FRONT_LIMIT"] == "1"
    client = httpx.AsyncClient(timeout=1.0, limits=httpx.Limits(max_connections=1000))
    limit = sg.AdaptiveLimit("dependency", max_limit=200) if limited else None
    breaker = sg.CircuitBreaker("dependency", failure_threshold=10**6)
    answered: list[float] = []

    @sg.protected("dependency", breaker=breaker, limit=limit)
    async def call() -> str:
        response = await client.get(url)
        response.raise_for_status()
        return response.text

    async def front(request: Any) -> PlainTextResponse:
        start = time.perf_counter()
        try:
            body = await call()
        except sg.LimitExceededError:
            return PlainTextResponse("busy", status_code=503)
        except httpx.TimeoutException:
            return PlainTextResponse("timeout", status_code=504)
        answered.append(time.perf_counter() - start)
        return PlainTextResponse(body)

    async def stats(request: Any) -> JSONResponse:
        figures = {"answered": list(answered), "limit": limit.limit if limit else None}
        answered.clear()
        return JSONResponse(figures)

    return Starlette(routes=[Route("/", front), Route("/stats", stats)])


# -- the driver ------------------------------------------------------------------------------


def start(role: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    factory = "make_dependency" if role == "dependency" else "make_front"
    argv = [
        *(sys.executable, "-m", "uvicorn", f"benchmarks.bench_limit_real:{factory}", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"),
    ]
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=full, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2.0):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{role} did not start:\n{log.read_text()}") from None
            time.sleep(0.05)


def fetch_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5.0) as r:
        result: dict[str, Any] = json.load(r)
        return result


# Clients that honour a rejection: after a 503 the next request waits one service time, as
# a client respecting Retry-After would (wrk alone would retry at once, turning cheap
# rejections into a flood that only measures how fast the front can say no).
BACKOFF_LUA = """
local wait = 0
response = function(status, headers, body)
  if status == 503 then wait = %d else wait = 0 end
end
delay = function() return wait end
"""


def wrk(port: int, args: argparse.Namespace, script: Path) -> tuple[int, int]:
    """Requests sent and non-2xx answers in one wrk run."""
    argv = ["wrk", "-t", "1", "-c", str(args.connections), "-d", f"{args.duration:g}s"]
    argv += ["--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    total = int(out.split(" requests in")[0].split()[-1])
    non_2xx = 0
    for line in out.splitlines():
        if "Non-2xx or 3xx responses:" in line:
            non_2xx = int(line.split()[-1])
    return total, non_2xx


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--capacity", type=int, default=10)
    parser.add_argument("--service", type=float, default=0.05)
    args = parser.parse_args(argv)
    capacity_rps = args.capacity / args.service
    print(
        f"dependency: {args.capacity} at a time, {args.service * 1000:.0f} ms each "
        f"({capacity_rps:.0f}/s); wrk: {args.connections} connections, {args.duration:g} s "
        f"per run, {args.rounds} rounds alternating\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-limit-") as tmp:
        try:
            script = Path(tmp) / "backoff.lua"
            script.write_text(BACKOFF_LUA % round(args.service * 1000))
            dep_port = free_port()
            dep_env = {"DEP_CAPACITY": str(args.capacity), "DEP_SERVICE": str(args.service)}
            procs.append(start("dependency", dep_port, dep_env, Path(tmp) / "dep.log"))
            fronts = {}
            for variant, flag in (("without a limit", "0"), ("adaptive limit", "1")):
                port = free_port()
                env = {"DEP_URL": f"http://127.0.0.1:{dep_port}/", "FRONT_LIMIT": flag}
                procs.append(start("front", port, env, Path(tmp) / f"front{flag}.log"))
                fronts[variant] = port
                rows[variant] = []
            for _ in range(args.rounds):
                for variant, port in fronts.items():
                    fetch_stats(port)  # forget what came before
                    total, failed = wrk(port, args, script)
                    answered = fetch_stats(port)["answered"]
                    rows[variant].append(
                        (
                            len(answered) / args.duration,
                            percentile(answered, 0.5) * 1000,
                            percentile(answered, 0.99) * 1000,
                            failed / max(total, 1),
                        )
                    )
                    time.sleep(1.0)  # let the dependency's queue drain between runs
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    print("| variant | goodput/s | p50 ms | p99 ms | rejected or timed out |")
    print("|---|---:|---:|---:|---:|")
    for variant, figures in rows.items():
        good = [f[0] for f in figures]
        p50 = [f[1] for f in figures]
        p99 = [f[2] for f in figures]
        bad = [f[3] for f in figures]
        print(
            f"| {variant} | {statistics.median(good):.0f} ({min(good):.0f}–{max(good):.0f}) | "
            f"{statistics.median(p50):.0f} | {statistics.median(p99):.0f} "
            f"({min(p99):.0f}–{max(p99):.0f}) | {statistics.median(bad):.0%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

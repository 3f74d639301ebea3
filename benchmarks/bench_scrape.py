"""A scrape flood against an app route: does scraping starve the application?

uvicorn serves a small Starlette app wrapped in ``ASGIMiddleware`` (100 protected names, so
a rendering has about 2,900 samples, as in bench_metrics). wrk measures an app route alone,
then again while 32 scraper threads fetch ``/metrics`` back to back on keep-alive
connections. Two servers, alternated round by round:

* ``gated``: switchgear's ``metrics_path`` (concurrent scrapes share renderings, at most ten
  a second);
* ``per scrape``: the same app with ``/metrics`` served by a plain route that renders the
  registry for every request (what a hand-made endpoint does), for comparison.

A collector in the app counts renderings and exports the count, so the scrapers read how
many renderings served them. Reported: app req/s alone and under the flood (medians over
rounds, with the spread), their ratio, and renderings and scrapes per second.

Run:  .venv/bin/python -m benchmarks.bench_scrape [--rounds 3] [--duration 8]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.bench_http import LUA_TEMPLATE, ROOT, free_port, run_wrk

VARIANT_ENV = "SWITCHGEAR_BENCH_SCRAPE"
VARIANTS = ("gated", "per scrape")
SCRAPERS = 32
NAMES = 100


def make_app() -> Any:
    """The app for ``$SWITCHGEAR_BENCH_SCRAPE`` (``uvicorn --factory``)."""
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.core import CounterMetricFamily
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    import switchgear as sg
    from switchgear.asgi import ASGIMiddleware

    renderings = [0]

    class RenderingCounter:
        def collect(self) -> Iterable[Any]:
            renderings[0] += 1
            yield CounterMetricFamily("bench_renderings", "renderings", value=renderings[0])

    REGISTRY.register(RenderingCounter())
    for i in range(NAMES):  # a realistic exposition: 100 names with a few calls each
        metrics = sg.Metrics(f"dependency-{i}")
        for d in (0.002, 0.02, 0.2):
            metrics.record_request(d, True)

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["id"]})

    async def plain_metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type="text/plain")

    routes = [Route("/items/{id:int}", item)]
    if os.environ.get(VARIANT_ENV) == "per scrape":
        routes.append(Route("/metrics", plain_metrics))
        return ASGIMiddleware(Starlette(routes=routes), metrics_path=None)
    return ASGIMiddleware(Starlette(routes=routes))


class Scrapers:
    """``count`` threads fetching /metrics back to back; they note the renderings seen."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.scrapes = 0
        self.renderings: list[int] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(count)]

    def __enter__(self) -> Scrapers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            conn.request("GET", "/metrics")
            body = conn.getresponse().read()
            match = re.search(rb"^bench_renderings_total (\S+)", body, re.MULTILINE)
            with self.lock:
                self.scrapes += 1
                if match:
                    self.renderings.append(int(float(match.group(1))))


def start(variant: str, logdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, VARIANT_ENV: variant, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    argv = [sys.executable, "-m", "uvicorn", "benchmarks.bench_scrape:make_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    argv += ["--log-level", "warning", "--loop", "asyncio", "--http", "h11"]
    log = (logdir / f"{variant.replace(' ', '-')}.log").open("wb")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/items/1")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{variant}: server did not start")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)

    alone: dict[str, list[float]] = {v: [] for v in VARIANTS}
    flooded: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rendering_rate: dict[str, list[float]] = {v: [] for v in VARIANTS}
    scrape_rate: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        script = Path(tmp) / "items.lua"
        script.write_text(LUA_TEMPLATE.replace("{last}", "999").replace("{ids}", "1000"))
        servers = {v: start(v, Path(tmp)) for v in VARIANTS}
        try:
            for _ in range(args.rounds):
                for variant, (_proc, port) in servers.items():
                    url = f"http://127.0.0.1:{port}"
                    alone[variant].append(
                        run_wrk(url, args.duration, args, script).requests_per_second
                    )
                    with Scrapers(port, SCRAPERS) as scrapers:
                        time.sleep(0.5)  # the flood is under way
                        first = max(scrapers.renderings or [0])
                        scrapes_before = scrapers.scrapes
                        started = time.monotonic()
                        result = run_wrk(url, args.duration, args, script)
                        elapsed = time.monotonic() - started
                        flooded[variant].append(result.requests_per_second)
                        rendering_rate[variant].append(
                            (max(scrapers.renderings or [0]) - first) / elapsed
                        )
                        scrape_rate[variant].append((scrapers.scrapes - scrapes_before) / elapsed)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)

    def fig(values: list[float]) -> str:
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"

    print(f"# scrape flood: {SCRAPERS} scrapers on /metrics, wrk on an app route")
    print(f"rounds={args.rounds} duration={args.duration:g}s; median (round min–max)\n")
    print("| /metrics | app req/s alone | app req/s, flooded | ratio | renderings/s | scrapes/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for v in VARIANTS:
        ratios = [f / a for f, a in zip(flooded[v], alone[v], strict=True)]
        print(
            f"| {v} | {fig(alone[v])} | {fig(flooded[v])} | "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | "
            f"{fig(rendering_rate[v])} | {fig(scrape_rate[v])} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

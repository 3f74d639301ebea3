"""The HTTP middleware under real servers and wrk, side by side with peers, as ratios of medians.

ASGI: one uvicorn process per variant (single worker, same ``--loop``/``--http`` for all,
``--no-access-log``), all started up front on free 127.0.0.1 ports:

* ``bare``                a tiny Starlette app (``GET /items/{id}`` -> small JSON)
* ``pass-through``        that app in a do-nothing ASGI layer that wraps ``send`` (the floor)
* ``recording floor``     the least a Python layer with the bar's parts could do (``floor_asgi``)
* ``switchgear``          that app in ``switchgear.ASGIMiddleware`` (breaker + metrics per route)
* ``switchgear, standard series off``  the same with ``http_metrics=False, exemplars=False``:
  what the standard HTTP series and exemplar support add
* ``switchgear + pool``   the same, plus a ``DynamicPool`` bulkhead (the full configuration)
* ``starlette-exporter``  starlette-exporter's ``PrometheusMiddleware`` (default options)
* ``opentelemetry``       ``OpenTelemetryMiddleware`` with an SDK ``MeterProvider`` (it records)

WSGI: one gunicorn per variant (sync workers, the same count for all): a tiny Flask app bare,
in a do-nothing layer wrapping ``start_response``, in ``switchgear.WSGIMiddleware``, and with a
pool. (The ``benchmark`` extra has no WSGI peer.)

wrk (one thread by default: the machine has 2 cores, so wrk gets one and the server the other)
cycles ``/items/0`` .. ``/items/<ids-1>`` through a Lua script, so route templating is real.
Each server gets one discarded warm-up run, then rounds alternate the variants (A B C D E,
A B C D E, ...) so machine noise hits them alike. A variant's figure is the median over rounds
of wrk's req/s; the ratio is that median over the bare app's; p99 is the median of wrk's p99.
Server CPU per request (user + system time of the server process and its workers, from
/proc, over the run's requests) is reported too: unlike req/s it does not move when something
else on the machine takes CPU, so it says what the middleware costs per request.

Run:  .venv/bin/python -m benchmarks.bench_http [--suite asgi|wsgi|both] [--rounds 7]
      [--duration 5] [--connections 16] [--threads 1] [--warmup 3]
      (peers come from the ``benchmark`` extra; wrk is the Debian package ``wrk``)
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import functools
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VARIANT_ENV = "SWITCHGEAR_BENCH_VARIANT"

ASGI_VARIANTS = (
    "bare",
    "pass-through",
    "recording floor",
    "switchgear",
    "switchgear, standard series off",
    "switchgear + pool",
    "starlette-exporter",
    "opentelemetry",
)
WSGI_VARIANTS = (
    "bare",
    "pass-through",
    "switchgear",
    "switchgear, standard series off",
    "switchgear + pool",
)
#: The quality bars: minimum ratio of medians vs the bare app, per suite.
BARS = {"asgi": ("switchgear + pool", 0.90), "wsgi": ("switchgear + pool", 0.95)}

PEER_PACKAGES = (
    "uvicorn",
    "uvloop",
    "httptools",
    "gunicorn",
    "starlette",
    "flask",
    "starlette-exporter",
    "opentelemetry-instrumentation-asgi",
    "opentelemetry-sdk",
    "prometheus-client",
)

# -- the apps (built inside the server process; the variant comes from the environment) ------


def _variant() -> str:
    return os.environ.get(VARIANT_ENV, "bare")


def _bench_pool() -> Any:
    import switchgear as sg

    # Plain slots (a bulkhead), never the limit here: max_size is above any connection count.
    return sg.DynamicPool(None, name="bench", min_size=8, max_size=256)


def pass_through_asgi(app: Any) -> Any:
    """The least any measuring ASGI middleware does: wrap ``send`` to see the status.

    Not a product: the floor under every row of the table, a pure-Python layer that records
    nothing.
    """

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = 0

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await app(scope, receive, send_wrapper)

    return middleware


_FLOOR_BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def floor_asgi(app: Any) -> Any:
    """The least a pure-Python layer with the bar's parts could do per request.

    Not a product: one dict lookup by raw path, one breaker-state read, one pool slot (a
    lock around a list), one histogram bucket and sum, the status seen in ``send``. No
    route templates, no 503s, no exceptions or disconnects handled, no labels or scrape.
    What ``switchgear + pool`` adds beyond this row is the price of doing it correctly; what
    this row adds beyond ``pass-through`` is the price of any recording written in Python.
    """
    clock = time.monotonic
    lock = threading.Lock()
    slots = list(range(8))
    routes: dict[str, list[float]] = {}
    gate = {"state": "closed"}

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path = scope["path"]
        counts = routes.get(path)
        if counts is None:
            counts = routes[path] = [0.0] * (len(_FLOOR_BOUNDS) + 3)
        if gate["state"] != "closed":
            raise RuntimeError("never: the gate stays closed")
        lock.acquire()
        slot = slots.pop()
        lock.release()
        start = clock()
        status = 0

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body", False):
                duration = clock() - start
                counts[bisect.bisect_left(_FLOOR_BOUNDS, duration)] += 1
                counts[-2] += duration
                if status >= 500:
                    counts[-1] += 1
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            lock.acquire()
            slots.append(slot)
            lock.release()

    return middleware


def pass_through_wsgi(app: Any) -> Any:
    """The WSGI counterpart: wrap ``start_response`` to see the status, record nothing."""

    def middleware(environ: Any, start_response: Any) -> Any:
        seen: list[str] = []

        def wrapped(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen.append(status)
            return start_response(status, headers, exc_info)

        return app(environ, wrapped)

    return middleware


def make_asgi_app() -> Any:
    """The Starlette app for ``$SWITCHGEAR_BENCH_VARIANT`` (``uvicorn --factory``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["id"]})

    app = Starlette(routes=[Route("/items/{id:int}", item)])
    variant = _variant()
    if variant == "bare":
        return app
    if variant == "pass-through":
        return pass_through_asgi(app)
    if variant == "recording floor":
        return floor_asgi(app)
    if variant == "switchgear":
        from switchgear.asgi import ASGIMiddleware

        return ASGIMiddleware(app)
    if variant == "switchgear, standard series off":
        from switchgear.asgi import ASGIMiddleware

        return ASGIMiddleware(app, http_metrics=False, exemplars=False)
    if variant == "switchgear + pool":
        from switchgear.asgi import ASGIMiddleware

        return ASGIMiddleware(app, pool=_bench_pool())
    if variant == "starlette-exporter":
        from starlette_exporter import PrometheusMiddleware

        app.add_middleware(PrometheusMiddleware)
        return app
    if variant == "opentelemetry":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        return OpenTelemetryMiddleware(app, meter_provider=provider)
    raise ValueError(f"unknown ASGI variant {variant!r}")


def make_wsgi_app() -> Any:
    """The Flask app for ``$SWITCHGEAR_BENCH_VARIANT`` (``gunicorn 'module:make_wsgi_app()'``)."""
    from flask import Flask

    app = Flask("bench")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    variant = _variant()
    if variant == "bare":
        return app
    if variant == "pass-through":
        app.wsgi_app = pass_through_wsgi(app.wsgi_app)  # type: ignore[method-assign]
        return app
    from switchgear.wsgi import WSGIMiddleware

    if variant == "switchgear":
        app.wsgi_app = WSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    elif variant == "switchgear, standard series off":
        app.wsgi_app = WSGIMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, http_metrics=False, exemplars=False
        )
    elif variant == "switchgear + pool":
        app.wsgi_app = WSGIMiddleware(app.wsgi_app, pool=_bench_pool())  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown WSGI variant {variant!r}")
    return app


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    variant: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_argv(suite: str, port: int, args: argparse.Namespace) -> list[str]:
    """The command line of one server; the same for every variant of a suite."""
    if suite == "asgi":
        return [
            *(sys.executable, "-m", "uvicorn", "benchmarks.bench_http:make_asgi_app", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
            *("--log-level", "warning", "--loop", args.loop, "--http", args.http),
        ]
    return [
        *(sys.executable, "-m", "gunicorn", "benchmarks.bench_http:make_wsgi_app()"),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(args.gunicorn_workers)),
        *("--worker-class", "sync", "--log-level", "warning"),
    ]


def start_server(suite: str, variant: str, args: argparse.Namespace, logdir: Path) -> Server:
    port = free_port()
    log = logdir / f"{suite}-{variant.replace(' ', '').replace('+', '-')}.log"
    env = {**os.environ, VARIANT_ENV: variant, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server_argv(suite, port, args), cwd=ROOT, env=env, stdout=out, stderr=out
        )
    server = Server(variant, proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{suite} {variant}: server exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/items/1", timeout=1.0) as r:
                if r.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{suite} {variant}: server not ready:\n{log.read_text()}")
        time.sleep(0.05)


@contextlib.contextmanager
def running(
    suite: str, variants: Sequence[str], args: argparse.Namespace
) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        try:
            for variant in variants:
                servers[variant] = start_server(suite, variant, args, Path(tmp))
            yield servers
        finally:
            for server in servers.values():
                server.stop()


# -- wrk ----------------------------------------------------------------------------------------

LUA_TEMPLATE = """-- cycle /items/0 .. /items/{last} so every request goes through route templating
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/items/" .. (n % {ids}))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p99_ms: float
    requests: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    server_cpu_s: float = 0.0  # user + system CPU the server used during the run


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live children (gunicorn's workers).

    CPU time per request is robust to other load on the machine in a way req/s is not: it
    is what each request costs the server, whoever else is running.
    """
    tick = os.sysconf("SC_CLK_TCK")

    def stat(p: str) -> list[str] | None:
        try:
            with open(f"/proc/{p}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None  # gone in between, or not Linux

    total = 0.0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        fields = stat(entry)
        # fields[1] is the parent pid; [11] and [12] are utime and stime in ticks.
        if fields is not None and (int(entry) == pid or int(fields[1]) == pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if m is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Requests/sec, the p99 latency (``--latency``), and any errors from wrk's report."""
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if rps is None or p99 is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        p99_ms=_duration_ms(p99.group(1)),
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        # A sync gunicorn worker closes every connection: wrk counts those as read errors.
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
    )


def run_wrk(
    url: str, duration: float, args: argparse.Namespace, script: Path, server_pid: int | None = None
) -> WrkResult:
    argv = [args.wrk, "-t", str(args.threads), "-c", str(args.connections)]
    argv += ["-d", f"{max(duration, 1.0):g}s", "--latency", "--timeout", "10s"]
    argv += ["-s", str(script), url]
    before = process_cpu_seconds(server_pid) if server_pid is not None else 0.0
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 60)
    after = process_cpu_seconds(server_pid) if server_pid is not None else 0.0
    return dataclasses.replace(parse_wrk(done.stdout), server_cpu_s=after - before)


def _run_on(
    pids: Mapping[str, int], args: argparse.Namespace, script: Path, url: str, duration: float
) -> WrkResult:
    return run_wrk(url, duration, args, script, pids[url])


def measure(
    urls: Mapping[str, str],
    rounds: int,
    run: Callable[[str, float], WrkResult],
    duration: float,
    warmup: float,
    on_round: Callable[[int, dict[str, WrkResult]], None] | None = None,
) -> dict[str, list[WrkResult]]:
    """Warm each URL once (discarded), then ``rounds`` rounds alternating the variants."""
    if warmup > 0:
        for url in urls.values():
            run(url, warmup)
    results: dict[str, list[WrkResult]] = {name: [] for name in urls}
    for i in range(rounds):
        this_round = {name: run(url, duration) for name, url in urls.items()}
        for name, result in this_round.items():
            results[name].append(result)
        if on_round is not None:
            on_round(i, this_round)
    return results


# -- summary ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    variant: str
    median_rps: float
    ratio: float
    p99_ms: float
    spread: float  # (max - min) / median of the per-round req/s
    non_2xx: int
    cpu_us: float = float("nan")  # median server CPU microseconds per request
    added_us: float = float("nan")  # cpu_us minus the baseline's


def summarize(results: Mapping[str, Sequence[WrkResult]], baseline: str) -> list[Row]:
    """Median req/s per variant, as a ratio of medians to ``baseline``; median p99."""
    medians = {
        name: statistics.median(r.requests_per_second for r in runs)
        for name, runs in results.items()
    }
    base = medians[baseline]

    def cpu_us(runs: Sequence[WrkResult]) -> float:
        per_request = [r.server_cpu_s / r.requests * 1e6 for r in runs if r.requests]
        return statistics.median(per_request) if per_request else float("nan")

    base_cpu = cpu_us(results[baseline])
    rows = []
    for name, runs in results.items():
        values = [r.requests_per_second for r in runs]
        median = medians[name]
        cpu = cpu_us(runs)
        rows.append(
            Row(
                variant=name,
                median_rps=median,
                ratio=median / base if base > 0 else float("nan"),
                p99_ms=statistics.median(r.p99_ms for r in runs),
                spread=(max(values) - min(values)) / median if median > 0 else float("nan"),
                non_2xx=sum(r.non_2xx for r in runs),
                cpu_us=cpu,
                added_us=cpu - base_cpu,
            )
        )
    return rows


def format_table(title: str, rows: Sequence[Row]) -> str:
    """The markdown table printed (and pasted into docs/performance.md)."""
    lines = [
        f"| {title} | req/s (median) | ratio vs bare | p99 latency (median) | round spread "
        "| server CPU / request | added vs bare |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        note = f" ⚠ {row.non_2xx} non-2xx" if row.non_2xx else ""
        cpu = "—" if math.isnan(row.cpu_us) else f"{row.cpu_us:.1f} µs"
        added = "—" if math.isnan(row.added_us) else f"{row.added_us:+.1f} µs"
        lines.append(
            f"| {row.variant}{note} | {row.median_rps:,.0f} | {row.ratio:.2f}× "
            f"| {row.p99_ms:.2f} ms | {row.spread:.0%} | {cpu} | {added} |"
        )
    return "\n".join(lines)


def bar_verdict(suite: str, rows: Sequence[Row]) -> str:
    variant, bar = BARS[suite]
    ratio = {row.variant: row.ratio for row in rows}.get(variant)
    if ratio is None:
        return f"{suite}: bar not checked ({variant!r} not measured)"
    verdict = "met" if ratio >= bar else "MISSED"
    return f"{suite}: {variant} {ratio:.2f}× bare (bar >= {bar:.2f}×): {verdict}"


def versions() -> str:
    found = []
    for name in PEER_PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", choices=("asgi", "wsgi", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded warm-up seconds")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument("--ids", type=int, default=1000, help="distinct /items/{id} paths")
    parser.add_argument("--gunicorn-workers", type=int, default=1)
    parser.add_argument("--loop", default="uvloop", help="uvicorn --loop (all variants)")
    parser.add_argument("--http", default="httptools", help="uvicorn --http (all variants)")
    parser.add_argument("--variants", nargs="*", help="only these variants (bare is kept)")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--quiet", action="store_true", help="no per-round lines")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.connections < args.threads or args.ids < 1:
        parser.error("need --rounds >= 1, --connections >= --threads, --ids >= 1")
    if not Path(args.wrk).exists():
        parser.error(f"wrk not found ({args.wrk}); install the Debian package 'wrk'")

    suites = ("asgi", "wsgi") if args.suite == "both" else (args.suite,)
    print(
        f"# switchgear HTTP benchmark — Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(f"versions: {versions()}")
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency, "
        f"{args.ids} ids; rounds={args.rounds}, warm-up {args.warmup:g}s discarded; "
        f"uvicorn --loop {args.loop} --http {args.http} (1 process); "
        f"gunicorn --worker-class sync --workers {args.gunicorn_workers}"
    )
    print(f"load average before: {_load()}\n")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench-http-lua-") as tmp:
        script = Path(tmp) / "items.lua"
        script.write_text(
            LUA_TEMPLATE.replace("{ids}", str(args.ids)).replace("{last}", str(args.ids - 1))
        )
        for suite in suites:
            variants: tuple[str, ...] = ASGI_VARIANTS if suite == "asgi" else WSGI_VARIANTS
            if args.variants:
                variants = tuple(v for v in variants if v == "bare" or v in args.variants)

            def on_round(i: int, results: dict[str, WrkResult], suite: str = suite) -> None:
                if not args.quiet:
                    cells = ", ".join(
                        f"{n} {r.requests_per_second:,.0f}" for n, r in results.items()
                    )
                    print(f"  {suite} round {i + 1}: {cells} (load {_load()})", flush=True)

            with running(suite, variants, args) as servers:
                results = measure(
                    {name: s.url for name, s in servers.items()},
                    args.rounds,
                    functools.partial(
                        _run_on, {s.url: s.proc.pid for s in servers.values()}, args, script
                    ),
                    args.duration,
                    args.warmup,
                    on_round,
                )
            rows = summarize(results, "bare")
            server = "uvicorn" if suite == "asgi" else "gunicorn"
            print(f"\n{format_table(f'{suite.upper()} ({server})', rows)}\n")
            verdicts.append(bar_verdict(suite, rows))
    print(f"load average after: {_load()}")
    for verdict in verdicts:
        print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the middleware costs per request, in-process: no server, no sockets, no wrk.

The same tiny app as ``bench_http`` (Starlette for ASGI, Flask for WSGI: one route
``/items/{id}``) is called directly, bare, in the middleware, and in the middleware with a
bulkhead pool, with an adaptive limit, without the standard HTTP series and exemplar support
(what those add), and with those series' fast path off (what it saves).
A third table runs the WSGI middleware around a minimal WSGI app (no framework): what the
middleware's own code costs when a framework's work does not crowd it out of the CPU's
caches between requests.

Rounds are many and short (2,000 requests), and the variants' order alternates from round to
round, so a slow spell of the shared machine lands on every variant alike. Each figure is the
median over rounds of microseconds per request. Without a server's own work around it, a
difference of a fraction of a microsecond shows, where ``bench_http``'s server CPU per
request moves by several microseconds between runs on a shared machine.

Run:  .venv/bin/python -m benchmarks.bench_request_cost [--rounds 40] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import switchgear as sg
from switchgear.asgi import ASGIMiddleware
from switchgear.wsgi import WSGIMiddleware

Variant = Callable[[int], float]  # runs n requests, returns elapsed seconds


def _pool(name: str) -> sg.DynamicPool[Any]:
    return sg.DynamicPool(None, name=name, min_size=8, max_size=256)


def _limit(name: str) -> sg.AdaptiveLimit:
    # Not binding: one request at a time never reaches it.
    return sg.AdaptiveLimit(name, initial_limit=100, max_limit=400)


def slow_path(middleware: Any) -> Any:
    """``middleware`` with the standard series' fast path off: the per-thread lookups of a
    request's start and end always miss, so every request takes the whole rule (the row says
    what the fast path saves)."""
    standard = middleware._core.standard
    standard.start = lambda key: None
    standard.ended = lambda *args: False
    return middleware


def asgi_variants() -> dict[str, Variant]:
    async def item(request: Request) -> Response:
        return Response(b'{"id": 1}', media_type="application/json")

    def app() -> Any:
        return Starlette(routes=[Route("/items/{id}", item)])

    apps = {
        "bare": app(),
        "switchgear": ASGIMiddleware(app(), registry=CollectorRegistry()),
        "switchgear, standard series off": ASGIMiddleware(
            app(), registry=CollectorRegistry(), http_metrics=False, exemplars=False
        ),
        "switchgear, standard series' fast path off": slow_path(
            ASGIMiddleware(app(), registry=CollectorRegistry())
        ),
        "switchgear + pool": ASGIMiddleware(
            app(), registry=CollectorRegistry(), pool=_pool("asgi-cost")
        ),
        "switchgear + limit": ASGIMiddleware(
            app(), registry=CollectorRegistry(), limit=_limit("asgi-cost")
        ),
    }
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/1",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    def variant(target: Any) -> Variant:
        async def many(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await target(dict(scope), receive, send)
            return time.perf_counter() - start

        return lambda n: asyncio.run(many(n))

    return {name: variant(target) for name, target in apps.items()}


def flask_app() -> Any:
    flask = Flask("bench")
    flask.add_url_rule("/items/<id>", "item", lambda id: {"id": id})
    return flask.wsgi_app


def minimal_app() -> Any:
    """A WSGI app with no framework: names its route itself and answers a fixed body."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["switchgear.route"] = "/items/{id}"
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "9")])
        return [b'{"id": 1}']

    return app


def wsgi_variants(app: Callable[[], Any] = flask_app, full: bool = True) -> dict[str, Variant]:
    apps = {
        "bare": app(),
        "switchgear": WSGIMiddleware(app(), registry=CollectorRegistry()),
        "switchgear, standard series off": WSGIMiddleware(
            app(), registry=CollectorRegistry(), http_metrics=False, exemplars=False
        ),
    }
    if full:
        apps["switchgear, standard series' fast path off"] = slow_path(
            WSGIMiddleware(app(), registry=CollectorRegistry())
        )
        apps["switchgear + pool"] = WSGIMiddleware(
            app(), registry=CollectorRegistry(), pool=_pool("wsgi-cost")
        )
        apps["switchgear + limit"] = WSGIMiddleware(
            app(), registry=CollectorRegistry(), limit=_limit("wsgi-cost")
        )

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def environ() -> dict[str, Any]:
        return {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/items/1",
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
        }

    def variant(target: Any) -> Variant:
        def many(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                body = target(environ(), start_response)
                for _chunk in body:
                    pass
                close = getattr(body, "close", None)
                if close is not None:
                    close()
            return time.perf_counter() - start

        return many

    return {name: variant(target) for name, target in apps.items()}


def measure(variants: dict[str, Variant], rounds: int, n: int) -> dict[str, list[float]]:
    for run in variants.values():
        run(n)  # warm-up: routes learned, caches filled
    names = list(variants)
    results: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            results[name].append(variants[name](n) / n * 1e6)
    return results


def table(title: str, results: dict[str, list[float]]) -> str:
    def median(name: str) -> float:
        return statistics.median(results[name])

    bare = median("bare")
    lines = [
        f"| {title} | µs/request (median) | rounds min–max | added vs bare |",
        "|---|---:|---:|---:|",
    ]
    for name, values in results.items():
        lines.append(
            f"| {name} | {median(name):.2f} | {min(values):.2f}–{max(values):.2f} | "
            f"{median(name) - bare:+.2f} |"
        )
    plain = median("switchgear")
    series = plain - median("switchgear, standard series off")
    lines.append(f"\nthe standard HTTP series and exemplars add {series:+.2f} µs (bar: <= 1.5)")
    slow = "switchgear, standard series' fast path off"
    if slow in results:
        lines.append(f"their fast path saves {median(slow) - plain:+.2f} µs")
    if "switchgear + pool" in results:
        lines.append(f"pool adds {median('switchgear + pool') - plain:+.2f} µs (bar: <= 3)")
        lines.append(f"an adaptive limit adds {median('switchgear + limit') - plain:+.2f} µs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=2_000, help="requests per round")
    args = parser.parse_args(argv)
    print(f"# request cost — Python {platform.python_version()} on {platform.machine()}")
    print(f"rounds={args.rounds} requests/round={args.requests}\n")
    print(table("ASGI (Starlette)", measure(asgi_variants(), args.rounds, args.requests)))
    print()
    print(table("WSGI (Flask)", measure(wsgi_variants(), args.rounds, args.requests)))
    print()
    minimal = wsgi_variants(minimal_app, full=False)
    print(table("WSGI (a minimal app)", measure(minimal, args.rounds, args.requests)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

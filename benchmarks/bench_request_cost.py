"""What the middleware costs per request, in-process: no server, no sockets, no wrk.

The same tiny app as ``bench_http`` (Starlette for ASGI, Flask for WSGI: one route
``/items/{id}``) is called directly, bare, in the middleware, and in the middleware with a
bulkhead pool, and without the standard HTTP series and exemplar support (what those add),
alternating variants round by round. Each figure is the median over rounds
of microseconds per request. Without a server's own work around it, a difference of a
fraction of a microsecond shows, where ``bench_http``'s server CPU per request moves by
about 2 µs between runs on a shared machine.

Run:  .venv/bin/python -m benchmarks.bench_request_cost [--rounds 7] [--requests 20000]
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


def wsgi_variants() -> dict[str, Variant]:
    def app() -> Any:
        flask = Flask("bench")
        flask.add_url_rule("/items/<id>", "item", lambda id: {"id": id})
        return flask

    apps = {
        "bare": app().wsgi_app,
        "switchgear": WSGIMiddleware(app().wsgi_app, registry=CollectorRegistry()),
        "switchgear, standard series off": WSGIMiddleware(
            app().wsgi_app, registry=CollectorRegistry(), http_metrics=False, exemplars=False
        ),
        "switchgear + pool": WSGIMiddleware(
            app().wsgi_app, registry=CollectorRegistry(), pool=_pool("wsgi-cost")
        ),
        "switchgear + limit": WSGIMiddleware(
            app().wsgi_app, registry=CollectorRegistry(), limit=_limit("wsgi-cost")
        ),
    }

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
        run(n // 10)  # warm-up: routes learned, caches filled
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            results[name].append(run(n) / n * 1e6)
    return results


def table(title: str, results: dict[str, list[float]]) -> str:
    bare = statistics.median(results["bare"])
    lines = [
        f"| {title} | µs/request (median) | rounds min–max | added vs bare |",
        "|---|---:|---:|---:|",
    ]
    for name, values in results.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median:.2f} | {min(values):.2f}–{max(values):.2f} | "
            f"{median - bare:+.2f} |"
        )
    plain = statistics.median(results["switchgear"])
    pooled = statistics.median(results["switchgear + pool"])
    limited = statistics.median(results["switchgear + limit"])
    lines.append(f"\npool adds {pooled - plain:+.2f} µs per request to switchgear (bar: <= 3)")
    lines.append(f"an adaptive limit adds {limited - plain:+.2f} µs per request to switchgear")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round")
    args = parser.parse_args(argv)
    print(f"# request cost — Python {platform.python_version()} on {platform.machine()}")
    print(f"rounds={args.rounds} requests/round={args.requests}\n")
    print(table("ASGI (Starlette)", measure(asgi_variants(), args.rounds, args.requests)))
    print()
    print(table("WSGI (Flask)", measure(wsgi_variants(), args.rounds, args.requests)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

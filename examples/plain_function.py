"""Protect plain functions that call an HTTP service with ``@sg.protected``, no web framework.

Run it::

    python -m examples.plain_function

It starts a small exchange-rate service on 127.0.0.1 (a thread of this process), then:

1. calls it through a protected sync function that leases an ``httpx.Client`` from a pool;
2. takes the service down: three failures open the breaker, later calls are rejected at
   once with ``CircuitOpenError`` (no request is sent);
3. brings it back: after ``open_timeout`` the breaker lets a trial call through and closes;
4. calls it through a protected ``async`` function whose fallback serves a cached rate
   while the service is down;
5. serves the metrics with prometheus_client's own HTTP server and prints what a
   Prometheus scrape of it sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from prometheus_client import start_http_server

import switchgear as sg

# -- a stand-in for a remote service -------------------------------------------------------

RATES = {"EUR": 1.08, "GBP": 1.27, "JPY": 0.0067}


class RatesHandler(BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self) -> None:
        currency = self.path.rsplit("/", 1)[-1]
        if not RatesHandler.healthy:
            self._reply(503, {"error": "maintenance"})
        elif currency in RATES:
            self._reply(200, {"currency": currency, "usd": RATES[currency]})
        else:
            self._reply(404, {"error": "unknown currency"})

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the example's output readable


@contextmanager
def rates_service() -> Iterator[str]:
    """Run the rates service in a thread; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RatesHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- the protected functions -----------------------------------------------------------------


def log_transition(old: sg.BreakerState, new: sg.BreakerState) -> None:
    print(f"  breaker fx-rates: {old.value} -> {new.value}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open-timeout", type=float, default=2.0, help="seconds OPEN")
    args = parser.parse_args(argv)

    with rates_service() as base_url:
        breaker = sg.CircuitBreaker(
            "fx-rates",
            failure_threshold=3,  # the default is 5
            success_threshold=1,  # the default is 3
            open_timeout=args.open_timeout,  # the default is 30 s
            on_state_change=log_transition,
        )
        # Up to 4 HTTP clients, created on demand (a "cold start"), closed with the pool.
        clients = sg.DynamicPool(
            lambda: httpx.Client(base_url=base_url, timeout=2.0),
            name="fx-clients",
            min_size=1,
            max_size=4,
        )

        @sg.protected("fx-rates", breaker=breaker, pool=clients, resource_arg="client")
        def usd_rate(currency: str, *, client: httpx.Client | None = None) -> float:
            # The pool passes `client`; the default only tells type checkers callers need not.
            assert client is not None
            reply = client.get(f"/rates/{currency}")
            reply.raise_for_status()  # a 5xx raises: a failure for the breaker
            rate: float = reply.json()["usd"]
            return rate

        print("1. the service is up")
        for currency in ("EUR", "GBP", "JPY"):
            print(f"  {currency}: {usd_rate(currency)}")  # `client` is passed by the pool

        print("2. the service goes down")
        RatesHandler.healthy = False
        for _ in range(5):
            try:
                usd_rate("EUR")
            except httpx.HTTPStatusError as exc:
                print(f"  failed: HTTP {exc.response.status_code}")
            except sg.CircuitOpenError as exc:
                print(f"  rejected ({exc.reason}), retry after {exc.retry_after:.1f}s")

        print("3. the service comes back")
        RatesHandler.healthy = True
        print(f"  state before open_timeout: {breaker.state.value}")
        time.sleep(args.open_timeout)
        print(f"  state after open_timeout: {breaker.state.value}")
        print(f"  EUR: {usd_rate('EUR')}")

        print("4. async, with a fallback")
        last_known = {"EUR": 1.0}

        def cached_rate(exc: BaseException, currency: str) -> float:
            print(f"  fallback after {type(exc).__name__}")
            return last_known[currency]

        @sg.protected("fx-rates-async", fallback=cached_rate, timeout=1.0)
        async def usd_rate_async(currency: str) -> float:
            async with httpx.AsyncClient(base_url=base_url) as client:
                reply = await client.get(f"/rates/{currency}")
                reply.raise_for_status()
                rate: float = reply.json()["usd"]
                last_known[currency] = rate
                return rate

        print(f"  EUR: {asyncio.run(usd_rate_async('EUR'))}")
        RatesHandler.healthy = False
        print(f"  EUR: {asyncio.run(usd_rate_async('EUR'))}")
        RatesHandler.healthy = True

        print("5. what Prometheus scrapes")
        server, _ = start_http_server(0, addr="127.0.0.1")
        try:
            port = server.server_address[1]
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        finally:
            server.shutdown()
        for line in text.splitlines():
            if line.startswith(
                (
                    "switchgear_requests_total",
                    "switchgear_rejected_total",
                    "switchgear_circuit_transitions_total",
                    "switchgear_cold_starts_total",
                    "switchgear_pool_size",
                )
            ) and not line.endswith(" 0.0"):
                print(f"  {line}")
        clients.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

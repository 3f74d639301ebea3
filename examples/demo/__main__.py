"""``python -m examples.demo``: switchgear live, on a real uvicorn server.

Starts the demo service (see :mod:`examples.demo.app`) on 127.0.0.1, drives traffic at it
from this process and runs a scripted scenario: the payment gateway fails for a while and
recovers (its route's breaker trips, probes and closes), and a rush of inventory queries
makes the connection pool grow, then shrink. One line per second shows what happens::

    t= 9s  rps=112 (ok 61, 5xx 0, rejected 51)  payments=OPEN(retry 1.4s)  trips=1
           pool=8/8 in_use=7 waiting=2  [payments HALF_OPEN->OPEN]

Afterwards ``/metrics`` and ``/switchgear`` stay up for ``--serve-for`` seconds (point
Prometheus or curl at them), then the server shuts down. Ctrl-C (or SIGTERM) stops it at any
point, cleanly. ``--no-scenario`` only serves the app, without traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import httpx
import uvicorn

from switchgear import BreakerState, CircuitBreaker

from .app import INVENTORY_ROUTE, METRICS_PATH, PAYMENTS_ROUTE, STATUS_PATH, DemoService
from .load import LoadDriver, Tally

DEFAULT_PORT = 8000
SHORT_NAMES = {PAYMENTS_ROUTE: "payments", INVENTORY_ROUTE: "inventory"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo",
        description="Run the switchgear demo: a breaker tripping and recovering, and a pool "
        "scaling up and down, on a real uvicorn server.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}, or a free port if it is busy; "
        "0 = any free port)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=40.0,
        help="seconds of the scripted scenario (default %(default)s, at least 6)",
    )
    parser.add_argument(
        "--serve-for",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="keep /metrics and the status endpoint up this long after the scenario "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--open-timeout",
        type=float,
        default=None,
        help="seconds a tripped breaker stays OPEN before probing "
        "(default: duration / 13, between 1 and 3)",
    )
    parser.add_argument(
        "--no-scenario",
        action="store_true",
        help="serve the app for --serve-for seconds without traffic or scripted faults "
        "(inject faults with POST /admin/faults)",
    )
    args = parser.parse_args(argv)
    if args.duration < 6:
        parser.error("--duration must be at least 6 seconds")
    if args.serve_for < 0:
        parser.error("--serve-for must not be negative")
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.open_timeout is None:
        args.open_timeout = min(3.0, max(1.0, args.duration / 13))
    elif args.open_timeout <= 0:
        parser.error("--open-timeout must be positive")
    return args


def bind(port: int | None) -> socket.socket:
    """A listening socket on 127.0.0.1: ``port``, or the default one, or any free one."""

    def listen(number: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", number))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        return sock

    if port is not None:
        return listen(port)
    try:
        return listen(DEFAULT_PORT)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"port {DEFAULT_PORT} is busy; using a free port instead", flush=True)
        return listen(0)


class Server(uvicorn.Server):
    """uvicorn, minus its signal handling: the demo stops the server itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


# -- watching the breakers and the pool -----------------------------------------------------


@dataclass
class PoolView:
    total: int
    max_size: int
    in_use: int
    waiting: int


class Monitor:
    """Collects breaker transitions and pool changes, and formats the per-second line."""

    def __init__(self, service: DemoService, open_timeout: float) -> None:
        self.service = service
        self.open_timeout = open_timeout
        self._watched: set[int] = set()
        self._lock = threading.Lock()  # listeners may run on the metrics thread too
        self._events: list[str] = []
        self._opened_at: dict[str, float] = {}
        self.trips = 0
        self.closes = 0
        stats = service.pool.stats()
        self._pool_total = stats.total
        self.pool_peak = stats.total
        self.pool_low_after_peak = stats.total

    def _listener(self, key: str) -> Callable[[BreakerState, BreakerState], None]:
        short = SHORT_NAMES.get(key, key)

        def on_change(old: BreakerState, new: BreakerState) -> None:
            with self._lock:
                self._events.append(f"{short} {old.name}->{new.name}")
                if new is BreakerState.OPEN:
                    self._opened_at[key] = time.monotonic()
                if key == PAYMENTS_ROUTE:
                    if old is BreakerState.CLOSED and new is BreakerState.OPEN:
                        self.trips += 1
                    if new is BreakerState.CLOSED:
                        self.closes += 1

        return on_change

    def poll(self) -> None:
        """Watch new breakers, apply due transitions (reading a state does), note pool moves."""
        for key, breaker in self.service.middleware.breakers().items():
            if id(breaker) not in self._watched:
                self._watched.add(id(breaker))
                breaker.add_listener(self._listener(key))
            _ = breaker.state  # OPEN -> HALF_OPEN is applied when the state is read
        total = self.service.pool.stats().total
        if total != self._pool_total:
            with self._lock:
                self._events.append(f"pool {self._pool_total}->{total}")
            self._pool_total = total
            if total > self.pool_peak:
                self.pool_peak = self.pool_low_after_peak = total
            self.pool_low_after_peak = min(self.pool_low_after_peak, total)

    def payments(self) -> str:
        breaker: CircuitBreaker | None = self.service.breaker(PAYMENTS_ROUTE)
        if breaker is None:
            return "-"
        state = breaker.state
        if state is BreakerState.OPEN:
            with self._lock:
                opened = self._opened_at.get(PAYMENTS_ROUTE, time.monotonic())
            retry = max(0.0, self.open_timeout - (time.monotonic() - opened))
            return f"OPEN(retry {retry:.1f}s)"
        return state.name

    def pool(self) -> PoolView:
        s = self.service.pool.stats()
        return PoolView(s.total, self.service.pool.max_size, s.in_use, s.waiting)

    def take_events(self) -> list[str]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def line(self, elapsed: float, tallies: dict[str, Tally], seconds: float) -> str:
        total = Tally()
        for tally in tallies.values():
            total.add(tally)
        rps = round(total.total / seconds) if seconds > 0 else 0
        pool = self.pool()
        events = self.take_events()
        text = (
            f"t={elapsed:3.0f}s  rps={rps:<4d}(ok {total.ok}, 5xx {total.failed}, "
            f"rejected {total.rejected})  payments={self.payments()}  trips={self.trips}  "
            f"pool={pool.total}/{pool.max_size} in_use={pool.in_use} waiting={pool.waiting}"
        )
        if total.errors:
            text += f"  no-response={total.errors}"
        if events:
            text += f"  [{', '.join(events)}]"
        return text


# -- the scenario -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    at: float  # share of the scenario's duration
    message: str
    payments_failing: bool | None = None
    inventory_workers: int | None = None


SCRIPT = (
    Step(0.0, "steady traffic; the payment gateway is healthy", False, 1),
    Step(0.15, "the payment gateway starts failing (502)", payments_failing=True),
    Step(0.30, "inventory rush: 10 concurrent shoppers", inventory_workers=10),
    Step(0.45, "the payment gateway recovers", payments_failing=False),
    Step(0.65, "the rush is over: 1 shopper", inventory_workers=1),
)


def say(message: str) -> None:
    print(message, flush=True)


def phases(duration: float) -> Iterator[tuple[float, Step]]:
    for step in SCRIPT:
        yield step.at * duration, step


async def run_scenario(service: DemoService, base_url: str, args: argparse.Namespace) -> None:
    monitor = Monitor(service, args.open_timeout)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0, limits=limits) as client:
        # One request per route first, so their breakers exist before anything goes wrong.
        for path in ("/payments/charge", "/inventory/warmup"):
            await client.get(path)
        monitor.poll()
        driver = LoadDriver(client, pause=0.03)
        driver.set_workers("payments", 2)
        pending = list(phases(args.duration))
        start = time.monotonic()
        next_line = 1.0
        last_line = 0.0
        try:
            while True:
                elapsed = time.monotonic() - start
                while pending and pending[0][0] <= elapsed:
                    _, step = pending.pop(0)
                    if step.payments_failing is not None:
                        service.faults.payments_failing = step.payments_failing
                    if step.inventory_workers is not None:
                        driver.set_workers("inventory", step.inventory_workers)
                    say(f"t={elapsed:3.0f}s  >> {step.message}")
                monitor.poll()
                if elapsed >= next_line:
                    say(monitor.line(elapsed, driver.take(), elapsed - last_line))
                    last_line = elapsed
                    next_line += 1.0
                if elapsed >= args.duration:
                    break
                await asyncio.sleep(0.05)
        finally:
            await driver.stop()
    monitor.poll()
    breaker = service.breaker(PAYMENTS_ROUTE)
    state = breaker.state.name if breaker is not None else "-"
    say(
        f"scenario done: the payments breaker tripped {monitor.trips}x and closed "
        f"{monitor.closes}x (now {state}); the pool grew from {service.pool.min_size} to "
        f"{monitor.pool_peak} connections, then shrank to {monitor.pool_low_after_peak} "
        f"(now {service.pool.stats().total})"
    )


# -- main ------------------------------------------------------------------------------------


async def amain(args: argparse.Namespace) -> int:
    try:
        sock = bind(args.port)
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)

    service = DemoService(open_timeout=args.open_timeout)
    config = uvicorn.Config(
        service.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                await serving
                print("the server did not start", file=sys.stderr)
                return 1
            await asyncio.sleep(0.02)
        say(f"switchgear demo serving on {base_url}")
        say(f"  metrics: {base_url}{METRICS_PATH}")
        say(f"  status:  {base_url}{STATUS_PATH}  (JSON; open it in a browser for the live page)")
        say(f"  faults:  {base_url}/admin/faults  (GET; POST a JSON object to change them)")

        stopped = asyncio.create_task(stop.wait())
        if not args.no_scenario:
            say(
                f"scenario: {args.duration:g}s, breaker open_timeout {args.open_timeout:g}s "
                "(Ctrl-C stops)"
            )
            scenario = asyncio.create_task(run_scenario(service, base_url, args))
            await asyncio.wait({scenario, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not scenario.done():
                scenario.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scenario
            else:
                scenario.result()
        if not stop.is_set():
            say(
                f"serving {base_url}{METRICS_PATH} and {base_url}{STATUS_PATH} "
                f"for {args.serve_for:g}s (Ctrl-C stops)"
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(stopped), args.serve_for)
        if stop.is_set():
            say("interrupted")
        stopped.cancel()
    finally:
        say("shutting down")
        server.should_exit = True
        await serving
    say("bye")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())

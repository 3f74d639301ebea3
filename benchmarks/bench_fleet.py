"""Shared breakers at fleet scale: Redis load and trip propagation, against a real redis-server.

P worker processes (real OS processes) each make B shared breakers on one ``RedisStorage``
and attach them. The whole measurement runs twice in one run, on one redis-server started
for it: with ``push=False`` (every breaker refreshes itself every ``max_staleness / 2``:
what a process does while its subscription is down) and with ``push=True`` (transitions are
announced over pub/sub; one ping per process replaces the per-breaker refresh). Each time:

1. **idle**: nothing is called; Redis commands per second from ``INFO commandstats`` (the
   commands scripts run included), over the phase;
2. **load**: every process calls its breakers round-robin at ``--rate`` calls per second with
   ``--failures`` of them failing; commands per second again;
3. **trip**: one process fails one breaker ``failure_threshold`` times in a row (it trips at
   once, locally); every other process watches that breaker's ``state`` and notes when it
   reads OPEN. Propagation = that moment minus the moment of the trip (``time.monotonic``
   is one clock for all processes of a host).
4. **trip, subscriptions cut** (push only): every subscription is killed
   (``CLIENT KILL TYPE pubsub``) just before another breaker trips, so the announcement
   reaches nobody; propagation then rests on the resubscription's catch-up round.

Run:  .venv/bin/python -m benchmarks.bench_fleet [--processes 20] [--breakers 50]
      [--seconds 10] [--rate 100] [--failures 0.01] [--max-staleness 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from benchmarks.redis_server import redis_server

TRIP_NAMES = ("fleet-0", "fleet-1")
FAILURE_THRESHOLD = 5


# -- the worker process ------------------------------------------------------------------------


def _fail() -> None:
    raise ConnectionError("the dependency is down")


def _succeed() -> None:
    pass


def worker(port: int, breakers: int, max_staleness: float, push: bool, prefix: str) -> None:
    """Serve the controller's commands on stdin, one line each, answering on stdout."""
    import random

    import redis

    import switchgear as sg
    from switchgear.redis import RedisStorage

    storage = RedisStorage(
        redis.Redis(port=port, socket_timeout=0.5),
        max_staleness=max_staleness,
        push=push,
        key_prefix=prefix,
    )
    fleet = [
        sg.CircuitBreaker(
            f"fleet-{i}", storage=storage, failure_threshold=FAILURE_THRESHOLD, open_timeout=60.0
        )
        for i in range(breakers)
    ]
    for breaker in fleet:
        _ = breaker.state  # attaches it to the storage
    rng = random.Random()
    print("ready", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "load":
            rate, failures, seconds = float(args[0]), float(args[1]), float(args[2])
            end = time.monotonic() + seconds
            step = 1.0 / rate
            next_call = time.monotonic()
            i = 0
            while next_call < end:
                breaker = fleet[i % len(fleet)]
                i += 1
                with contextlib.suppress(ConnectionError, sg.CircuitOpenError):
                    breaker.call(_fail if rng.random() < failures else _succeed)
                next_call += step
                time.sleep(max(next_call - time.monotonic(), 0.0))
            print("done", flush=True)
        elif command == "watch":
            breaker, limit = fleet[int(args[1])], time.monotonic() + float(args[0])
            while breaker.state is not sg.BreakerState.OPEN and time.monotonic() < limit:
                time.sleep(0.0005)
            seen = time.monotonic()
            print(f"seen {seen if seen < limit else 'never'}", flush=True)
        elif command == "trip":
            target = fleet[int(args[0])]
            for _ in range(FAILURE_THRESHOLD):
                with contextlib.suppress(ConnectionError, sg.CircuitOpenError):
                    target.call(_fail)
            tripped = time.monotonic()
            assert target.state is sg.BreakerState.OPEN
            print(f"tripped {tripped}", flush=True)
        elif command == "quit":
            break
    storage.close()


# -- the controller ----------------------------------------------------------------------------


class Worker:
    def __init__(self, port: int, args: argparse.Namespace, push: bool) -> None:
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "benchmarks.bench_fleet", "--worker"),
                *("--port", str(port), "--breakers", str(args.breakers)),
                *("--max-staleness", str(args.max_staleness)),
                *("--push", "1" if push else "0", "--prefix", f"bench-{int(push)}:"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def answer(self) -> str:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.pid} exited ({self.process.poll()})")
        return line.strip()


def command_counts(client: Any) -> dict[str, int]:
    stats = client.info("commandstats")
    return {key.removeprefix("cmdstat_"): value["calls"] for key, value in stats.items()}


def rate_over(client: Any, seconds: float) -> tuple[float, dict[str, float]]:
    """Commands per second over ``seconds`` (the two INFO calls of the measure excluded)."""
    before = command_counts(client)
    time.sleep(seconds)
    after = command_counts(client)
    per_command = {
        name: (count - before.get(name, 0)) / seconds
        for name, count in after.items()
        if count != before.get(name, 0)
    }
    per_command["info"] = per_command.get("info", 0.0) - 1 / seconds
    total = sum(per_command.values())
    return total, {name: r for name, r in sorted(per_command.items()) if r > 0}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def trip(workers: list[Worker], index: int, watch_for: float) -> list[float | None]:
    """Trip breaker ``index`` in the first worker; when each other worker saw it (or None)."""
    watchers = workers[1:]
    for w in watchers:
        w.send(f"watch {watch_for} {index}")
    time.sleep(0.2)
    workers[0].send(f"trip {index}")
    tripped = float(workers[0].answer().split()[1])
    seen = [w.answer().split()[1] for w in watchers]
    return [float(x) - tripped if x != "never" else None for x in seen]


def measure(port: int, args: argparse.Namespace, push: bool) -> dict[str, Any]:
    """One variant's phases, with its own workers."""
    import redis

    client = redis.Redis(port=port)
    workers = [Worker(port, args, push) for _ in range(args.processes)]
    result: dict[str, Any] = {}
    try:
        for w in workers:
            if w.answer() != "ready":
                raise RuntimeError("a worker did not start")
        time.sleep(2 * args.max_staleness + 1.0)  # past the first exchanges
        result["idle"] = rate_over(client, args.seconds)
        for w in workers:
            w.send(f"load {args.rate} {args.failures} {args.seconds}")
        time.sleep(0.5)
        result["load"] = rate_over(client, args.seconds - 1.0)
        for w in workers:
            w.answer()
        watch_for = 4 * args.max_staleness + 2
        result["trip"] = trip(workers, 0, watch_for)
        if push:
            for w in workers[1:]:
                w.send(f"watch {watch_for} 1")
            time.sleep(0.2)
            client.client_kill_filter(_type="pubsub")
            workers[0].send("trip 1")
            tripped = float(workers[0].answer().split()[1])
            seen = [w.answer().split()[1] for w in workers[1:]]
            result["cut"] = [float(x) - tripped if x != "never" else None for x in seen]
    finally:
        for w in workers:
            w.send("quit")
        for w in workers:
            w.process.wait(30)
    return result


def propagation(label: str, seen: list[float | None]) -> str:
    latencies = [x * 1000 for x in seen if x is not None]
    missed = len(seen) - len(latencies)
    if not latencies:
        return f"| {label} | — | — | — | {missed} |"
    return (
        f"| {label} | {percentile(latencies, 0.5):.1f} | {percentile(latencies, 0.99):.1f} | "
        f"{max(latencies):.1f} | {missed} |"
    )


def controller(args: argparse.Namespace) -> int:
    with redis_server() as port:
        if port is None:
            print("redis-server (or redis-py) is not installed: nothing to measure")
            return 1
        polled = measure(port, args, push=False)
        pushed = measure(port, args, push=True)

    p, b = args.processes, args.breakers
    print(f"# fleet benchmark — Python {platform.python_version()} on {platform.machine()}")
    print(
        f"processes={p} breakers/process={b} phase={args.seconds:g}s "
        f"max_staleness={args.max_staleness:g}s load={args.rate:g} calls/s/process "
        f"failures={args.failures:.0%}\n"
    )
    print("| phase | push | Redis commands/s | per process | per process per breaker |")
    print("|---|---|---:|---:|---:|")
    for phase in ("idle", "load"):
        for name, result in (("off", polled), ("on", pushed)):
            total = result[phase][0]
            print(f"| {phase} | {name} | {total:,.0f} | {total / p:,.2f} | {total / p / b:.3f} |")
    print()
    for phase in ("idle", "load"):
        for name, result in (("off", polled), ("on", pushed)):
            by = ", ".join(f"{k} {v:,.1f}/s" for k, v in result[phase][1].items())
            print(f"{phase}, push {name}, by command: {by or 'nothing'}")
    print(f"\ntrip propagation to {p - 1} processes (ms):\n")
    print("| trip | p50 | p99 | max | never seen |")
    print("|---|---:|---:|---:|---:|")
    print(propagation("push off (refresh every max_staleness / 2)", polled["trip"]))
    print(propagation("push on", pushed["trip"]))
    print(propagation("push on, every subscription cut just before", pushed["cut"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--breakers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=100.0, help="calls/s per process (load)")
    parser.add_argument("--failures", type=float, default=0.01, help="failing share (load)")
    parser.add_argument("--max-staleness", type=float, default=1.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--push", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="bench:", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.port, args.breakers, args.max_staleness, bool(args.push), args.prefix)
        return 0
    if args.processes < 2 or args.breakers < 1 or args.seconds < 2:
        parser.error("needs --processes >= 2, --breakers >= 1 and --seconds >= 2")
    return controller(args)


if __name__ == "__main__":
    sys.exit(main())

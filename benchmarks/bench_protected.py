"""Side-by-side cost of @protected vs its peers, in one run, as ratios of medians.

Variants are measured in alternating rounds (A, B, C, A, B, C, ...) so machine noise hits
them alike; each figure is the median over rounds of ns per call. "Added" is the variant's
median minus the bare call's median. The threads table runs the same number of rounds with
three times the calls per round.

The "shared breaker" row runs the same decorator over a breaker whose state lives in a
``redis-server`` started for the run (skipped, with a note, when none is installed): in
CLOSED its calls must cost what a local breaker's do.

Run:  .venv/bin/python -m benchmarks.bench_protected [--rounds 15] [--calls 200000]
      (peers come from the ``benchmark`` extra: pip install -e '.[benchmark]')
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import circuitbreaker
import pybreaker
from prometheus_client import CollectorRegistry, Counter, Histogram

import switchgear as sg
from benchmarks.redis_server import redis_server

Variant = Callable[[int], float]  # runs n calls, returns elapsed seconds


def work(x: int) -> int:
    return x + 1


def sync_loop(fn: Callable[[int], int]) -> Variant:
    def run(n: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        return time.perf_counter() - start

    return run


@contextlib.contextmanager
def redis_storage() -> Iterator[Any]:
    """A RedisStorage on a throwaway redis-server, or None when redis is not installed."""
    with redis_server() as port:
        if port is None:
            yield None
            return
        import redis

        from switchgear.redis import RedisStorage

        storage = RedisStorage(redis.Redis(port=port, socket_timeout=0.5))
        yield storage
        storage.close()


def make_variants(storage: Any = None) -> dict[str, Variant]:
    registry = CollectorRegistry()

    # pybreaker + prometheus_client, the way teams glue them today (pre-bound children).
    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    hist = Histogram("peer_duration_seconds", "d", ["name"], registry=registry).labels("peer")
    ok = Counter("peer_requests_total", "r", ["name", "outcome"], registry=registry).labels(
        "peer", "success"
    )
    observe, inc = hist.observe, ok.inc
    pb_call = pb.call
    perf = time.perf_counter

    def pybreaker_prom(x: int) -> int:
        start = perf()
        result = pb_call(work, x)
        observe(perf() - start)
        inc()
        return result

    cb_work = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(work)

    protected = sg.protected(
        "bench",
        breaker=sg.CircuitBreaker("bench"),
        metrics=sg.Metrics("bench", registry=registry),
    )(work)
    # The same without exemplar support: what the check for a current span costs.
    protected_plain = sg.protected(
        "bench-plain",
        breaker=sg.CircuitBreaker("bench-plain"),
        metrics=sg.Metrics("bench-plain", registry=registry, exemplars=False),
    )(work)
    pool: sg.DynamicPool[Any] = sg.DynamicPool(None, name="bench-pool", min_size=4, max_size=4)
    protected_pool = sg.protected(
        "bench-pool",
        breaker=sg.CircuitBreaker("bench-pool"),
        metrics=sg.Metrics("bench-pool", registry=registry),
        pool=pool,
    )(work)

    # An adaptive limit far above what one caller keeps in flight: the cost when it is not
    # binding (the bar: at most 300 ns over @protected without it).
    protected_limit = sg.protected(
        "bench-limit",
        breaker=sg.CircuitBreaker("bench-limit"),
        metrics=sg.Metrics("bench-limit", registry=registry),
        limit=sg.AdaptiveLimit("bench-limit", initial_limit=100, max_limit=200),
    )(work)

    variants = {
        "bare call": sync_loop(work),
        "pybreaker + prometheus_client": sync_loop(pybreaker_prom),
        "circuitbreaker": sync_loop(cb_work),
        "@protected (breaker + metrics)": sync_loop(protected),
        "@protected, exemplars off": sync_loop(protected_plain),
        "@protected + adaptive limit": sync_loop(protected_limit),
        "@protected + pool": sync_loop(protected_pool),
    }
    if storage is not None:
        shared_breaker = sg.CircuitBreaker("bench-shared", storage=storage)
        assert shared_breaker.state is sg.BreakerState.CLOSED  # attaches it to Redis now
        variants["@protected (shared breaker, Redis)"] = sync_loop(
            sg.protected(
                "bench-shared",
                breaker=shared_breaker,
                metrics=sg.Metrics("bench-shared", registry=registry),
            )(work)
        )
    return variants


def make_async_variants() -> dict[str, Variant]:
    registry = CollectorRegistry()

    async def awork(x: int) -> int:
        return x + 1

    aprotected = sg.protected(
        "bench-async",
        breaker=sg.CircuitBreaker("bench-async"),
        metrics=sg.Metrics("bench-async", registry=registry),
    )(awork)

    def async_loop(fn: Callable[[int], Any]) -> Variant:
        async def body(n: int) -> float:
            start = time.perf_counter()
            for i in range(n):
                await fn(i)
            return time.perf_counter() - start

        def run(n: int) -> float:
            return asyncio.run(body(n))

        return run

    apool: sg.DynamicPool[Any] = sg.DynamicPool(
        None, name="bench-async-pool", min_size=4, max_size=4
    )
    aprotected_pool = sg.protected(
        "bench-async-pool",
        breaker=sg.CircuitBreaker("bench-async-pool"),
        metrics=sg.Metrics("bench-async-pool", registry=registry),
        pool=apool,
    )(awork)
    # circuitbreaker decorates coroutine functions natively; pybreaker's async path needs
    # tornado, so it has no async row.
    acb = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(awork)

    return {
        "async bare call": async_loop(awork),
        "async circuitbreaker": async_loop(acb),
        "async @protected (breaker + metrics)": async_loop(aprotected),
        "async @protected + pool": async_loop(aprotected_pool),
    }


def threads_variant(fn: Callable[[int], int], threads: int) -> Variant:
    def run(n: int) -> float:
        per = n // threads
        barrier = threading.Barrier(threads + 1)

        def worker() -> None:
            barrier.wait()
            for i in range(per):
                fn(i)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in pool:
            t.join()
        return time.perf_counter() - start

    return run


# Each variant's fastest and slowest round (ns per call), printed beside its median.
SPREAD: dict[str, tuple[float, float]] = {}


def measure(variants: dict[str, Variant], rounds: int, calls: int) -> dict[str, float]:
    """Median ns per call of each variant over alternating rounds (spread kept in SPREAD)."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():
        run(calls // 10)  # warm up
    for _ in range(rounds):
        for name, run in variants.items():
            results[name].append(run(calls) / calls * 1e9)
    for name, values in results.items():
        SPREAD[name] = (min(values), max(values))
    return {name: statistics.median(values) for name, values in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args(argv)

    # One interleaved measurement for sync and async, so both see the same machine.
    with redis_storage() as storage:
        sync_variants = make_variants(storage)
        both = measure({**sync_variants, **make_async_variants()}, args.rounds, args.calls)
    if storage is None:
        print("note: redis-server (or redis-py) not installed: no shared-breaker row\n")
    sync = {name: ns for name, ns in both.items() if name in sync_variants}
    asyn = {name: ns for name, ns in both.items() if name not in sync_variants}

    registry = CollectorRegistry()
    threaded_fn = sg.protected(
        "bench-threads",
        breaker=sg.CircuitBreaker("bench-threads"),
        metrics=sg.Metrics("bench-threads", registry=registry),
    )(work)
    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

    def pb_fn(x: int) -> int:
        return pb.call(work, x)

    threaded = measure(
        {
            # The interpreter's own cost of eight threads taking turns: the ceiling for all.
            "bare call 1 thread": threads_variant(work, 1),
            "bare call 8 threads": threads_variant(work, 8),
            "@protected 1 thread": threads_variant(threaded_fn, 1),
            "@protected 8 threads": threads_variant(threaded_fn, 8),
            "pybreaker 1 thread": threads_variant(pb_fn, 1),
            "pybreaker 8 threads": threads_variant(pb_fn, 8),
        },
        # As many rounds as the single-thread table, each three times as long: a short round
        # is dominated by eight threads waking from the barrier and fighting for the GIL.
        args.rounds,
        args.calls * 3,
    )

    bare = sync["bare call"]
    peer_added = sync["pybreaker + prometheus_client"] - bare
    print(f"# switchgear benchmark — Python {platform.python_version()} on {platform.machine()}")
    print(f"rounds={args.rounds} calls/round={args.calls}; medians, ns per call\n")

    print("| variant | ns/call | rounds min–max | added vs bare | added / pybreaker+prom added |")
    print("|---|---:|---:|---:|---:|")
    for name, ns in sync.items():
        added = ns - bare
        ratio = added / peer_added if name != "bare call" else 0.0
        lo, hi = SPREAD[name]
        print(f"| {name} | {ns:.0f} | {lo:.0f}–{hi:.0f} | {added:.0f} | {ratio:.2f} |")
    abare = asyn["async bare call"]
    for name, ns in asyn.items():
        lo, hi = SPREAD[name]
        print(f"| {name} | {ns:.0f} | {lo:.0f}–{hi:.0f} | {ns - abare:.0f} | |")
    print("\n| threads | calls/s | ratio 8 threads / 1 thread |")
    print("|---|---:|---:|")
    for lib in ("bare call", "@protected", "pybreaker"):
        one = 1e9 / threaded[f"{lib} 1 thread"]
        eight = 1e9 / threaded[f"{lib} 8 threads"]
        print(f"| {lib} 1 thread | {one:,.0f} | |")
        print(f"| {lib} 8 threads | {eight:,.0f} | {eight / one:.2f} |")
    protected_added = sync["@protected (breaker + metrics)"] - bare
    async_added = asyn["async @protected (breaker + metrics)"] - abare
    limit_added = sync["@protected + adaptive limit"] - sync["@protected (breaker + metrics)"]
    exemplar_check = sync["@protected (breaker + metrics)"] - sync["@protected, exemplars off"]
    print(
        f"\nbars: sync added {protected_added:.0f} ns (<= 600), "
        f"adaptive limit {limit_added:.0f} ns over @protected (<= 300), "
        f"exemplar support {exemplar_check:.0f} ns with no span current (<= 100), "
        f"{protected_added / peer_added:.2f} of pybreaker+prom (<= 0.33); "
        f"async added {async_added:.0f} ns (<= 800); "
        f"8/1 threads {threaded['@protected 1 thread'] / threaded['@protected 8 threads']:.2f}"
        " (>= 0.95)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

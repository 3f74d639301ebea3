"""Cost of recording one call: switchgear's hot path next to prometheus_client's.

Variants run in alternating rounds (A, B, C, A, B, C, ...) so machine noise hits them
alike; each figure is the median over rounds of ns per call, loop overhead subtracted.
The last lines time a scrape of 100 names (the bar is 20 ms) in the Prometheus text
format and in OpenMetrics (what Prometheus asks for first), beside prometheus_client alone
rendering a counter and a histogram for the same 100 names.

Run:  .venv/bin/python -m benchmarks.bench_metrics [--rounds 15] [--calls 200000]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

import switchgear as sg
from switchgear._metrics import render_latest

Loop = Callable[[int], float]  # runs n calls, returns elapsed seconds


def loop(fn: Callable[[float, bool, bool], object]) -> Loop:
    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn(0.02, True, False)
        return time.perf_counter() - start

    return run


def make_variants() -> dict[str, Loop]:
    registry = CollectorRegistry()
    metrics = sg.Metrics("bench", registry=registry)

    # What teams write by hand today: pre-bound children, observe + inc per call.
    hist = Histogram("peer_duration_seconds", "d", ["name"], registry=registry).labels("peer")
    ok = Counter("peer_requests_total", "r", ["name", "outcome"], registry=registry).labels(
        "peer", "success"
    )
    observe, inc = hist.observe, ok.inc

    def prometheus_client_pair(duration: float, success: bool, cold_start: bool) -> None:
        observe(duration)
        inc()

    def empty(duration: float, success: bool, cold_start: bool) -> None:
        pass

    return {
        "empty call (loop baseline)": loop(empty),
        "Metrics._record": loop(metrics.series.record),
        "Metrics.record_request": loop(metrics.record_request),
        "prometheus_client observe+inc": loop(prometheus_client_pair),
    }


def _median_ms(render: Callable[[], object], repeats: int) -> float:
    render()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        render()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def scrape_ms(names: int = 100, repeats: int = 20) -> dict[str, float]:
    """Render times of 100 names with breakers, in both formats, beside plain prometheus_client."""
    registry = CollectorRegistry()
    breakers = []
    for i in range(names):
        m = sg.Metrics(f"route-{i}", registry=registry)
        breaker = sg.CircuitBreaker(f"route-{i}")
        breakers.append(breaker)
        m.attach(breaker)
        for d in (0.001, 0.02, 0.3, 4.0):
            m._record(d, True, False)
    # The encoders' own share: a request counter and a latency histogram for 100 names,
    # written with prometheus_client alone (no breakers, windows, pools or memory).
    plain = CollectorRegistry()
    counter = Counter("plain_requests", "r", ["name", "outcome"], registry=plain)
    histogram = Histogram("plain_duration_seconds", "d", ["name"], registry=plain)
    for i in range(names):
        for d in (0.001, 0.02, 0.3, 4.0):
            counter.labels(f"route-{i}", "success").inc()
            histogram.labels(f"route-{i}").observe(d)
    om = "application/openmetrics-text; version=1.0.0"  # as /metrics answers Prometheus
    return {
        "switchgear, Prometheus text": _median_ms(lambda: render_latest(registry), repeats),
        "switchgear, OpenMetrics": _median_ms(lambda: render_latest(registry, om), repeats),
        "prometheus_client alone, text": _median_ms(lambda: render_latest(plain), repeats),
        "prometheus_client alone, OpenMetrics": _median_ms(
            lambda: render_latest(plain, om), repeats
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()

    variants = make_variants()
    results: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():
        run(args.calls // 10)  # warm up
    for _ in range(args.rounds):
        for name, run in variants.items():
            results[name].append(run(args.calls) / args.calls * 1e9)
    medians = {name: statistics.median(values) for name, values in results.items()}
    baseline = medians.pop("empty call (loop baseline)")
    net = {name: value - baseline for name, value in medians.items()}
    peer = net["prometheus_client observe+inc"]

    print(f"Python {platform.python_version()} on {platform.machine()} ({sys.platform})")
    print(f"{args.rounds} rounds x {args.calls} calls; medians of ns per call")
    print(f"net = minus an empty 3-argument function call in the same loop ({baseline:.0f} ns)\n")
    print(f"{'variant':32} {'gross':>7} {'net':>7} {'net vs prometheus_client':>25}")
    for name, value in net.items():
        print(f"{name:32} {medians[name]:7.0f} {value:7.0f} {value / peer:24.2f}x")
    print("\n/metrics with 100 names and breakers (median of 20 renders; bar: 20 ms):")
    for label, ms in scrape_ms().items():
        print(f"  {label:40} {ms:6.2f} ms")


if __name__ == "__main__":
    main()

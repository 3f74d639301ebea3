"""A deterministic simulation of adaptive concurrency limits against a dependency that queues.

Discrete events on a virtual clock, no sleeps, reproducible from ``--random-state``. The dependency
serves ``capacity`` calls at a time (service times log-normal around ``service`` seconds) and
queues the rest first in, first out; it keeps working on a call whose caller gave up, as most
servers do. A caller gives up after ``timeout`` seconds (a drop). Calls arrive as a Poisson
process at a multiple of the dependency's throughput; the capacity halves at one third of the
run and comes back at two thirds.

Each run puts one admission strategy in front of the dependency: none, a fixed limit, or an
adaptive limit driven by the library's own policy objects exactly as ``AdaptiveLimit`` drives
them (samples batched every ``update_interval``, the peak in flight in between).

Run:  .venv/bin/python -m benchmarks.sim_limit [--random-state 1] [--plots docs/img]
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from switchgear._limit.policy import Aimd, Gradient, Policy, Sample, Settings

SERVICE = 0.020  # median service time, seconds
SIGMA = 0.2  # log-normal spread of service times
CAPACITY = 20  # calls the dependency serves at once before queueing
TIMEOUT = 1.0  # the caller gives up after this long
DURATION = 60.0
UPDATE_INTERVAL = 0.1
LOADS = (0.5, 1.0, 2.0, 5.0)

ARRIVE, DONE, GIVE_UP, UPDATE = range(4)


@dataclass
class Run:
    """The record of one simulated run."""

    strategy: str
    load: float
    ok_latencies: list[tuple[float, float]] = field(default_factory=list)  # (end, rtt)
    timeouts: list[float] = field(default_factory=list)  # when callers gave up
    rejected: int = 0
    arrivals: int = 0
    limit_trace: list[tuple[float, int, bool]] = field(default_factory=list)  # t, limit, probing


class Dependency:
    """``capacity`` servers and a FIFO queue; capacity changes take effect as servers free up."""

    def __init__(self, rng: random.Random, capacity: int) -> None:
        self.rng = rng
        self.capacity = capacity
        self.busy = 0
        self.queue: deque[int] = deque()

    def service_time(self) -> float:
        return SERVICE * math.exp(self.rng.gauss(0.0, SIGMA))

    def submit(self, call: int, now: float, events: list[tuple[float, int, int, int]]) -> None:
        self.queue.append(call)
        self.start(now, events)

    def start(self, now: float, events: list[tuple[float, int, int, int]]) -> None:
        while self.busy < self.capacity and self.queue:
            call = self.queue.popleft()
            self.busy += 1
            heapq.heappush(events, (now + self.service_time(), DONE, call, 0))


class Admission:
    """What stands in front of the dependency: no limit, a fixed one, or a policy."""

    def __init__(self, fixed: int | None = None, policy: Policy | None = None) -> None:
        self.policy = policy
        self.limit = fixed if fixed is not None else (policy.limit if policy else 10**9)
        self.in_flight = 0
        self.peak = 0
        self.samples: list[Sample] = []

    def admit(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return True

    def finish(self, end: float, rtt: float, dropped: bool) -> None:
        self.in_flight -= 1
        if self.policy is not None:
            self.samples.append(Sample(end, rtt, dropped))

    def update(self, now: float) -> None:
        if self.policy is not None:
            self.limit = self.policy.update(now, self.samples, self.peak)
            self.samples = []
            self.peak = self.in_flight


def simulate(strategy: str, load: float, seed: int, make: Callable[[], Admission]) -> Run:
    """One run: Poisson arrivals at ``load`` times the full capacity's throughput."""
    rng = random.Random(f"{seed}-{load}")  # the same arrivals and service times per load
    dependency = Dependency(random.Random(f"{seed}-{load}-service"), CAPACITY)
    admission = make()
    run = Run(strategy, load)
    rate = load * CAPACITY / SERVICE
    events: list[tuple[float, int, int, int]] = [(rng.expovariate(rate), ARRIVE, 0, 0)]
    events.append((0.0, UPDATE, 0, 0))
    started: dict[int, float] = {}
    calls = 0
    changes = {DURATION / 3: CAPACITY // 2, 2 * DURATION / 3: CAPACITY}
    while events:
        now, kind, call, _ = heapq.heappop(events)
        if now > DURATION:
            break
        for at in [t for t in changes if t <= now]:
            dependency.capacity = changes.pop(at)
            dependency.start(now, events)
        if kind == ARRIVE:
            run.arrivals += 1
            heapq.heappush(events, (now + rng.expovariate(rate), ARRIVE, 0, 0))
            if not admission.admit():
                run.rejected += 1
                continue
            calls += 1
            started[calls] = now
            dependency.submit(calls, now, events)
            heapq.heappush(events, (now + TIMEOUT, GIVE_UP, calls, 0))
        elif kind == DONE:
            dependency.busy -= 1
            dependency.start(now, events)
            start = started.pop(call, None)
            if start is not None:  # the caller still waits for it
                run.ok_latencies.append((now, now - start))
                admission.finish(now, now - start, False)
        elif kind == GIVE_UP:
            if started.pop(call, None) is not None:
                run.timeouts.append(now)
                admission.finish(now, TIMEOUT, True)
        else:
            admission.update(now)
            probing = admission.policy.probing if admission.policy else False
            run.limit_trace.append((now, admission.limit, probing))
            heapq.heappush(events, (now + UPDATE_INTERVAL, UPDATE, 0, 0))
    return run


def strategies(seed: int) -> dict[str, Callable[[], Admission]]:
    settings = Settings()

    def jitter() -> Callable[[], float]:
        return random.Random(f"{seed}-jitter").random

    return {
        "no limit": lambda: Admission(),
        f"fixed {CAPACITY // 2} (too low)": lambda: Admission(fixed=CAPACITY // 2),
        f"fixed {CAPACITY} (right)": lambda: Admission(fixed=CAPACITY),
        f"fixed {CAPACITY * 4} (too high)": lambda: Admission(fixed=CAPACITY * 4),
        "aimd": lambda: Admission(policy=Aimd(settings, random=jitter())),
        "gradient": lambda: Admission(policy=Gradient(settings, random=jitter())),
    }


PHASES = ((0.0, DURATION / 3), (DURATION / 3, 2 * DURATION / 3), (2 * DURATION / 3, DURATION))
STEADY = 5.0  # the last seconds of each phase are its steady state


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Figures:
    goodput: float  # successful calls per second over the run
    p50: float
    p99: float  # over every admitted call (a timeout counts as TIMEOUT)
    rejected: float  # share of arrivals rejected
    timeouts: float  # share of arrivals that timed out
    converge: tuple[float, float]  # seconds to settle after the halving and the doubling
    oscillation: float  # largest deviation from the steady mean, as a share of it


def _steady_points(run: Run, start: float, end: float) -> list[tuple[float, int]]:
    return [(t, limit) for t, limit, probing in run.limit_trace if start <= t < end and not probing]


def converge_time(run: Run, change: float, end: float) -> float:
    """Seconds after ``change`` until the limit stays within 20 % of the phase's steady mean."""
    steady = [limit for _, limit in _steady_points(run, end - STEADY, end)]
    if not steady:
        return math.nan
    mean = statistics.fmean(steady)
    settled = change
    for t, limit in _steady_points(run, change, end):
        if abs(limit - mean) > 0.2 * mean:
            settled = t + UPDATE_INTERVAL
    return settled - change


def oscillation(run: Run) -> float:
    worst = 0.0
    for _, end in PHASES:
        steady = [limit for _, limit in _steady_points(run, end - STEADY, end)]
        if steady:
            mean = statistics.fmean(steady)
            worst = max(worst, max(abs(limit - mean) for limit in steady) / mean)
    return worst


def figures(run: Run) -> Figures:
    latencies = [rtt for _, rtt in run.ok_latencies] + [TIMEOUT] * len(run.timeouts)
    return Figures(
        goodput=len(run.ok_latencies) / DURATION,
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
        rejected=run.rejected / max(1, run.arrivals),
        timeouts=len(run.timeouts) / max(1, run.arrivals),
        converge=(
            converge_time(run, PHASES[1][0], PHASES[1][1]),
            converge_time(run, PHASES[2][0], PHASES[2][1]),
        ),
        oscillation=oscillation(run) if run.strategy in ("aimd", "gradient") else 0.0,
    )


def plot(runs: list[Run], path: Path) -> None:
    """Limit and latency over time, one row per run, one file per load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 2, figsize=(12, 2.2 * len(runs)), sharex=True)
    for row, run in zip(axes, runs, strict=True):
        limit_ax, latency_ax = row
        if run.limit_trace and run.limit_trace[0][1] < 10**9:
            limit_ax.plot([t for t, _, _ in run.limit_trace], [x for _, x, _ in run.limit_trace])
        else:
            limit_ax.text(DURATION / 2, CAPACITY * 2, "no limit", ha="center")
        limit_ax.set_ylim(0, CAPACITY * 4.5)
        for start, _ in PHASES[1:]:
            limit_ax.axvline(start, color="grey", linestyle=":")
            latency_ax.axvline(start, color="grey", linestyle=":")
        limit_ax.set_ylabel(run.strategy, fontsize=8)
        ends = [end for end, _ in run.ok_latencies] + run.timeouts
        rtts = [rtt * 1000 for _, rtt in run.ok_latencies] + [TIMEOUT * 1000] * len(run.timeouts)
        latency_ax.scatter(ends[::7], rtts[::7], s=0.3, alpha=0.4)
        latency_ax.set_yscale("log")
        latency_ax.set_ylim(10, 1500)
    axes[0][0].set_title("limit (calls in flight allowed)")
    axes[0][1].set_title("latency of admitted calls, ms (log)")
    axes[-1][0].set_xlabel("virtual seconds")
    axes[-1][1].set_xlabel("virtual seconds")
    fig.suptitle(f"arrivals at {runs[0].load}x capacity; capacity halves at 20 s, back at 40 s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


ADAPTIVE = ("aimd", "gradient")


def unloaded_p99(seed: int) -> float:
    """p99 without a limit at half the capacity's throughput, before the capacity changes."""
    run = simulate("no limit", 0.5, seed, Admission)
    end = PHASES[0][1]
    return percentile([rtt for t, rtt in run.ok_latencies if t < end], 0.99)


def verdicts(load: float, results: dict[str, Figures], reference: float) -> list[str]:
    """Each adaptive strategy against the goals at this load, one line each."""
    best = max(f.goodput for name, f in results.items() if name.startswith("fixed"))
    lines = []
    for name in ADAPTIVE:
        f = results[name]
        checks = {
            f"goodput {f.goodput / best:.0%} of the best fixed limit (>= 90 %)": (
                f.goodput >= 0.9 * best
            ),
            f"p99 {f.p99 / reference:.2f}x unloaded (<= 2x)": f.p99 <= 2 * reference,
            f"settles in {max(f.converge):.1f} s (<= 10 s)": max(f.converge) <= 10.0,
            f"oscillates ±{f.oscillation:.0%} (<= 20 %)": f.oscillation <= 0.2,
        }
        failed = [text for text, ok in checks.items() if not ok]
        verdict = "all goals met" if not failed else "MISSED: " + "; ".join(failed)
        lines.append(f"{load}x {name}: {'; '.join(checks)} -> {verdict}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-state", dest="seed", type=int, default=1)
    parser.add_argument("--plots", type=Path, default=None, help="write one PNG per load here")
    args = parser.parse_args(argv)
    reference = unloaded_p99(args.seed)
    print(
        f"dependency: capacity {CAPACITY} at once, service {SERVICE * 1000:.0f} ms median, "
        f"throughput {CAPACITY / SERVICE:.0f}/s, callers time out after {TIMEOUT:.0f} s; "
        f"unloaded p99 {reference * 1000:.0f} ms; random state {args.seed}\n"
    )
    print(
        "| load | strategy | goodput/s | p50 ms | p99 ms | rejected | timed out "
        "| settles after halving, s | after doubling, s | oscillation |"
    )
    print("|---" * 10 + "|")
    goals = []
    for load in LOADS:
        made = strategies(args.seed).items()
        runs = [simulate(name, load, args.seed, make) for name, make in made]
        results = {run.strategy: figures(run) for run in runs}
        for name, f in results.items():
            adaptive = name in ADAPTIVE
            settle = f"{f.converge[0]:.1f} | {f.converge[1]:.1f}" if adaptive else "- | -"
            osc = f"±{f.oscillation * 100:.0f} %" if adaptive else "-"
            print(
                f"| {load}x | {name} | {f.goodput:.0f} | {f.p50 * 1000:.0f} | "
                f"{f.p99 * 1000:.0f} | {f.rejected * 100:.1f} % | {f.timeouts * 100:.1f} % | "
                f"{settle} | {osc} |"
            )
        if load >= 2.0:
            goals += verdicts(load, results, reference)
        if args.plots is not None:
            args.plots.mkdir(parents=True, exist_ok=True)
            plot(runs, args.plots / f"limit-sim-{load:g}x.png")
    print("\nGoals at 2x and 5x overload:")
    print("\n".join(goals))


if __name__ == "__main__":
    main()

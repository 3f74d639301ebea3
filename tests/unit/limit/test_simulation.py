"""The simulation in benchmarks/ holds the adaptive limits to their goals, reproducibly."""

from __future__ import annotations

import pytest
from benchmarks.sim_limit import (
    ADAPTIVE,
    Figures,
    figures,
    simulate,
    strategies,
    unloaded_p99,
    verdicts,
)

SEED = 7  # not the seed the docs' figures come from: the goals hold for more than one


@pytest.fixture(scope="module")
def reference() -> float:
    return unloaded_p99(SEED)


@pytest.mark.parametrize("load", [2.0, 5.0])
def test_adaptive_limits_meet_their_goals_under_overload(load: float, reference: float) -> None:
    results: dict[str, Figures] = {
        name: figures(simulate(name, load, SEED, make))
        for name, make in strategies(SEED).items()
        if name != "no limit"
    }
    lines = verdicts(load, results, reference)
    assert len(lines) == len(ADAPTIVE)
    for line in lines:
        assert line.endswith("all goals met"), line


def test_without_a_limit_the_dependency_collapses() -> None:
    f = figures(simulate("no limit", 2.0, SEED, strategies(SEED)["no limit"]))
    assert f.goodput < 100  # of 1000/s: nearly every call waits out its timeout
    assert f.timeouts > 0.9


def test_a_seed_reproduces_a_run_exactly() -> None:
    make = strategies(SEED)["gradient"]
    first, second = simulate("gradient", 2.0, SEED, make), simulate("gradient", 2.0, SEED, make)
    assert first.limit_trace == second.limit_trace
    assert first.ok_latencies == second.ok_latencies
    other = simulate("gradient", 2.0, SEED + 1, strategies(SEED + 1)["gradient"])
    assert other.ok_latencies != first.ok_latencies

"""The autoscaler's decision: a pure function of one interval's average utilization.

Kept free of locks, clocks and I/O so it can be tested exhaustively (see the hypothesis
tests) and reasoned about on its own.
"""

from __future__ import annotations

import math

__all__ = ["decide"]

# Floats like 1.0 * 3 / 0.6 land a hair above the integer they mean.
_EPSILON = 1e-9


def _ceil(x: float) -> int:
    return math.ceil(x - _EPSILON)


def decide(
    avg_util: float,
    total: int,
    idle: int,
    min_size: int,
    max_size: int,
    up: float,
    down: float,
) -> int:
    """How many resources to add (> 0) or retire (< 0) after an interval at ``avg_util``.

    Above ``up``: grow until the interval's average load would have been at most ``up`` of
    the pool (at least one more, capped at ``max_size``). Below ``down``: shrink to where that
    load would sit mid-way between the thresholds (hysteresis, so the next interval does not
    scale straight back up), never below ``min_size`` and never more than ``idle``.
    """
    if total < min_size:
        return min_size - total
    load = avg_util * total  # average number of callers that wanted a resource
    if avg_util > up:
        target = max(total + 1, _ceil(load / up))
        return max(0, min(target, max_size) - total)
    if avg_util < down:
        target = max(min_size, _ceil(load / ((up + down) / 2)))
        return -min(max(0, total - target), idle)
    return 0

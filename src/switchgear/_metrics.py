"""Placeholder: replaced by the Metrics implementation (issue 4)."""

from __future__ import annotations

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class Stats:
    """Placeholder."""


class WindowStats:
    """Placeholder."""


class Metrics:
    """Placeholder."""

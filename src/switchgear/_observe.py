"""The narrow interfaces through which breakers and pools report to metrics.

Kept separate so the breaker and the pool never import the metrics module (and the metrics
module imports neither): ``Metrics.attach`` only needs these shapes.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ["PoolObserver"]


class PoolObserver(Protocol):
    """Receives a pool's events. Called outside the pool's lock; must be cheap and not raise."""

    def pool_acquired(self, pool: str, wait: float, cold_start: bool) -> None:
        """A caller got a resource after ``wait`` seconds in ``acquire``.

        ``cold_start`` is true when the caller had to wait for a resource created for it.
        """

    def pool_released(self, pool: str) -> None:
        """A resource went back to the pool (or was closed on release)."""

    def pool_scaled(self, pool: str, direction: Literal["up", "down"], count: int) -> None:
        """The autoscaler added or retired ``count`` resources (cold starts are not scaling)."""

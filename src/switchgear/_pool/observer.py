"""The narrow interfaces through which breakers and pools report to metrics.

Kept separate so the breaker and the pool never import the metrics module (and the metrics
module imports neither): ``Metrics.attach`` only needs these shapes.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ["PoolObserver", "Tally"]


class PoolObserver(Protocol):
    """Receives a pool's events. Called outside the pool's lock; must be cheap and not raise.

    Releases are not reported (sizes are read from the pool when scraped), and neither are
    acquisitions served at once by an idle resource, unless ``every_acquire`` is true: the
    pool counts those in its :attr:`~switchgear.DynamicPool.immediate` tally, for the
    observer to read when scraped.
    """

    @property
    def every_acquire(self) -> bool:
        """Whether to call :meth:`pool_acquired_immediately` for each immediate acquisition."""

    def pool_acquired(self, pool: str, wait: float, cold_start: bool) -> None:
        """A caller got a resource after waiting ``wait`` seconds or creating one.

        ``cold_start`` is true when the caller had to wait for a resource created for it.
        """

    def pool_acquired_immediately(self, pool: str) -> None:
        """A caller got an idle resource at once (only when ``every_acquire``)."""

    def pool_scaled(self, pool: str, direction: Literal["up", "down"], count: int) -> None:
        """The autoscaler added or retired ``count`` resources (cold starts are not scaling)."""


class Tally:
    """A count one component increments on its hot path and another reads when scraped.

    Held by reference, so a reader keeps the count of a component that is gone.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __repr__(self) -> str:
        return f"<Tally {self.count}>"

"""What a pool hands out without a factory (:class:`Slot`) and reports (:class:`PoolStats`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PoolStats", "Slot"]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a :class:`DynamicPool`.

    ``total == in_use + available``; ``in_use`` includes resources being created for a caller.
    ``total_requests`` counts finished ``acquire`` calls, including the ones that failed;
    ``avg_wait_time`` is the mean seconds they spent in ``acquire``. ``scale_up_count`` and
    ``scale_down_count`` count *resources* the autoscaler added and retired (on-demand
    creations are ``cold_starts``, not scale-ups).

    Example::

        s = pool.stats()
        print(f"{s.in_use}/{s.total} busy, {s.waiting} waiting, {s.cold_starts} cold starts")
    """

    total: int
    in_use: int
    available: int
    waiting: int
    total_requests: int
    avg_wait_time: float
    scale_up_count: int
    scale_down_count: int
    cold_starts: int


class Slot:
    """A bulkhead permit: what a pool built without a factory hands out (unique per slot)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<Slot {self.index}>"

"""What is exported under one adaptive limit's name: its gauges, read at scrape time."""

from __future__ import annotations

from typing import Any, NamedTuple

from .held import Held

__all__ = ["LimitGauges", "LimitSeries"]


class LimitGauges(NamedTuple):
    current: int
    in_flight: int
    min_limit: int
    max_limit: int


class LimitSeries(Held):
    """The live adaptive limits of one name (held weakly); the newest alive one reports."""

    __slots__ = ()

    def attach(self, limit: Any) -> bool:
        """Remember ``limit``; True if it was not attached yet."""
        with self.lock:
            return self.hold(limit)

    def limit(self) -> Any | None:
        """The most recently attached limit of this name that is still alive."""
        return self.newest()

    def gauges(self) -> LimitGauges | None:
        """The live limit's figures, read now; None when no limit of this name is alive."""
        limit = self.newest()
        if limit is None:
            return None
        return LimitGauges(
            int(limit.limit), int(limit.in_flight), int(limit.min_limit), int(limit.max_limit)
        )

    def rtts(self) -> tuple[float | None, float | None]:
        """``(baseline, recent)`` round-trip times in seconds, None until measured."""
        limit = self.newest()
        if limit is None:
            return None, None
        return limit.baseline, limit.recent

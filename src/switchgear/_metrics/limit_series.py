"""What is exported under one adaptive limit's name: its gauges, read at scrape time."""

from __future__ import annotations

import threading
import weakref
from typing import Any, NamedTuple

__all__ = ["LimitGauges", "LimitSeries"]


class LimitGauges(NamedTuple):
    current: int
    in_flight: int
    min_limit: int
    max_limit: int


class LimitSeries:
    """The live adaptive limits of one name (held weakly); the newest alive one reports."""

    __slots__ = ("lock", "name", "refs")

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.refs: list[weakref.ref[Any]] = []

    def attach(self, limit: Any) -> bool:
        """Remember ``limit``; True if it was not attached yet."""
        with self.lock:
            live = [ref for ref in self.refs if ref() is not None]
            new = not any(ref() is limit for ref in live)
            if new:
                live.append(weakref.ref(limit))
            self.refs = live
        return new

    def limit(self) -> Any | None:
        """The most recently attached limit of this name that is still alive."""
        for ref in reversed(self.refs):
            limit = ref()
            if limit is not None:
                return limit
        return None

    def forked(self) -> None:
        """In a forked child: a fresh lock (see ``Store.forked``)."""
        self.lock = threading.Lock()

    def gauges(self) -> LimitGauges | None:
        """The live limit's figures, read now; None when no limit of this name is alive."""
        limit = self.limit()
        if limit is None:
            return None
        return LimitGauges(
            int(limit.limit), int(limit.in_flight), int(limit.min_limit), int(limit.max_limit)
        )

    def rtts(self) -> tuple[float | None, float | None]:
        """``(baseline, recent)`` round-trip times in seconds, None until measured."""
        limit = self.limit()
        if limit is None:
            return None, None
        return limit.baseline, limit.recent

"""Stand-ins with the shapes ``Metrics.attach`` relies on, and exposition helpers.

No tests here: shared by the test_metrics* modules (named so it sits with them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import switchgear as sg

Listener = Callable[[sg.BreakerState, sg.BreakerState], object]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class FakeBreaker:
    """A breaker you move by hand; time in state is set by the test."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._state = sg.BreakerState.CLOSED
        self.listeners: list[Listener] = []
        self.durations = dict.fromkeys(sg.BreakerState, 0.0)

    @property
    def state(self) -> sg.BreakerState:
        return self._state

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def state_durations(self) -> dict[sg.BreakerState, float]:
        return dict(self.durations)

    def move(self, new: sg.BreakerState) -> None:
        old, self._state = self._state, new
        for listener in self.listeners:
            listener(old, new)


@dataclass
class FakePoolStats:
    total: int
    in_use: int
    available: int
    waiting: int


class FakePool:
    """A pool whose sizes the test sets and whose events the test fires."""

    def __init__(self, name: str, min_size: int = 1, max_size: int = 8) -> None:
        self.name = name
        self.min_size = min_size
        self.max_size = max_size
        self.sizes = FakePoolStats(total=3, in_use=2, available=1, waiting=4)
        self.observers: list[Any] = []

    def stats(self) -> FakePoolStats:
        return self.sizes

    def add_observer(self, observer: Any) -> None:
        self.observers.append(observer)

    def acquired(self, wait: float, cold_start: bool = False) -> None:
        for observer in self.observers:
            observer.pool_acquired(self.name, wait, cold_start)

    def scaled(self, direction: str, count: int) -> None:
        for observer in self.observers:
            observer.pool_scaled(self.name, direction, count)


def samples(registry: CollectorRegistry) -> Samples:
    """Every sample of the exposition, parsed back: (name, sorted labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def types(registry: CollectorRegistry) -> dict[str, tuple[str, frozenset[str]]]:
    """Family name -> (type, label names of its samples, ``le`` excluded)."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        out[family.name] = (family.type, frozenset(labels))
    return out

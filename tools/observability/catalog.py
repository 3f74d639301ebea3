"""The metric names a rule or a panel may read: the library's family table, and Prometheus's own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from switchgear._metrics.families import FAMILIES
from switchgear._metrics.series import BREAKER_STATES

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str

    def series_names(self) -> tuple[str, ...]:
        """The names Prometheus stores: ``_total`` for counters, three for histograms."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


#: Every family the library exports, from its one family table.
METRICS: tuple[Metric, ...] = tuple(
    Metric(family.sample_name, family.kind, family.labels, family.help)
    for family in FAMILIES.values()
)

#: Series Prometheus itself makes, which rules and panels may also read.
BUILTIN_SERIES: frozenset[str] = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

#: The states of ``switchgear_circuit_state`` and the reasons of ``switchgear_rejected_total``.
CIRCUIT_STATES: tuple[str, ...] = BREAKER_STATES


def known_series_names() -> frozenset[str]:
    """Every series name a query may select, recording rules aside."""
    return frozenset(n for m in METRICS for n in m.series_names()) | BUILTIN_SERIES


def metric(name: str) -> Metric:
    for m in METRICS:
        if m.name == name:
            return m
    raise KeyError(name)

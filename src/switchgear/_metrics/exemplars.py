"""Exemplars: the trace a latency bucket's latest observation belongs to.

When a sampled OpenTelemetry span is current while a call or request is recorded, the
bucket it lands in keeps ``(trace_id, span_id, value, timestamp)``; the OpenMetrics
exposition shows it on that bucket, so a latency panel can open the trace.

The cost when no span is current is one call: :func:`context_probe` finds the context
variable OpenTelemetry keeps its current context in (by looking for a context it has just
attached, through public APIs only) and returns that variable's ``get``. It returns an empty
OpenTelemetry context (falsy) unless something was attached, so the hot path is
``if current(): ...``. Without OpenTelemetry installed there is no probe and the recording
closures are built without the check.

A slot is one list item replaced whole, so readers never see half an exemplar; the last
writer wins, which is what an exemplar is (a recent example, not a statistic).
"""

from __future__ import annotations

import contextvars
import importlib
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

__all__ = [
    "Exemplars",
    "Slot",
    "context_probe",
    "exemplar_labels",
    "sampled_ids",
    "store",
    "traced_recorder",
]

#: ``(trace_id, span_id, value, unix timestamp)``, or None while the bucket has none.
Slot = tuple[int, int, float, float] | None

_lock = threading.Lock()
_probe: list[Callable[[], Any] | None] = []  # found once per process


def _find() -> Callable[[], Any] | None:
    try:
        otel_context = importlib.import_module("opentelemetry.context")
    except ImportError:  # OpenTelemetry is not installed: exemplars cost nothing
        return None
    marked = otel_context.set_value("switchgear-exemplar-probe", True)
    token = otel_context.attach(marked)
    try:
        current = otel_context.get_current()
        found = [
            var
            for var, value in contextvars.copy_context().items()
            if value is current and value is marked
        ]
    finally:
        otel_context.detach(token)
    public: Callable[[], Any] = otel_context.get_current
    if len(found) == 1:
        get = found[0].get
        try:
            empty = contextvars.Context().run(get)
        except LookupError:  # no default: the public call instead
            return public
        if not empty:
            return get
    # Another runtime context (OTEL_PYTHON_CONTEXT): the public call, slower but right.
    return public


def context_probe() -> Callable[[], Any] | None:
    """A call returning OpenTelemetry's current context (falsy when nothing is attached).

    None when OpenTelemetry is not installed.
    """
    if not _probe:
        with _lock:
            if not _probe:
                _probe.append(_find())
    return _probe[0]


def sampled_ids(context: Any) -> tuple[int, int] | None:
    """``(trace_id, span_id)`` of the sampled span in ``context``, else None."""
    from opentelemetry import trace

    span_context = trace.get_current_span(context).get_span_context()
    if span_context.is_valid and span_context.trace_flags.sampled:
        return span_context.trace_id, span_context.span_id
    return None


def store(slots: list[Slot], index: int, context: Any, value: float) -> None:
    """Keep an exemplar in ``slots[index]`` if ``context`` holds a sampled span; never raises."""
    try:
        ids = sampled_ids(context)
    except Exception:  # an unusual context or span: no exemplar rather than an error
        return
    if ids is not None:
        slots[index] = (ids[0], ids[1], value, time.time())


def exemplar_labels(slot: tuple[int, int, float, float]) -> dict[str, str]:
    """The OpenMetrics exemplar labels of a slot: W3C-style hex ids."""
    return {"trace_id": f"{slot[0]:032x}", "span_id": f"{slot[1]:016x}"}


class Exemplars:
    """One slot per bucket of a histogram (``+Inf`` included), and the context probe."""

    __slots__ = ("current", "slots")

    def __init__(self, buckets: int, current: Callable[[], Any]) -> None:
        self.slots: list[Slot] = [None] * buckets
        self.current = current

    @classmethod
    def create(cls, enabled: bool, buckets: int) -> Exemplars | None:
        """Slots for ``buckets`` buckets; None when off or without OpenTelemetry."""
        current = context_probe() if enabled else None
        return None if current is None else cls(buckets, current)

    def observe(self, index: int, value: float) -> None:
        """Keep ``value`` in bucket ``index`` if a sampled span is current."""
        context = self.current()
        if context:
            store(self.slots, index, context, value)


def traced_recorder(
    bounds: tuple[float, ...],
    local: Any,
    new_shard: Callable[[], list[float]],
    slow_at: list[float],
    slow: Callable[[float, float, bool, bool], None],
    exemplars: Exemplars,
) -> Callable[[float, float, bool, bool], None]:
    """A series' ``record_at`` (see :meth:`Series._make_record`) that also keeps exemplars.

    The same steps on the same shard layout, plus one call when no span is current.
    """
    k_sum = len(bounds) + 1
    slots, current, keep = exemplars.slots, exemplars.current, store

    def record_at(now: float, duration: float, success: bool, cold_start: bool) -> None:
        if now >= slow_at[0]:
            slow(now, duration, success, cold_start)
            return
        try:
            shard = local.shard
        except AttributeError:
            shard = new_shard()
        i = bisect_left(bounds, duration)
        shard[i] += 1
        shard[k_sum] += duration
        if not success:
            shard[k_sum + 1] += 1
        if cold_start:
            shard[k_sum + 2] += 1
        context = current()
        if context:  # something is attached: perhaps a sampled span
            keep(slots, i, context, duration)

    return record_at

"""switchgear: circuit breaking, a dynamically sized pool and honest metrics for any callable.

Example::

    import switchgear as sg

    breaker = sg.CircuitBreaker("payments", failure_threshold=5, open_timeout=30.0)
    try:
        receipt = breaker.call(charge, order)
    except sg.CircuitOpenError as exc:
        receipt = queue_for_later(order, retry_after=exc.retry_after)

Every error the library raises on its own derives from :class:`SwitchgearError`
(see :mod:`switchgear._errors` for the whole tree).
"""

from __future__ import annotations

from ._breaker.breaker import CircuitBreaker
from ._breaker.events import TransitionEvent
from ._breaker.protocol import BreakerState
from ._errors import (
    CircuitOpenError,
    LimitExceededError,
    PoolClosedError,
    PoolFullError,
    PoolTimeoutError,
    SwitchgearError,
)
from ._instrument import instrument
from ._limit.limiter import AdaptiveLimit
from ._metrics.archive import mark_process_dead
from ._metrics.facade import LATENCY_BUCKETS, Metrics, Stats, WindowStats
from ._pool.pool import DynamicPool, PoolStats
from ._protected import protected
from .asgi import ASGIMiddleware
from .wsgi import WSGIMiddleware

__all__ = [
    "LATENCY_BUCKETS",
    "ASGIMiddleware",
    "AdaptiveLimit",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "DynamicPool",
    "LimitExceededError",
    "Metrics",
    "PoolClosedError",
    "PoolFullError",
    "PoolStats",
    "PoolTimeoutError",
    "Stats",
    "SwitchgearError",
    "TransitionEvent",
    "WSGIMiddleware",
    "WindowStats",
    "instrument",
    "mark_process_dead",
    "protected",
]

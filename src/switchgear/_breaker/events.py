"""What a breaker says when it changes state: the transition, why, and on what evidence.

A :class:`TransitionEvent` is built only when a transition happens (never per call), under
the breaker's lock, and handed to listeners that take one argument, to the ``switchgear.breaker``
logger, to the metrics (``switchgear_circuit_trips_total{reason}``) and to the status
document's recent transitions. It carries the last failure's type and a truncated message,
not the exception itself, so nothing keeps a failed call's frames alive.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .protocol import BreakerState

__all__ = [
    "REASONS",
    "TRIP_REASONS",
    "TransitionEvent",
    "default_reason",
    "describe_error",
    "describe_status",
    "log_event",
    "takes_event",
]

logger = logging.getLogger("switchgear.breaker")

#: Why a breaker opened (the ``reason`` label of ``switchgear_circuit_trips_total``).
TRIP_REASONS = (
    "consecutive_failures",
    "failure_rate",
    "slow_call_rate",
    "trial_failed",
    "trial_hung",
    "manual",
    "adopted",
)
#: Every reason a transition can have.
REASONS = (*TRIP_REASONS, "open_timeout_elapsed", "trials_succeeded")

_MESSAGE_LIMIT = 200


@dataclass(frozen=True)
class TransitionEvent:
    """One state change of a breaker: from ``old`` to ``new``, when, why, on what evidence.

    ``reason`` is one of :data:`REASONS`; ``evidence`` holds the figures that decided it (for
    ``consecutive_failures``: ``failures`` and ``threshold``; for a rate: ``rate``,
    ``threshold``, ``calls``, ``minimum_calls`` and ``window``). ``error_type`` and
    ``error_message`` describe the last failure seen before a trip (the message truncated);
    ``at`` is the breaker clock's time, ``wall`` the wall clock's (``time.time()``).
    """

    name: str
    old: BreakerState
    new: BreakerState
    reason: str
    at: float
    wall: float = field(default_factory=time.time)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    trace_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """For the status document: labels and figures only, no exception object."""
        return {
            "from": self.old.value,
            "to": self.new.value,
            "reason": self.reason,
            "wall": self.wall,
            "evidence": dict(self.evidence),
            "error_type": self.error_type,
        }


def default_reason(old: BreakerState, new: BreakerState) -> str:
    """The reason of a transition whose decider gave none, from its kind."""
    if new is BreakerState.HALF_OPEN:
        return "open_timeout_elapsed"
    if old is BreakerState.HALF_OPEN and new is BreakerState.CLOSED:
        return "trials_succeeded"
    if old is BreakerState.HALF_OPEN and new is BreakerState.OPEN:
        return "trial_failed"
    if new in (BreakerState.FORCED_OPEN, BreakerState.DISABLED) or old in (
        BreakerState.FORCED_OPEN,
        BreakerState.DISABLED,
    ):
        return "manual"
    return "consecutive_failures"


def describe_error(exc: BaseException) -> tuple[str, str]:
    """The qualified type name and the truncated message of a failure."""
    kind = type(exc)
    name = (
        f"{kind.__module__}.{kind.__qualname__}"
        if kind.__module__ != "builtins"
        else kind.__qualname__
    )
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    if len(message) > _MESSAGE_LIMIT:
        message = message[: _MESSAGE_LIMIT - 1] + "…"
    return name, message


def describe_status(status: object) -> tuple[str, str]:
    """A failed HTTP response as a breaker's last failure: ``("HTTP 503", "...")``."""
    try:
        phrase = f" {HTTPStatus(int(status)).phrase}"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        phrase = ""
    return f"HTTP {status}", f"the app answered {status}{phrase}"


def current_trace_id() -> str | None:
    """The trace id of the OpenTelemetry span current in this thread, if there is one.

    Never imports: without ``opentelemetry.trace`` already loaded no span can be current,
    and an import here (under the breaker's lock, perhaps in a thread racing a fork) could
    block a forked child on the module's import lock forever.
    """
    trace: Any = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}"


def takes_event(listener: Callable[..., object]) -> bool:
    """Whether ``listener`` takes one argument (the event) rather than ``(old, new)``."""
    try:
        parameters = inspect.signature(listener).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    return len(positional) == 1 and not variadic


def log_event(event: TransitionEvent) -> None:
    """One line per transition: a trip at WARNING, the others at INFO; fields as ``extra``."""
    tripped = event.new is BreakerState.OPEN
    if not logger.isEnabledFor(logging.WARNING if tripped else logging.INFO):
        return
    evidence = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in event.evidence.items()
    )
    error = f"; last failure {event.error_type}: {event.error_message}" if event.error_type else ""
    logger.log(
        logging.WARNING if tripped else logging.INFO,
        "switchgear: breaker %r %s -> %s (%s%s)%s",
        event.name,
        event.old.value,
        event.new.value,
        event.reason,
        f": {evidence}" if evidence else "",
        error,
        extra={
            "switchgear_breaker": event.name,
            "switchgear_from": event.old.value,
            "switchgear_to": event.new.value,
            "switchgear_reason": event.reason,
            "switchgear_evidence": dict(event.evidence),
            "switchgear_error_type": event.error_type,
            "switchgear_error_message": event.error_message,
            "switchgear_trace_id": event.trace_id,
        },
    )

"""What the other components rely on when they drive a breaker.

``@protected`` and the middlewares call a breaker through :class:`Admission`: ``admit()``
before the call (a token, or :class:`~switchgear.CircuitOpenError`), ``finish(token,
outcome, duration)`` after it, with the :class:`Outcome` that ``classify(exc)`` gave an
exception. Metrics listen to transitions (:func:`counts_transitions`). Nothing here does I/O
or holds state.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Protocol, TypeVar

__all__ = [
    "COUNTS_TRANSITIONS",
    "FAILURE",
    "NEUTRAL",
    "NEVER_COUNTED",
    "SUCCESS",
    "Admission",
    "BreakerState",
    "ExceptionFilter",
    "Listener",
    "Outcome",
    "counts_transitions",
]

_L = TypeVar("_L", bound=Callable[..., object])


class BreakerState(str, enum.Enum):
    """The state of a :class:`~switchgear.CircuitBreaker`; the value is the metrics label."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


class Outcome(enum.IntEnum):
    """How one finished call counts for its breaker."""

    FAILURE = 0
    SUCCESS = 1
    NEUTRAL = -1  # neither: ignored, cancelled, or the call never ran


SUCCESS = Outcome.SUCCESS
FAILURE = Outcome.FAILURE
NEUTRAL = Outcome.NEUTRAL

# Never a failure, never a success: the caller went away or the interpreter is leaving.
NEVER_COUNTED = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)

ExceptionFilter = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)
#: ``listener(old, new)``, or ``listener(event)`` with a :class:`~switchgear.TransitionEvent`
#: (told apart by how many positional arguments it takes).
Listener = Callable[..., object]

# Set on listeners that *count* transitions (metrics). With shared storage a transition made
# by another process is adopted here: such listeners skip it, so the fleet counts it once.
COUNTS_TRANSITIONS = "_switchgear_counts_transitions"


def counts_transitions(listener: _L) -> _L:
    """Mark ``listener`` as counting transitions: told only of those this process made."""
    setattr(listener, COUNTS_TRANSITIONS, True)
    return listener


class Admission(Protocol):
    """The token protocol a breaker offers to whoever runs calls through it."""

    name: str

    def clock(self) -> float:
        """The breaker's clock: durations passed to :meth:`finish` are measured with it."""

    def admit(self) -> int | None:
        """Admit one call and return its token, or raise ``CircuitOpenError``.

        ``None`` means "admitted, do not record" (DISABLED).
        """

    def closed_token(self) -> int | None:
        """The token a call admitted now would get while CLOSED, else None (no permit taken)."""

    def finish(self, token: int | None, outcome: int, duration: float) -> None:
        """Count the result of a call admitted with ``token``."""

    def classify(self, exc: BaseException) -> Outcome:
        """The outcome of a call that raised ``exc`` (a failure is kept for the next trip)."""

    def note_failure(self, error_type: str, message: str) -> None:
        """Keep a failure classified elsewhere (an HTTP status) for the next trip's event."""

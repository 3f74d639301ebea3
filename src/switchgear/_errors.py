"""The exceptions switchgear raises itself.

Every one derives from :class:`SwitchgearError`, so ``except sg.SwitchgearError`` catches
whatever the library decided on its own, while exceptions raised by *your* callable pass
through unchanged (same object, same traceback)::

    SwitchgearError
    ├── CircuitOpenError     the breaker rejected the call (OPEN, FORCED_OPEN, or
    │                        HALF_OPEN with every trial permit taken)
    ├── PoolFullError        the pool is at max_size and max_waiting callers already wait
    ├── PoolTimeoutError     waited acquire_timeout seconds at max_size (also a TimeoutError)
    ├── LimitExceededError   an adaptive concurrency limit has as many calls in flight as it
    │                        allows now
    └── PoolClosedError      the pool was closed (also a RuntimeError)

``CircuitOpenError``, ``PoolFullError``, ``PoolTimeoutError`` and ``LimitExceededError`` are
*rejections*: the call never ran because a protection refused it. Each
has ``.name`` (the breaker or pool that refused), ``.reason`` (a short fixed string such as
``"circuit_open"`` or ``"pool_full"``) and ``.retry_after`` (seconds). The HTTP middleware
answers one that escapes a route with ``503`` and ``Retry-After`` instead of a ``500``, and
does not count it as a failure of the route.

Invalid arguments to constructors and methods raise the built-in ``ValueError`` or
``TypeError`` with the argument's name in the message; they are programming errors, not
runtime conditions, so they are not ``SwitchgearError``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CircuitOpenError",
    "LimitExceededError",
    "PoolClosedError",
    "PoolFullError",
    "PoolTimeoutError",
    "Rejection",
    "SwitchgearError",
]


class SwitchgearError(Exception):
    """Base class of every error switchgear raises on its own."""


class Rejection(SwitchgearError):
    """A protection refused a call without running it (the base of the rejection errors).

    Not exported: users catch the concrete classes or :class:`SwitchgearError`. Subclasses
    set ``name`` and ``reason``; ``retry_after`` is a hint in seconds.
    """

    name: str
    reason: str
    retry_after: float = 1.0


class CircuitOpenError(Rejection):
    """A circuit breaker rejected a call without running it.

    ``reason`` is ``"circuit_open"`` (OPEN or FORCED_OPEN) or ``"half_open_full"``
    (HALF_OPEN with all trial permits in use); ``retry_after`` is the number of seconds
    after which a call may be admitted again (0 when unknown, e.g. FORCED_OPEN). ``trip`` is
    the :class:`~switchgear.TransitionEvent` that opened the breaker (why it tripped, on
    what evidence, and the last failure's type and message), or None. It is an attribute,
    not ``__cause__``: a rejected call must not keep the failed call's frames alive.

    Example::

        try:
            breaker.call(fetch)
        except sg.CircuitOpenError as exc:
            print(f"{exc.name} is open, retry in {exc.retry_after:.0f}s")
    """

    def __init__(
        self, name: str, retry_after: float, reason: str = "circuit_open", trip: Any = None
    ) -> None:
        self.name = name
        self.retry_after = retry_after
        self.reason = reason
        self.trip = trip
        why = ""
        if trip is not None:
            why = f" ({trip.reason}"
            why += f"; last failure {trip.error_type})" if trip.error_type else ")"
        super().__init__(f"circuit {name!r} is open{why}; retry after {retry_after:.3f}s")

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, float, str, Any]]:
        return (type(self), (self.name, self.retry_after, self.reason, self.trip))


class PoolFullError(Rejection):
    """The pool is at ``max_size`` and ``max_waiting`` callers are already waiting."""

    reason = "pool_full"

    def __init__(self, name: str, waiting: int) -> None:
        self.name = name
        self.waiting = waiting
        super().__init__(f"pool {name!r} is full ({waiting} callers waiting)")

    def __reduce__(self) -> tuple[type[PoolFullError], tuple[str, int]]:
        return (type(self), (self.name, self.waiting))


class PoolTimeoutError(Rejection, TimeoutError):
    """No resource became available within the acquire timeout."""

    reason = "pool_timeout"

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"pool {name!r}: no resource available within {timeout:.3f}s")

    def __reduce__(self) -> tuple[type[PoolTimeoutError], tuple[str, float]]:
        return (type(self), (self.name, self.timeout))


class LimitExceededError(Rejection):
    """An :class:`~switchgear.AdaptiveLimit` already has ``limit`` calls in flight.

    ``retry_after`` is about one recent round trip of the dependency: when a call in flight
    is likely to have finished.
    """

    reason = "limit"

    def __init__(self, name: str, limit: int, retry_after: float) -> None:
        self.name = name
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(f"limit {name!r}: {limit} calls in flight, the most it allows now")

    def __reduce__(self) -> tuple[type[LimitExceededError], tuple[str, int, float]]:
        return (type(self), (self.name, self.limit, self.retry_after))


class PoolClosedError(SwitchgearError, RuntimeError):
    """The pool has been closed; no resource can be acquired from it."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"pool {name!r} is closed")

    def __reduce__(self) -> tuple[type[PoolClosedError], tuple[str]]:
        return (type(self), (self.name,))

"""The public circuit breaker: validated options over a state machine it owns.

The machine (:mod:`.machine`, or :mod:`.shared` with ``storage=``) does the work; this class
checks the options, offers the documented API, and binds the machine's token protocol
(``admit``/``finish``/``classify``/``clock``, see :mod:`.protocol`) as its own attributes so
that ``@protected`` and the middlewares reach the machine without an extra call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, overload

from .. import _validate as v
from .._errors import CircuitOpenError
from .backoff import Backoff
from .events import TransitionEvent
from .machine import DISABLED, FORCED_OPEN, Machine
from .protocol import (
    FAILURE,
    SUCCESS,
    Admission,
    BreakerState,
    ExceptionFilter,
    Listener,
    Outcome,
)
from .shared import SharedMachine
from .storage import Storage

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "ExceptionFilter",
    "storage_degraded",
]

logger = logging.getLogger("switchgear")

T = TypeVar("T")
_V = TypeVar("_V")


def storage_degraded(breaker: object) -> bool | None:
    """Whether a shared breaker is cut off from its store; None when it has no store.

    Only breakers with ``storage=`` have a store that can be unreachable; exporters report
    the flag for them alone (metrics, multiprocess files, the status document).
    """
    if getattr(breaker, "storage", None) is None:
        return None
    return bool(getattr(breaker, "storage_degraded", False))


def _not_callable(fn: object) -> TypeError:
    # A programming error in the caller, not a failure of the dependency: refused before
    # admission, so it never counts against the breaker or takes a trial permit.
    return TypeError(f"fn must be callable, not {type(fn).__name__}")


def _matcher(argname: str, spec: object) -> Callable[[BaseException], bool]:
    """Turn an exception type, a tuple of types, or a predicate into a predicate."""
    if isinstance(spec, type) and issubclass(spec, BaseException):
        exc_type: type[BaseException] = spec
        return lambda exc: isinstance(exc, exc_type)
    if isinstance(spec, tuple):
        for item in spec:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(
                    f"{argname} must be exception types or a predicate; "
                    f"{item!r} is not an exception type"
                )
        types: tuple[type[BaseException], ...] = spec
        if not types:
            return lambda exc: False
        return lambda exc: isinstance(exc, types)
    if isinstance(spec, type):
        # A class is callable, but int(exc) or dict(exc) is no predicate.
        raise TypeError(f"{argname} must be an exception type or a predicate, not {spec!r}")
    if callable(spec):
        predicate: Callable[[BaseException], bool] = spec
        # A predicate that raises counts as a match for failure_on and as no match for
        # ignore_on: the call is a failure, the caller's exception still propagates, and a
        # trial permit is still settled.
        fallback_answer = argname == "failure_on"
        logged: list[bool] = []  # once per breaker option: a broken predicate raises often

        def matches(exc: BaseException) -> bool:
            try:
                return bool(predicate(exc))
            except Exception:
                if not logged:
                    logged.append(True)
                    logger.exception(
                        "switchgear: the %s predicate raised; treated as %s",
                        argname,
                        "a match" if fallback_answer else "no match",
                    )
                return fallback_answer

        return matches
    raise TypeError(
        f"{argname} must be an exception type, a tuple of them, or a predicate, "
        f"not {type(spec).__name__}"
    )


def _backoff(
    open_timeout: float, factor: object, maximum: v.Seconds | None, jitter: object
) -> Backoff:
    """The open-interval rule from the backoff options, each checked and named."""
    if not isinstance(factor, (int, float)) or isinstance(factor, bool):
        raise TypeError(f"backoff_factor must be a number >= 1, not {type(factor).__name__}")
    grow = float(factor)
    if not 1.0 <= grow <= 100.0:
        raise ValueError(f"backoff_factor must be between 1 and 100, got {factor!r}")
    if not isinstance(jitter, (int, float)) or isinstance(jitter, bool):
        raise TypeError(f"backoff_jitter must be a number in [0, 1), not {type(jitter).__name__}")
    if not 0.0 <= float(jitter) < 1.0:
        raise ValueError(f"backoff_jitter must be in [0, 1), got {jitter!r}")
    if maximum is None:
        # Ten times the base: a dependency down for an hour is probed every few minutes.
        longest = min(open_timeout * 10.0, v.MAX_SECONDS) if grow > 1.0 else open_timeout
    else:
        longest = v.seconds("max_open_timeout", maximum)
        if longest < open_timeout:
            raise ValueError(
                f"max_open_timeout ({longest!r} s) must be >= open_timeout ({open_timeout!r} s)"
            )
    return Backoff(open_timeout, grow, longest, float(jitter))


class _Option(Generic[_V]):
    """A breaker option: read from the machine that applies it, never changed afterwards."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _Option[_V]: ...
    @overload
    def __get__(self, obj: CircuitBreaker, objtype: type | None = None) -> _V: ...
    def __get__(self, obj: CircuitBreaker | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj._machine, self.attr)

    def __set__(self, obj: CircuitBreaker, value: object) -> None:
        raise AttributeError(f"{self.attr} is fixed when the breaker is made")


class CircuitBreaker:
    """Stops calling a failing dependency, then probes it carefully until it recovers.

    CLOSED calls run; ``failure_threshold`` consecutive failures (or a failure-rate or
    slow-call-rate rule over the sliding ``window``) trip it OPEN, where calls are rejected with
    :class:`CircuitOpenError` for ``open_timeout`` seconds. Then it is HALF_OPEN: at most
    ``half_open_max_calls`` trial calls run; ``success_threshold`` successes close it, any
    failure reopens it.

    With ``backoff_factor`` above 1, each trial episode that fails in a row multiplies the
    next open interval by it, up to ``max_open_timeout`` (default ten times
    ``open_timeout``); ``backoff_jitter`` takes up to that fraction off each interval at
    random. Closing returns it to ``open_timeout``.

    Example::

        breaker = sg.CircuitBreaker("payments", failure_threshold=5, open_timeout=30.0)

        try:
            receipt = breaker.call(charge, order)
        except sg.CircuitOpenError as exc:
            receipt = defer(order, exc.retry_after)

        receipt = await breaker.call_async(charge_async, order)

    With ``storage=switchgear.redis.RedisStorage(client)`` breakers of the same name in
    every process share their state (see ``docs/redis.md``).
    """

    name: _Option[str] = _Option()
    failure_threshold: _Option[int] = _Option()
    success_threshold: _Option[int] = _Option()
    open_timeout: _Option[float] = _Option()
    backoff_factor: _Option[float] = _Option()
    max_open_timeout: _Option[float] = _Option()
    backoff_jitter: _Option[float] = _Option()
    half_open_max_calls: _Option[int] = _Option()
    failure_rate_threshold: _Option[float | None] = _Option()
    slow_call_duration: _Option[float | None] = _Option()
    slow_call_rate_threshold: _Option[float | None] = _Option()
    window: _Option[float] = _Option()
    minimum_calls: _Option[int] = _Option()

    # The token protocol (see .protocol.Admission), bound from the machine.
    admit: Callable[[], int | None]
    closed_token: Callable[[], int | None]
    finish: Callable[[int | None, int, float], None]
    classify: Callable[[BaseException], Outcome]
    note_failure: Callable[[str, str], None]
    clock: Callable[[], float]

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        success_threshold: int = 3,
        open_timeout: v.Seconds = 30.0,
        backoff_factor: float = 1.0,
        max_open_timeout: v.Seconds | None = None,
        backoff_jitter: float = 0.0,
        half_open_max_calls: int | None = None,
        failure_rate_threshold: float | None = None,
        slow_call_duration: v.Seconds | None = None,
        slow_call_rate_threshold: float | None = None,
        window: v.Seconds = 60.0,
        minimum_calls: int = 10,
        failure_on: ExceptionFilter = Exception,
        ignore_on: ExceptionFilter = (),
        on_state_change: Listener | None = None,
        storage: object = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        failure_threshold = v.integer("failure_threshold", failure_threshold)
        success_threshold = v.integer("success_threshold", success_threshold)
        if half_open_max_calls is None:
            half_open_max_calls = success_threshold
        half_open_max_calls = v.integer("half_open_max_calls", half_open_max_calls)
        if half_open_max_calls < success_threshold:
            raise ValueError(
                f"half_open_max_calls ({half_open_max_calls}) must be >= "
                f"success_threshold ({success_threshold}), or the breaker could never close"
            )
        slow_call_duration = v.optional_seconds("slow_call_duration", slow_call_duration)
        slow_call_rate_threshold = v.optional_ratio(
            "slow_call_rate_threshold", slow_call_rate_threshold
        )
        if slow_call_rate_threshold is not None and slow_call_duration is None:
            raise ValueError("slow_call_rate_threshold needs slow_call_duration to be set")
        open_timeout = v.seconds("open_timeout", open_timeout)
        options: dict[str, Any] = {
            "failure_threshold": failure_threshold,
            "success_threshold": success_threshold,
            "open_timeout": open_timeout,
            "backoff": _backoff(open_timeout, backoff_factor, max_open_timeout, backoff_jitter),
            "half_open_max_calls": half_open_max_calls,
            "failure_rate_threshold": v.optional_ratio(
                "failure_rate_threshold", failure_rate_threshold
            ),
            "slow_call_duration": slow_call_duration,
            "slow_call_rate_threshold": slow_call_rate_threshold,
            "window": v.seconds("window", window),
            "minimum_calls": v.integer("minimum_calls", minimum_calls),
            "is_failure": _matcher("failure_on", failure_on),
            "is_ignored": _matcher("ignore_on", ignore_on),
            "listeners": []
            if on_state_change is None
            else [v.callable_("on_state_change", on_state_change)],
            "clock": v.clock(clock),
        }
        name = v.name("name", name)
        machine: Machine
        if storage is None:
            machine = Machine(name, **options)
        elif isinstance(storage, Storage):
            machine = SharedMachine(storage, name, **options)
        else:
            # ValueError, as this argument has always answered for unsupported values.
            raise ValueError(
                "storage must be None or a switchgear storage such as "
                f"switchgear.redis.RedisStorage, not {type(storage).__name__}"
            )
        self._machine = machine
        self._storage = storage
        self.admit = machine.admit
        self.closed_token = machine.closed_token
        self.finish = machine.finish
        self.classify = machine.classify
        self.note_failure = machine.note_failure
        self.clock = machine.clock

    # -- introspection ---------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; OPEN reads HALF_OPEN as soon as ``open_timeout`` has elapsed.

        With ``storage=``: as last reported by the store (at most ``max_staleness`` old).
        """
        return self._machine.current_state()

    @property
    def current_open_timeout(self) -> float:
        """How long the current (or next) OPEN episode lasts: ``open_timeout`` grown by backoff."""
        self._machine.current_state()
        return self._machine.open_interval

    @property
    def storage(self) -> Storage | None:
        """The shared storage given as ``storage=``, or None for an in-process breaker."""
        return self._storage

    @property
    def storage_degraded(self) -> bool:
        """True while shared storage is unreachable and this breaker decides locally."""
        return self._machine.degraded()

    def transitions(self) -> list[TransitionEvent]:
        """The last transitions (up to ten), oldest first, each with its reason and evidence."""
        return list(self._machine.recent)

    def state_durations(self) -> dict[BreakerState, float]:
        """Seconds spent in each state so far, the current one included (breaker's clock)."""
        return self._machine.durations_now()

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} state={self.state.value}>"

    # -- listeners -------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` after every transition, in order.

        A listener taking two arguments gets ``(old_state, new_state)``; one taking one
        argument gets the :class:`~switchgear.TransitionEvent` (reason, evidence, last
        failure). Listeners run after the breaker's lock is released; one that raises is
        logged and affects neither the call nor the other listeners.
        """
        self._machine.add_listener(v.callable_("listener", listener))

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; a listener that was never added is ignored."""
        self._machine.remove_listener(listener)

    # -- manual control --------------------------------------------------------------------

    def reset(self) -> None:
        """Return to CLOSED and forget every count, from any state (shared: fleet-wide)."""
        self._machine.reset()

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (FORCED_OPEN)."""
        self._machine.set_manual(FORCED_OPEN)

    def disable(self) -> None:
        """Admit every call and count nothing until :meth:`reset` (DISABLED)."""
        self._machine.set_manual(DISABLED)

    # -- calls -----------------------------------------------------------------------------

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` through the breaker; raise CircuitOpenError if rejected."""
        token, start = self._enter(fn)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._leave(token, start, exc)
            raise
        self._leave(token, start, None)
        return result

    async def call_async(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker; cancellation is never a failure."""
        token, start = self._enter(fn)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._leave(token, start, exc)
            raise
        self._leave(token, start, None)
        return result

    def _enter(self, fn: object) -> tuple[int | None, float]:
        if not callable(fn):
            raise _not_callable(fn)
        token = self.admit()
        return token, self.clock()

    def _leave(self, token: int | None, start: float, exc: BaseException | None) -> None:
        outcome = SUCCESS if exc is None else self.classify(exc)
        self.finish(token, outcome, self.clock() - start)

    def allow_request(self) -> bool:
        """Whether a call may run now; in HALF_OPEN this takes one trial permit.

        Pair every ``True`` with one :meth:`record_result`.
        """
        try:
            self.admit()
        except CircuitOpenError:
            return False
        return True

    def record_result(self, success: bool, duration: float | None = None) -> None:
        """Count one result against the *current* state (the token-less form of ``call``).

        In HALF_OPEN it returns the oldest trial permit. ``duration`` (seconds), when given,
        feeds the slow-call rule.
        """
        if not isinstance(success, bool):  # inline: record() is called per result
            raise TypeError(f"success must be a bool, not {type(success).__name__}")
        elapsed = 0.0 if duration is None else v.seconds("duration", duration, allow_zero=True)
        self._machine.record_result(SUCCESS if success else FAILURE, elapsed)


def _offers_the_token_protocol(breaker: CircuitBreaker) -> Admission:
    return breaker  # checked by mypy: the facade satisfies .protocol.Admission

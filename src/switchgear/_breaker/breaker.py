"""The circuit breaker: a small state machine behind one short lock.

Design notes (why, not what):

* The lock is never held across the user's call. Admission and recording each take it
  briefly; in CLOSED with no rate rules, a call that succeeds after a success takes no lock at
  all (``_closed_gen`` is one attribute read, atomic under any Python).
* Every call carries a *token* from admission to its result: the generation of the CLOSED
  state it was admitted in, or a negative trial-permit id in HALF_OPEN. A result whose token
  no longer matches the current generation (admitted while CLOSED, finished after the trip)
  cannot move the state machine.
* Time-based transitions (OPEN -> HALF_OPEN after ``open_timeout``, a hung trial call
  reopening) are applied lazily at their *logical* time, whenever the breaker is looked at, so
  an idle breaker reports HALF_OPEN on time and time-in-state is exact.
* Listeners run after the lock is released, in transition order: transitions are queued under
  the lock and drained by whichever thread holds the (non-blocking) dispatch lock.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar

from .. import _validate as v
from .._errors import CircuitOpenError
from .._window import SlidingWindow
from .protocol import (
    FAILURE,
    NEUTRAL,
    NEVER_COUNTED,
    SUCCESS,
    BreakerState,
    ExceptionFilter,
    Listener,
    Outcome,
    counts_transitions,
)

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "ExceptionFilter",
    "counts_transitions",
    "storage_degraded",
]

logger = logging.getLogger("switchgear")

T = TypeVar("T")
_B = TypeVar("_B", bound="CircuitBreaker")
_L = TypeVar("_L", bound=Callable[..., object])


def storage_degraded(breaker: object) -> bool | None:
    """Whether a shared breaker is cut off from its store; None when it has no store.

    Only breakers with ``storage=`` have a store that can be unreachable; exporters report
    the flag for them alone (metrics, multiprocess files, the status document).
    """
    if getattr(breaker, "_storage", None) is None:
        return None
    return bool(getattr(breaker, "storage_degraded", False))


def _not_callable(fn: object) -> TypeError:
    # A programming error in the caller, not a failure of the dependency: refused before
    # admission, so it never counts against the breaker or takes a trial permit.
    return TypeError(f"fn must be callable, not {type(fn).__name__}")


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED


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


class CircuitBreaker:
    """Stops calling a failing dependency, then probes it carefully until it recovers.

    CLOSED calls run; ``failure_threshold`` consecutive failures (or a failure-rate or
    slow-call-rate rule over the sliding ``window``) trip it OPEN, where calls are rejected with
    :class:`CircuitOpenError` for ``open_timeout`` seconds. Then it is HALF_OPEN: at most
    ``half_open_max_calls`` trial calls run; ``success_threshold`` successes close it, any
    failure reopens it.

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

    def __new__(cls: type[_B], *args: Any, **kwargs: Any) -> _B:
        # storage=None keeps this class and its exact code path; shared state is a subclass.
        if kwargs.get("storage") is not None:
            from .shared import SharedCircuitBreaker

            if cls is CircuitBreaker:
                instance: _B = object.__new__(SharedCircuitBreaker)  # type: ignore[assignment]
                return instance
            if not issubclass(cls, SharedCircuitBreaker):
                raise TypeError(f"storage= is not supported by {cls.__name__}, a subclass")
        return object.__new__(cls)

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        success_threshold: int = 3,
        open_timeout: v.Seconds = 30.0,
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
        self.name = v.name("name", name)
        self.failure_threshold = v.integer("failure_threshold", failure_threshold)
        self.success_threshold = v.integer("success_threshold", success_threshold)
        self.open_timeout = v.seconds("open_timeout", open_timeout)
        if half_open_max_calls is None:
            half_open_max_calls = self.success_threshold
        self.half_open_max_calls = v.integer("half_open_max_calls", half_open_max_calls)
        if self.half_open_max_calls < self.success_threshold:
            raise ValueError(
                f"half_open_max_calls ({self.half_open_max_calls}) must be >= "
                f"success_threshold ({self.success_threshold}), or the breaker could never close"
            )
        self.failure_rate_threshold = v.optional_ratio(
            "failure_rate_threshold", failure_rate_threshold
        )
        self.slow_call_duration = v.optional_seconds("slow_call_duration", slow_call_duration)
        self.slow_call_rate_threshold = v.optional_ratio(
            "slow_call_rate_threshold", slow_call_rate_threshold
        )
        if self.slow_call_rate_threshold is not None and self.slow_call_duration is None:
            raise ValueError("slow_call_rate_threshold needs slow_call_duration to be set")
        self.window = v.seconds("window", window)
        self.minimum_calls = v.integer("minimum_calls", minimum_calls)
        self._is_failure = _matcher("failure_on", failure_on)
        self._is_ignored = _matcher("ignore_on", ignore_on)
        if storage is not None:
            from .storage import Storage

            if not isinstance(storage, Storage):
                # ValueError, as this argument has always answered for unsupported values.
                raise ValueError(
                    "storage must be None or a switchgear storage such as "
                    f"switchgear.redis.RedisStorage, not {type(storage).__name__}"
                )
        self.clock = v.clock(clock)
        self._listeners: list[Listener] = []
        if on_state_change is not None:
            self._listeners.append(v.callable_("on_state_change", on_state_change))

        self._lock = threading.Lock()
        self._dispatch_lock = threading.Lock()
        with _live_lock:
            _live.add(self)
        self._events: deque[tuple[BreakerState, BreakerState]] = deque()
        self._permit_ids = itertools.count(-1, -1)

        now = self.clock()
        self._state = _CLOSED
        self._gen = 0
        # The generation while CLOSED, else None: the lock-free admission check.
        self._closed_gen: int | None = 0
        self._failures = 0  # consecutive failures while CLOSED
        self._opened_at = now
        self._trials: dict[int, float] = {}  # trial permit id -> admission time
        self._trial_successes = 0
        self._entered_at = now
        self._durations = dict.fromkeys(BreakerState, 0.0)
        rate_rules = (
            self.failure_rate_threshold is not None or self.slow_call_rate_threshold is not None
        )
        self._window = SlidingWindow(self.window) if rate_rules else None
        self._slow_after = math.inf if self.slow_call_duration is None else self.slow_call_duration

    # ``__new__`` takes ``*args, **kwargs``; tell help(), IDEs and docs tools the real options.
    __signature__: ClassVar[inspect.Signature] = inspect.signature(__init__).replace(
        parameters=list(inspect.signature(__init__).parameters.values())[1:]
    )

    # -- introspection ---------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; OPEN reads HALF_OPEN as soon as ``open_timeout`` has elapsed."""
        if self._closed_gen is not None:
            return _CLOSED
        with self._lock:
            self._advance(self.clock())
            state = self._state
        self._dispatch()
        return state

    @property
    def storage_degraded(self) -> bool:
        """True while shared storage is unreachable and this breaker decides locally."""
        return False

    def state_durations(self) -> dict[BreakerState, float]:
        """Seconds spent in each state so far, the current one included (breaker's clock)."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            durations = dict(self._durations)
            durations[self._state] += max(now - self._entered_at, 0.0)
        self._dispatch()
        return durations

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} state={self.state.value}>"

    # -- listeners -------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(old_state, new_state)`` after every transition, in order.

        Listeners run after the breaker's lock is released; one that raises is logged and
        affects neither the call nor the other listeners.
        """
        v.callable_("listener", listener)
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; a listener that was never added is ignored."""
        with self._lock:
            self._listeners = [fn for fn in self._listeners if fn is not listener]

    # -- manual control --------------------------------------------------------------------

    def reset(self) -> None:
        """Return to CLOSED and forget every count, from any state (shared: fleet-wide)."""
        self._prepare()
        with self._lock:
            now = self.clock()
            self._refresh(now)
            self._manual("reset")
            if self._state is not _CLOSED:
                self._transition(_CLOSED, now)
            else:
                self._failures = 0
                if self._window is not None:
                    self._window.clear()
        self._dispatch()

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (FORCED_OPEN)."""
        self._set_manual(_FORCED_OPEN)

    def disable(self) -> None:
        """Admit every call and count nothing until :meth:`reset` (DISABLED)."""
        self._set_manual(_DISABLED)

    def _set_manual(self, target: BreakerState) -> None:
        self._prepare()
        with self._lock:
            now = self.clock()
            self._refresh(now)
            self._manual(target.value)
            if self._state is not target:
                self._transition(target, now)
        self._dispatch()

    # -- calls -----------------------------------------------------------------------------

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` through the breaker; raise CircuitOpenError if rejected."""
        if not callable(fn):
            raise _not_callable(fn)
        token = self.admit()
        clock = self.clock
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.finish(token, self.classify(exc), clock() - start)
            raise
        self.finish(token, SUCCESS, clock() - start)
        return result

    async def call_async(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker; cancellation is never a failure."""
        if not callable(fn):
            raise _not_callable(fn)
        token = self.admit()
        clock = self.clock
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.finish(token, self.classify(exc), clock() - start)
            raise
        self.finish(token, SUCCESS, clock() - start)
        return result

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
        if not isinstance(success, bool):
            raise TypeError(f"success must be a bool, not {type(success).__name__}")
        outcome = SUCCESS if success else FAILURE
        elapsed = 0.0 if duration is None else v.seconds("duration", duration, allow_zero=True)
        self._prepare()
        with self._lock:
            now = self.clock()
            self._refresh(now)
            if self._state is _CLOSED:
                self._count_closed(outcome, elapsed, now)
            elif self._state is _HALF_OPEN:
                token = next(iter(self._trials), None)
                if token is not None:
                    del self._trials[token]
                self._settle_trial(token, outcome, now)
        self._dispatch()

    def classify(self, exc: BaseException) -> Outcome:
        """SUCCESS, FAILURE or NEUTRAL for a call that raised ``exc``."""
        if isinstance(exc, NEVER_COUNTED) or self._is_ignored(exc):
            return NEUTRAL
        return FAILURE if self._is_failure(exc) else SUCCESS

    # -- the token protocol (also used by @protected) ---------------------------------------

    def admit(self) -> int | None:
        """Admit one call and return its token, or raise CircuitOpenError.

        ``None`` means "admitted, do not record" (DISABLED).
        """
        gen = self._closed_gen
        if gen is not None:
            return gen
        return self._admit_locked()

    def _admit_locked(self) -> int | None:
        error: CircuitOpenError | None = None
        token: int | None = None
        with self._lock:
            now = self.clock()
            self._refresh(now)
            state = self._state
            if state is _CLOSED:
                token = self._gen
            elif state is _HALF_OPEN:
                token, error = self._take_trial(now)
            elif state is _OPEN:
                error = self._open_rejection(now)
            elif state is _FORCED_OPEN:
                error = CircuitOpenError(self.name, 0.0, "circuit_open")
        if self._events:
            self._dispatch()
        if error is not None:
            raise error
        return token

    # Hooks for shared state (see _shared_breaker). ``_prepare`` runs before the lock is
    # taken; the others with it held. In-process, there is nothing to prepare or to tell,
    # and bringing the state up to date is just applying due transitions.
    def _prepare(self) -> None:
        pass

    def _manual(self, command: str) -> None:
        """A manual change (``reset``, ``forced_open``, ``disabled``) is being made."""

    def _refresh(self, now: float) -> None:
        self._advance(now)

    def _take_trial(self, now: float) -> tuple[int | None, CircuitOpenError | None]:
        """A trial permit in HALF_OPEN, or the rejection when the episode's permits are taken."""
        if self._trial_successes + len(self._trials) < self.half_open_max_calls:
            token = next(self._permit_ids)
            self._trials[token] = now
            return token, None
        oldest = next(iter(self._trials.values()), now)
        retry = min(1.0, max(oldest + self.open_timeout - now, 0.0))
        return None, CircuitOpenError(self.name, retry, "half_open_full")

    def _open_rejection(self, now: float) -> CircuitOpenError:
        retry = max(self._opened_at + self.open_timeout - now, 0.0)
        return CircuitOpenError(self.name, retry, "circuit_open")

    def _settle_trial(self, token: int | None, outcome: int, now: float) -> None:
        """Count the result of the trial call ``token`` (already removed from ``_trials``).

        ``None``: a token-less result (``record_result``) when no trial permit was out.
        """
        self._count_trial(outcome, now)

    def finish(self, token: int | None, outcome: int, duration: float) -> None:
        """Count the result of a call admitted with ``token``."""
        if (
            outcome == SUCCESS
            and token == self._closed_gen
            and not self._failures
            and self._window is None
            and duration <= self._slow_after
        ):
            return  # nothing would change: the hot path takes no lock
        if token is None:
            return
        with self._lock:
            now = self.clock()
            self._refresh(now)
            if token < 0:
                if self._trials.pop(token, None) is not None:
                    self._settle_trial(token, outcome, now)
            elif token == self._gen and self._state is _CLOSED:
                self._count_closed(outcome, duration, now)
        if self._events:
            self._dispatch()

    # -- the state machine (called with the lock held; no I/O) -----------------------------

    def _count_closed(self, outcome: int, duration: float, now: float) -> None:
        if outcome == NEUTRAL:
            return
        failed = outcome == FAILURE
        self._failures = self._failures + 1 if failed else 0
        window = self._window
        if window is not None:
            window.add(
                now, 1.0, 1.0 if failed else 0.0, 1.0 if duration > self._slow_after else 0.0
            )
        if self._failures >= self.failure_threshold or (
            window is not None and self._rate_trips(now)
        ):
            self._transition(_OPEN, now)

    def _rate_trips(self, now: float) -> bool:
        assert self._window is not None
        calls, failures, slow = self._window.totals(now)
        if calls < self.minimum_calls:
            return False
        frt = self.failure_rate_threshold
        srt = self.slow_call_rate_threshold
        return (frt is not None and failures >= frt * calls) or (
            srt is not None and slow >= srt * calls
        )

    def _count_trial(self, outcome: int, now: float) -> None:
        if outcome == FAILURE:
            self._transition(_OPEN, now)
        elif outcome == SUCCESS:
            self._trial_successes += 1
            if self._trial_successes >= self.success_threshold:
                self._transition(_CLOSED, now)

    def _advance(self, now: float) -> None:
        """Apply the time-based transitions due by ``now``, each at its own logical time."""
        while True:
            state = self._state
            if state is _OPEN:
                due = self._opened_at + self.open_timeout
                if now < due:
                    return
                self._transition(_HALF_OPEN, due)
            elif state is _HALF_OPEN and self._trials:
                # A trial call unfinished open_timeout after admission counts as a failure,
                # so a hung probe cannot pin HALF_OPEN.
                due = min(self._trials.values()) + self.open_timeout
                if now < due:
                    return
                self._transition(_OPEN, due)
            else:
                return

    def _transition(self, new: BreakerState, at: float) -> None:
        old = self._state
        self._durations[old] += max(at - self._entered_at, 0.0)
        self._entered_at = at
        self._state = new
        self._gen += 1
        self._failures = 0
        self._trials = {}
        self._trial_successes = 0
        if self._window is not None:
            self._window.clear()
        if new is _OPEN:
            self._opened_at = at
        # Publish the lock-free admission check last, after the state is complete.
        self._closed_gen = self._gen if new is _CLOSED else None
        self._events.append((old, new))

    def _dispatch(self) -> None:
        """Run listeners for queued transitions, in order, outside the breaker's lock."""
        events = self._events
        while events:
            if not self._dispatch_lock.acquire(blocking=False):
                return  # the thread dispatching now re-checks the queue before leaving
            try:
                while events:
                    try:
                        old, new = events.popleft()
                    except IndexError:
                        break
                    self._deliver(old, new)
            finally:
                self._dispatch_lock.release()

    def _deliver(self, old: BreakerState, new: BreakerState) -> None:
        """Tell the listeners of one transition (holding the dispatch lock, in order)."""
        self._call_listeners(self._listeners, old, new)

    def _call_listeners(
        self, listeners: Iterable[Listener], old: BreakerState, new: BreakerState
    ) -> None:
        for listener in listeners:
            try:
                listener(old, new)
            except Exception:
                logger.exception(
                    "switchgear: state-change listener %r of breaker %r failed",
                    listener,
                    self.name,
                )


# -- fork safety -------------------------------------------------------------------------------
# A fork can happen while another thread holds a breaker's lock (gunicorn --preload with
# threads, multiprocessing's fork start method); the child would wait on it forever. Before a
# fork every breaker's state lock is taken, so the child inherits complete states, and the
# child gets fresh locks. The state lock is held only for short bookkeeping, never across user
# code, so taking it here cannot deadlock; the dispatch lock (held while listeners run, which
# may themselves fork) is never taken, only replaced in the child.
_live: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()
_live_lock = threading.Lock()
_held_for_fork: list[threading.Lock] = []


def _before_fork() -> None:
    _live_lock.acquire()
    for breaker in list(_live):
        lock = breaker._lock
        lock.acquire()
        _held_for_fork.append(lock)


def _after_fork_in_parent() -> None:
    while _held_for_fork:
        _held_for_fork.pop().release()
    _live_lock.release()


def _after_fork_in_child() -> None:
    global _live_lock
    _held_for_fork.clear()
    _live_lock = threading.Lock()
    for breaker in list(_live):
        breaker._lock = threading.Lock()
        breaker._dispatch_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )

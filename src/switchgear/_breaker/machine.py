"""The state machine of one circuit breaker, behind one short lock.

Internal: :class:`~switchgear.CircuitBreaker` owns one and binds its hot methods; the
shared-state machine (:mod:`.shared`) extends it. Every member is public-named so the two
can work on it without reaching into private names; none of it is public API.

Why it is shaped like this:

* The lock is never held across the user's call. Admission and recording each take it
  briefly; in CLOSED with no rate rules, a call that succeeds after a success takes no lock at
  all (``closed_gen`` is one attribute read, atomic under any Python).
* Every call carries a *token* from admission to its result: the generation of the CLOSED
  state it was admitted in, or a negative trial-permit id in HALF_OPEN. A result whose token
  no longer matches the current generation (admitted while CLOSED, finished after the trip)
  cannot move the state machine.
* Time-based transitions (OPEN -> HALF_OPEN after ``open_timeout``, a hung trial call
  reopening) are applied lazily at their *logical* time, whenever the breaker is looked at, so
  an idle breaker reports HALF_OPEN on time and time-in-state is exact.
* Listeners run after the lock is released, in transition order: transitions are queued under
  the lock and drained by whichever thread holds the (non-blocking) dispatch lock.
* The methods between "hooks" and "the state machine" are where shared state takes its say;
  called with the lock held, they never do I/O.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from .._errors import CircuitOpenError
from .._window import SlidingWindow
from .backoff import Backoff
from .events import (
    TransitionEvent,
    current_trace_id,
    default_reason,
    describe_error,
    log_event,
    takes_event,
)
from .notify import listener_for, wrapped
from .protocol import (
    COUNTS_TRANSITIONS,
    FAILURE,
    NEUTRAL,
    NEVER_COUNTED,
    SUCCESS,
    BreakerState,
    Listener,
    Outcome,
)

__all__ = ["Audience", "Machine"]

logger = logging.getLogger("switchgear")

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
FORCED_OPEN = BreakerState.FORCED_OPEN
DISABLED = BreakerState.DISABLED


class Audience(enum.IntEnum):
    """Which listeners hear of a queued transition."""

    EVERYONE = 0  # made by this process
    ADOPTED = 1  # made by another process sharing the state: not the ones counting transitions
    COUNT_ONLY = 2  # listeners already know; only the ones counting transitions


Event = tuple[TransitionEvent, Audience]
#: How many transitions a breaker keeps for the status document.
RECENT = 10


class Machine:
    """One breaker's state, its transitions, and its listeners."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        success_threshold: int,
        open_timeout: float,
        backoff: Backoff,
        half_open_max_calls: int,
        failure_rate_threshold: float | None,
        slow_call_duration: float | None,
        slow_call_rate_threshold: float | None,
        window: float,
        minimum_calls: int,
        is_failure: Callable[[BaseException], bool],
        is_ignored: Callable[[BaseException], bool],
        listeners: list[Listener],
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.open_timeout = open_timeout
        self.backoff = backoff
        self.half_open_max_calls = half_open_max_calls
        self.failure_rate_threshold = failure_rate_threshold
        self.slow_call_duration = slow_call_duration
        self.slow_call_rate_threshold = slow_call_rate_threshold
        self.window = window
        self.minimum_calls = minimum_calls
        self.is_failure = is_failure
        self.is_ignored = is_ignored
        self.clock = clock
        self.listeners = [listener_for(fn, name) for fn in listeners]

        self.lock = threading.Lock()
        self.dispatch_lock = threading.Lock()
        with _live_lock:
            _live.add(self)
        self.events: deque[Event] = deque()
        self.recent: deque[TransitionEvent] = deque(maxlen=RECENT)
        self.last_error: tuple[str, str] | None = None  # type and message of the last failure
        self.last_trip: TransitionEvent | None = None
        self.permit_ids = itertools.count(-1, -1)

        now = clock()
        self.state = CLOSED
        self.gen = 0
        # The generation while CLOSED, else None: the lock-free admission check.
        self.closed_gen: int | None = 0
        self.failures = 0  # consecutive failures while CLOSED
        self.opened_at = now
        self.open_interval = open_timeout  # how long this OPEN episode lasts
        self.backoffs = 0  # failed or hung trial episodes in a row
        self.trials: dict[int, float] = {}  # trial permit id -> admission time
        self.trial_successes = 0
        self.entered_at = now
        self.durations = dict.fromkeys(BreakerState, 0.0)
        rate_rules = failure_rate_threshold is not None or slow_call_rate_threshold is not None
        self.sliding = SlidingWindow(window) if rate_rules else None
        self.slow_after = math.inf if slow_call_duration is None else slow_call_duration

    # -- what the facade reads -------------------------------------------------------------

    @property
    def backoff_factor(self) -> float:
        return self.backoff.factor

    @property
    def max_open_timeout(self) -> float:
        return self.backoff.longest

    @property
    def backoff_jitter(self) -> float:
        return self.backoff.jitter

    def current_state(self) -> BreakerState:
        self.prepare()
        if self.closed_gen is not None:
            return CLOSED
        with self.lock:
            self.refresh(self.clock())
            state = self.state
        self.dispatch()
        return state

    def degraded(self) -> bool:
        """Whether shared storage is unreachable and this breaker decides locally."""
        return False

    def durations_now(self) -> dict[BreakerState, float]:
        with self.lock:
            now = self.clock()
            self.advance(now)
            durations = dict(self.durations)
            durations[self.state] += max(now - self.entered_at, 0.0)
        self.dispatch()
        return durations

    def add_listener(self, listener: Listener) -> None:
        with self.lock:
            self.listeners = [*self.listeners, listener_for(listener, self.name)]

    def remove_listener(self, listener: Listener) -> None:
        with self.lock:
            self.listeners = [fn for fn in self.listeners if wrapped(fn) is not listener]

    # -- manual control --------------------------------------------------------------------

    def reset(self) -> None:
        self.prepare()
        with self.lock:
            now = self.clock()
            self.refresh(now)
            self.manual("reset")
            if self.state is not CLOSED:
                self.transition(CLOSED, now)
            else:
                self.failures = 0
                if self.sliding is not None:
                    self.sliding.clear()
        self.dispatch()

    def set_manual(self, target: BreakerState) -> None:
        self.prepare()
        with self.lock:
            now = self.clock()
            self.refresh(now)
            self.manual(target.value)
            if self.state is not target:
                self.transition(target, now)
        self.dispatch()

    # -- the token protocol ----------------------------------------------------------------

    def admit(self) -> int | None:
        """Admit one call and return its token, or raise CircuitOpenError.

        ``None`` means "admitted, do not record" (DISABLED).
        """
        gen = self.closed_gen
        if gen is not None:
            return gen
        return self.admit_locked()

    def closed_token(self) -> int | None:
        """The token of a call admitted now if CLOSED, else None; takes no permit.

        For a result whose breaker is known only after the call (a route matched late).
        """
        return self.closed_gen

    def admit_locked(self) -> int | None:
        self.prepare()
        error: CircuitOpenError | None = None
        token: int | None = None
        with self.lock:
            now = self.clock()
            self.refresh(now)
            state = self.state
            if state is CLOSED:
                token = self.gen
            elif state is HALF_OPEN:
                token, error = self.take_trial(now)
            elif state is OPEN:
                error = self.open_rejection(now)
            elif state is FORCED_OPEN:
                error = CircuitOpenError(self.name, 0.0, "circuit_open", trip=self.last_trip)
        if self.events:
            self.dispatch()
        if error is not None:
            raise error
        return token

    def finish(self, token: int | None, outcome: int, duration: float) -> None:
        """Count the result of a call admitted with ``token``."""
        if (
            outcome == SUCCESS
            and token == self.closed_gen
            and not self.failures
            and self.sliding is None
            and duration <= self.slow_after
        ):
            return  # nothing would change: the hot path takes no lock
        if token is None:
            return
        with self.lock:
            now = self.clock()
            self.refresh(now)
            if token < 0:
                if self.trials.pop(token, None) is not None:
                    self.settle_trial(token, outcome, now)
            elif token == self.gen and self.state is CLOSED:
                self.count_closed(outcome, duration, now)
        if self.events:
            self.dispatch()

    def record_result(self, outcome: int, elapsed: float) -> None:
        """Count one result against the current state (HALF_OPEN: the oldest trial permit)."""
        self.prepare()
        with self.lock:
            now = self.clock()
            self.refresh(now)
            if self.state is CLOSED:
                self.count_closed(outcome, elapsed, now)
            elif self.state is HALF_OPEN:
                token = next(iter(self.trials), None)
                if token is not None:
                    del self.trials[token]
                self.settle_trial(token, outcome, now)
        self.dispatch()

    def classify(self, exc: BaseException) -> Outcome:
        """SUCCESS, FAILURE or NEUTRAL for a call that raised ``exc``.

        A failure's type and message are kept for the next trip's event (exceptions only:
        this is never on the path of a call that returned).
        """
        if isinstance(exc, NEVER_COUNTED) or self.is_ignored(exc):
            return NEUTRAL
        if self.is_failure(exc):
            self.last_error = describe_error(exc)
            return FAILURE
        return SUCCESS

    def note_failure(self, error_type: str, message: str) -> None:
        """Remember a failure counted by ``finish`` but classified elsewhere (an HTTP status)."""
        self.last_error = (error_type, message)

    # -- hooks: where shared state takes its say -------------------------------------------
    # ``prepare`` runs before the lock is taken, the others with it held. In-process there is
    # nothing to prepare or to tell, and bringing the state up to date is applying due
    # transitions.

    def prepare(self) -> None:
        pass

    def manual(self, command: str) -> None:
        """A manual change (``reset``, ``forced_open``, ``disabled``) is being made."""

    def refresh(self, now: float) -> None:
        self.advance(now)

    def take_trial(self, now: float) -> tuple[int | None, CircuitOpenError | None]:
        """A trial permit in HALF_OPEN, or the rejection when the episode's permits are taken."""
        if self.trial_successes + len(self.trials) < self.half_open_max_calls:
            token = next(self.permit_ids)
            self.trials[token] = now
            return token, None
        oldest = next(iter(self.trials.values()), now)
        retry = min(1.0, max(oldest + self.open_timeout - now, 0.0))
        return None, CircuitOpenError(self.name, retry, "half_open_full")

    def open_rejection(self, now: float) -> CircuitOpenError:
        retry = max(self.opened_at + self.open_interval - now, 0.0)
        return CircuitOpenError(self.name, retry, "circuit_open", trip=self.last_trip)

    def settle_trial(self, token: int | None, outcome: int, now: float) -> None:
        """Count the result of the trial call ``token`` (already removed from ``trials``).

        ``None``: a token-less result (``record_result``) when no trial permit was out.
        """
        self.count_trial(outcome, now)

    # -- the state machine (called with the lock held; no I/O) -----------------------------

    def count_closed(self, outcome: int, duration: float, now: float) -> None:
        if outcome == NEUTRAL:
            return
        failed = outcome == FAILURE
        self.failures = self.failures + 1 if failed else 0
        sliding = self.sliding
        if sliding is not None:
            slow = 1.0 if duration > self.slow_after else 0.0
            sliding.add(now, 1.0, 1.0 if failed else 0.0, slow)
        if self.failures >= self.failure_threshold:
            evidence = {"failures": self.failures, "threshold": self.failure_threshold}
            self.transition(OPEN, now, reason="consecutive_failures", evidence=evidence)
        elif sliding is not None:
            tripped = self.rate_trips(now)
            if tripped is not None:
                self.transition(OPEN, now, reason=tripped[0], evidence=tripped[1])

    def rate_trips(self, now: float) -> tuple[str, dict[str, float]] | None:
        """The rate rule that holds now (its reason and evidence), if one does."""
        assert self.sliding is not None
        calls, failures, slow = self.sliding.totals(now)
        if calls < self.minimum_calls:
            return None
        for reason, count, threshold in (
            ("failure_rate", failures, self.failure_rate_threshold),
            ("slow_call_rate", slow, self.slow_call_rate_threshold),
        ):
            if threshold is not None and count >= threshold * calls:
                evidence = {
                    "rate": round(count / calls, 4),
                    "threshold": threshold,
                    "calls": calls,
                    "minimum_calls": self.minimum_calls,
                    "window": self.window,
                }
                return reason, evidence
        return None

    def count_trial(self, outcome: int, now: float) -> None:
        if outcome == FAILURE:
            self.transition(OPEN, now, reason="trial_failed")
        elif outcome == SUCCESS:
            self.trial_successes += 1
            if self.trial_successes >= self.success_threshold:
                evidence = {"successes": self.trial_successes, "threshold": self.success_threshold}
                self.transition(CLOSED, now, reason="trials_succeeded", evidence=evidence)

    def advance(self, now: float) -> None:
        """Apply the time-based transitions due by ``now``, each at its own logical time."""
        while True:
            state = self.state
            if state is OPEN:
                due = self.opened_at + self.open_interval
                if now < due:
                    return
                evidence = {"open_timeout": self.open_interval}
                self.transition(HALF_OPEN, due, reason="open_timeout_elapsed", evidence=evidence)
            elif state is HALF_OPEN and self.trials:
                # A trial call unfinished open_timeout after admission counts as a failure,
                # so a hung probe cannot pin HALF_OPEN.
                due = min(self.trials.values()) + self.open_timeout
                if now < due:
                    return
                evidence = {"open_timeout": self.open_timeout}
                self.transition(OPEN, due, reason="trial_hung", evidence=evidence)
            else:
                return

    def transition(
        self,
        new: BreakerState,
        at: float,
        audience: Audience = Audience.EVERYONE,
        *,
        reason: str | None = None,
        evidence: Mapping[str, float] | None = None,
    ) -> None:
        old = self.state
        self.durations[old] += max(at - self.entered_at, 0.0)
        self.entered_at = at
        self.state = new
        self.gen += 1
        self.failures = 0
        self.trials = {}
        self.trial_successes = 0
        if self.sliding is not None:
            self.sliding.clear()
        if new is OPEN:
            self.opened_at = at
            evidence = self.back_off(old, evidence)
        elif new is CLOSED:
            self.backoffs = 0
            self.open_interval = self.open_timeout
        # Publish the lock-free admission check last, after the state is complete.
        self.closed_gen = self.gen if new is CLOSED else None
        self.queue_event(old, new, at, audience, reason, evidence)

    def back_off(
        self, old: BreakerState, evidence: Mapping[str, float] | None
    ) -> Mapping[str, float] | None:
        """Set this OPEN episode's length; a trip's evidence then says it, if it can vary.

        A trial episode that failed (or hung) lengthens the next one; any other way into OPEN
        starts from ``open_timeout`` again.
        """
        backoff = self.backoff
        self.backoffs = self.backoffs + 1 if old is HALF_OPEN else 0
        self.open_interval = backoff.interval(self.backoffs, backoff.draw())
        if not backoff.active:
            return evidence
        return {**(evidence or {}), "open_for": self.open_interval, "backoffs": self.backoffs}

    def queue_event(
        self,
        old: BreakerState,
        new: BreakerState,
        at: float,
        audience: Audience,
        reason: str | None = None,
        evidence: Mapping[str, float] | None = None,
    ) -> None:
        """Describe one transition for the listeners (lock held; transitions only)."""
        if audience is Audience.ADOPTED and reason is None:
            reason = "adopted"
        error = self.last_error if new is OPEN else None
        event = TransitionEvent(
            self.name,
            old,
            new,
            reason or default_reason(old, new),
            at,
            evidence=evidence or {},
            error_type=error[0] if error else None,
            error_message=error[1] if error else None,
            trace_id=current_trace_id(),
        )
        if audience is not Audience.COUNT_ONLY:
            self.recent.append(event)
            if new is OPEN or new is FORCED_OPEN:
                self.last_trip = event
        self.events.append((event, audience))

    # -- listeners -------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Run listeners for queued transitions, in order, outside the breaker's lock."""
        events = self.events
        while events:
            if not self.dispatch_lock.acquire(blocking=False):
                return  # the thread dispatching now re-checks the queue before leaving
            try:
                while events:
                    try:
                        event, audience = events.popleft()
                    except IndexError:
                        break
                    self.deliver(event, audience)
            finally:
                self.dispatch_lock.release()

    def deliver(self, event: TransitionEvent, audience: Audience) -> None:
        """Tell the listeners of one transition (holding the dispatch lock, in order).

        A listener taking one argument gets the :class:`TransitionEvent`; one taking two
        gets ``(old, new)``. The transition is logged once, by the process that saw it.
        """
        listeners: Iterable[Listener] = self.listeners
        if audience is Audience.ADOPTED:  # made elsewhere: counted by the process that made it
            listeners = [x for x in listeners if not getattr(x, COUNTS_TRANSITIONS, False)]
        elif audience is Audience.COUNT_ONLY:
            listeners = [x for x in listeners if getattr(x, COUNTS_TRANSITIONS, False)]
        else:
            log_event(event)
        if audience is Audience.ADOPTED:
            log_event(event)
        for listener in listeners:
            try:
                if takes_event(listener):
                    listener(event)
                else:
                    listener(event.old, event.new)
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
_live: weakref.WeakSet[Machine] = weakref.WeakSet()
_live_lock = threading.Lock()
_held_for_fork: list[threading.Lock] = []


def _before_fork() -> None:
    _live_lock.acquire()
    for machine in list(_live):
        machine.lock.acquire()
        _held_for_fork.append(machine.lock)


def _after_fork_in_parent() -> None:
    while _held_for_fork:
        _held_for_fork.pop().release()
    _live_lock.release()


def _after_fork_in_child() -> None:
    global _live_lock
    _held_for_fork.clear()
    _live_lock = threading.Lock()
    for machine in list(_live):
        machine.lock = threading.Lock()
        machine.dispatch_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )

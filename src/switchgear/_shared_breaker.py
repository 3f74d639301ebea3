"""A circuit breaker whose state lives in a shared store (``CircuitBreaker(storage=...)``).

``CircuitBreaker(name, storage=s)`` builds this subclass, so a breaker without storage keeps
the in-process class and its exact code path.

How the local state machine and the store divide the work (why, not what):

* The store decides. While *linked* (the store answered within ``max_staleness + timeout``),
  this breaker's state is the last state the store reported: it counts outcomes into an
  :class:`~switchgear._storage.Outbox`, never trips, closes or times out on its own, and the
  storage's worker applies the store's answer. Admission in CLOSED and a success after a
  success still take no lock and do no I/O.
* Each answer says which transitions *that* exchange performed. This breaker applies those
  as its own (all listeners, metrics count them); any other difference to the store's state
  is *adopted*: listeners are told, but listeners that count transitions
  (:func:`~switchgear._breaker.counts_transitions`, i.e. metrics) are not, so the fleet
  counts each transition once.
* Trial permits come from the store, fleet-wide. The caller cannot wait for the network, so
  a call finding no reserved permit is rejected (``half_open_full``, ``retry_after`` about
  one round trip) and the worker reserves one; a reservation nobody uses is returned.
* Not linked (store unreachable, too slow, or an asyncio client not started yet): the
  inherited local state machine runs on from the last known state, with local counts.
  When the store answers again, its state wins; if it lost the state (restart without
  persistence, expiry), this breaker's state seeds it.
* Manual commands (``reset``/``force_open``/``disable``) take effect here at once, are
  counted here, and are sent to the store (again after an outage, until it has them).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ._breaker import (
    _CLOSED,
    _HALF_OPEN,
    _OPEN,
    COUNTS_TRANSITIONS,
    FAILURE,
    NEUTRAL,
    SUCCESS,
    BreakerState,
    CircuitBreaker,
)
from ._errors import CircuitOpenError
from ._storage import TRIAL_RELEASE, Outbox, Reply, Rules, Storage

__all__ = ["SharedCircuitBreaker"]

# Who is told about a queued transition.
_EVERYONE = 0  # made by this process: every listener
_ADOPTED = 1  # made elsewhere: listeners, but not the ones counting transitions
_COUNT_ONLY = 2  # made by this process's exchange while the local view differed: counters only

_FORCED_OPEN = BreakerState.FORCED_OPEN


class SharedCircuitBreaker(CircuitBreaker):
    """A :class:`CircuitBreaker` that trips, probes and closes together with its namesakes."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        storage: Storage = options["storage"]
        self.rules = Rules(
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            open_timeout=self.open_timeout,
            half_open_max_calls=self.half_open_max_calls,
            failure_rate_threshold=self.failure_rate_threshold,
            slow_call_rate_threshold=self.slow_call_rate_threshold,
            window=self.window,
            minimum_calls=self.minimum_calls,
        )
        storage.check_rules(self.rules)
        self._storage = storage
        self._kinds: deque[int] = deque()  # one per queued event, appended before it
        self._adopting = False
        # Attachment is lazy (first call or state read), so a breaker built only to check
        # options never creates keys, and an asyncio worker starts inside the event loop.
        self._attached = False
        self._attach_at = 0.0
        self._linked = False
        self._lost = False
        self._remote_epoch = -1
        self._out = Outbox()
        self._dirty = False  # the outbox has something the store must learn now
        self._due = 0.0  # time.monotonic() of the next exchange
        self._reserved: list[tuple[int, float]] = []  # trial permits held: (id, reserved at)
        self._permit_of: dict[int, int] = {}  # local trial token -> store permit id
        self._want = 0
        self._full = False  # the store has no permit left in this half-open episode
        self._rejected = False  # calls were rejected while OPEN: someone wants to probe
        self._reseed = ""  # a seed of ours went stale in flight: replace it (see _adopt)

    # -- introspection ---------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state, as last reported by the store (at most ``max_staleness`` old)."""
        if not self._attached:
            self._attach()
        if self._closed_gen is not None:
            return _CLOSED
        with self._lock:
            self._check_link()
            self._advance(self._clock())
            state = self._state
        self._dispatch()
        return state

    @property
    def storage_degraded(self) -> bool:
        """True while the store is unreachable or too slow and this breaker decides locally."""
        if self._linked:
            with self._lock:
                self._check_link()
            self._dispatch()
        return self._lost

    # -- calls -----------------------------------------------------------------------------

    def _admit(self) -> int | None:
        if self._attached:
            return super()._admit()
        self._attach()
        return self._admit_locked()

    # The base class's admission and settlement, with the store's say (hooks, lock held).
    def _refresh(self, now: float) -> None:
        self._check_link()
        self._advance(now)

    def _take_trial(self, now: float) -> tuple[int | None, CircuitOpenError | None]:
        if not self._linked:
            return super()._take_trial(now)
        # Linked: a trial needs a permit the fleet granted through the store.
        if self._reserved:
            permit, _ = self._reserved.pop(0)
            token = next(self._permit_ids)
            self._trials[token] = now
            self._permit_of[token] = permit
            return token, None
        if not self._full:
            self._want = min(self._want + 1, self.half_open_max_calls)
            self._dirty = True
            self._storage.wake()
        retry = min(1.0, self._storage.timeout)
        return None, CircuitOpenError(self.name, retry, "half_open_full")

    def _open_rejection(self, now: float) -> CircuitOpenError:
        self._rejected = True  # someone wants to probe: ask the store for permits early
        return super()._open_rejection(now)

    def _settle_trial(self, token: int | None, outcome: int, now: float) -> None:
        permit = None if token is None else self._permit_of.pop(token, None)
        self._count_trial_permit(permit, outcome, now)

    # -- manual control --------------------------------------------------------------------

    def _prepare(self) -> None:
        if not self._attached:
            self._attach()

    def _manual(self, command: str) -> None:
        # Applied here at once by the caller; fleet-wide through the store's next round.
        self._out.command = command
        self._dirty = True
        self._storage.wake()

    # -- counting (lock held, no I/O) -------------------------------------------------------

    def _count_closed(self, outcome: int, duration: float, now: float) -> None:
        if not self._linked:
            super()._count_closed(outcome, duration, now)
            return
        if outcome == NEUTRAL:
            return
        failed = outcome == FAILURE
        out = self._out
        if failed:
            self._failures += 1
            out.streak += 1
            urgent = True
        else:
            urgent = self._failures > 0  # only a known streak is worth a write now
            self._failures = 0
            # Batched outcomes lose their order: keep what each run of failures reached.
            if out.reset:
                out.peak = max(out.peak, out.streak)
            else:
                out.lead = out.streak
            out.reset = True
            out.streak = 0
        window = self._window
        if window is not None:
            slow = duration > self._slow_after
            # Kept locally too, so degraded mode starts from what was seen here.
            window.add(now, 1.0, 1.0 if failed else 0.0, 1.0 if slow else 0.0)
            out.calls += 1
            out.failures += failed
            out.slow += slow
        if urgent:
            self._dirty = True
            self._storage.wake()

    def _count_trial_permit(self, permit: int | None, outcome: int, now: float) -> None:
        if not self._linked:
            self._count_trial(outcome, now)
        elif permit is not None:
            self._out.trials.append((permit, outcome))
            if outcome == SUCCESS:
                self._trial_successes += 1
            self._dirty = True
            self._storage.wake()
        # Linked, but admitted while degraded: the store never granted it; nothing to count.

    def _advance(self, now: float) -> None:
        if not self._linked:
            super()._advance(now)
        # Linked: the store applies time-based transitions, by its own clock.

    def _transition(self, new: BreakerState, at: float) -> None:
        self._kinds.append(_ADOPTED if self._adopting else _EVERYONE)
        super()._transition(new, at)
        # Counts, permits and requests belonged to the episode that just ended.
        self._permit_of.clear()
        self._reserved.clear()
        self._want = 0
        self._full = False
        out = self._out
        out.reset = False
        out.streak = out.lead = out.peak = out.calls = out.failures = out.slow = 0

    def _count_only(self, old: BreakerState, new: BreakerState) -> None:
        self._kinds.append(_COUNT_ONLY)
        self._events.append((old, new))

    def _deliver(self, old: BreakerState, new: BreakerState) -> None:
        # Each queued transition has its kind, queued alongside it and popped in step.
        kind = self._kinds.popleft()
        if kind == _ADOPTED:  # made elsewhere: counted by the process that made it
            listeners = [x for x in self._listeners if not getattr(x, COUNTS_TRANSITIONS, False)]
        elif kind == _COUNT_ONLY:  # only the counters need it
            listeners = [x for x in self._listeners if getattr(x, COUNTS_TRANSITIONS, False)]
        else:
            listeners = list(self._listeners)
        self._call_listeners(listeners, old, new)

    # -- link health -------------------------------------------------------------------------

    def _attach(self) -> None:
        now = time.monotonic()
        if now < self._attach_at:
            return
        self._attach_at = now + self._storage.max_staleness
        if self._storage.attach(self):
            # Counted outcomes wait in the outbox for the first exchange: deciding locally
            # now would be overruled by the store's state a moment later.
            with self._lock:
                if not self._lost:
                    self._linked = True
            self._attached = True

    def _storage_stopped(self) -> None:
        self._attach_at = 0.0
        self._attached = False

    def _check_link(self) -> bool:
        """Whether the store decides (lock held); drops to local state if it went silent."""
        if self._linked and self._storage.stale(time.monotonic()):
            self._go_local(self._clock())
        return self._linked

    def _go_local(self, now: float) -> None:
        self._linked = False
        self._lost = True
        self._out = Outbox(command=self._out.command)
        self._reserved.clear()
        self._want = 0
        # The local machine takes over from here: apply a trip its counts already call for.
        if self._state is _CLOSED and self._failures >= self.failure_threshold:
            self._transition(_OPEN, now)

    # -- the storage side (called by the storage's worker) ----------------------------------

    def _storage_due(self) -> float:
        return 0.0 if self._dirty else self._due

    def _storage_outbox(self, now: float, refresh: float) -> Outbox | None:
        with self._lock:
            if self._reserved:
                # A reserved permit nobody used goes back before it could look like a hung
                # trial call (which reopens the breaker after open_timeout). Not sooner: a
                # process whose calls come further apart than the hold would have each call
                # rejected while its permit went back, and never close.
                hold = self.open_timeout / 2
                keep = []
                for permit, since in self._reserved:
                    if now - since >= hold:
                        self._out.trials.append((permit, TRIAL_RELEASE))
                        self._dirty = True
                    else:
                        keep.append((permit, since))
                self._reserved = keep
            if not self._dirty and now < self._due:
                return None
            out = self._out
            self._out = Outbox()
            self._dirty = False
            out.epoch = self._remote_epoch
            out.reseed_from, self._reseed = self._reseed, ""
            out.seed_state = self._state.value
            out.seed_age = max(self._clock() - self._entered_at, 0.0)
            if self._linked and self._state is _HALF_OPEN:
                out.acquire = self._want
            self._want = 0
            self._due = now + refresh
            return out

    def _storage_reply(self, outbox: Outbox, reply: Reply, now: float, refresh: float) -> None:
        with self._lock:
            local_now = self._clock()
            self._linked = True
            self._lost = False
            was = self._state
            self._adopt(outbox, reply, local_now)
            self._remote_epoch = reply.epoch
            due = now + refresh
            if reply.state == "open":
                # Ask again right when the store will move it to HALF_OPEN.
                due = min(due, now + max(self.open_timeout - reply.age, 0.0) + 0.002)
            self._due = due
            if self._state is _HALF_OPEN and reply.state == "half_open":
                self._reserved.extend((permit, now) for permit in reply.granted)
                self._full = reply.successes + reply.permits >= self.half_open_max_calls
                if was is not _HALF_OPEN and self._rejected and not self._full:
                    self._want = 1  # calls were waiting: reserve a probe right away
                    self._dirty = True
                self._rejected = False
            elif reply.granted:
                self._out.trials.extend((permit, TRIAL_RELEASE) for permit in reply.granted)
                self._dirty = True
        self._dispatch()

    def _adopt(self, outbox: Outbox, reply: Reply, now: float) -> None:
        """Bring the local state to the store's (lock held)."""
        moves = [(BreakerState(a), BreakerState(b)) for a, b in reply.moves]
        if self._out.command:
            # A manual command is on its way; its state stands until the store has it.
            for old, new in moves:
                self._count_only(old, new)
            return
        before = BreakerState(reply.before)
        final = BreakerState(reply.state)
        if reply.seeded and not moves and self._state is not final:
            # Our own seed, already out of date (the local machine moved on while the
            # request was in flight): keep the local state and replace the seed.
            self._reseed = reply.state
            self._dirty = True
            return
        if moves and self._state is not before and not outbox.command:
            self._adopt_state(before, now)
        for old, new in moves:
            if self._state is old:
                self._transition(new, now)
            else:
                self._count_only(old, new)
        if self._state is not final:
            self._adopt_state(final, max(now - reply.age, self._entered_at))
        if final is _OPEN:
            self._opened_at = now - reply.age
        elif final is _CLOSED:
            pending = self._out
            self._failures = pending.streak if pending.reset else reply.failures + pending.streak
        elif final is _HALF_OPEN:
            self._trial_successes = reply.successes

    def _adopt_state(self, state: BreakerState, at: float) -> None:
        self._adopting = True
        try:
            self._transition(state, at)
        finally:
            self._adopting = False

    def _storage_lost(self, outbox: Outbox | None, retry_at: float) -> None:
        with self._lock:
            now = self._clock()
            self._due = retry_at
            if outbox is not None and outbox.command and not self._out.command:
                self._out.command = outbox.command  # resent when the store answers again
            if self._linked:
                self._go_local(now)
                # Trial results the store never saw: the local machine decides them.
                if outbox is not None:
                    for _, outcome in outbox.trials:
                        if outcome != TRIAL_RELEASE and self._state is _HALF_OPEN:
                            self._count_trial(outcome, now)
        self._dispatch()

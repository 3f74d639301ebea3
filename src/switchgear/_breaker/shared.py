"""A circuit breaker whose state lives in a shared store (``CircuitBreaker(storage=...)``).

``CircuitBreaker(name, storage=s)`` builds this subclass, so a breaker without storage keeps
the in-process class and its exact code path.

How the local state machine and the store divide the work (why, not what):

* The store decides. While *linked* (the store answered within ``max_staleness + timeout``),
  this breaker's state is the last state the store reported: it counts outcomes into an
  :class:`~switchgear._breaker.storage.Outbox`, never closes or times out on its own, and the
  storage's worker applies the store's answer. Admission in CLOSED and a success after a
  success still take no lock and do no I/O.
* One exception, so that sharing never protects less than a breaker alone: when this
  process's own consecutive failures, on top of the fleet streak it last saw, reach
  ``failure_threshold``, it trips here at once and proposes the trip to the store as a
  compare-and-set on the epoch it saw. Listeners hear of the trip at once; the counters only
  when the store reports that this proposal made the fleet transition, so two processes
  tripping together count one trip. The loser adopts the winner's episode.
* Each answer says which transitions *that* exchange performed. This breaker applies those
  as its own (all listeners, metrics count them); any other difference to the store's state
  is *adopted*: listeners are told, but listeners that count transitions
  (:func:`~switchgear._breaker.breaker.counts_transitions`, i.e. metrics) are not, so the fleet
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

from .._errors import CircuitOpenError
from .breaker import _CLOSED, _HALF_OPEN, _OPEN, CircuitBreaker
from .protocol import COUNTS_TRANSITIONS, FAILURE, NEUTRAL, SUCCESS, BreakerState
from .storage import TRIAL_RELEASE, Outbox, Reply, Rules, Storage

__all__ = ["SharedCircuitBreaker"]

# Who is told about a queued transition.
_EVERYONE = 0  # made by this process: every listener
_ADOPTED = 1  # made elsewhere: listeners, but not the ones counting transitions
_COUNT_ONLY = 2  # made by this process's exchange while the local view differed: counters only

# A local trip's proposal to the store.
_NO_TRIP = 0
_TRIP_PENDING = 1  # waiting for the next exchange
_TRIP_SENT = 2  # in the exchange in flight
_TRIP_COUNTED = 3  # in flight, but the link was lost and the trip was counted locally

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
        self._trip = _NO_TRIP
        self._trip_epoch = -1  # the store epoch a local trip's evidence belongs to

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
            self._advance(self.clock())
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

    def admit(self) -> int | None:
        # The base class's lock-free CLOSED check, written out: a super() call here would
        # cost a shared breaker's every call more than the check itself.
        gen = self._closed_gen
        if gen is not None and self._attached:
            return gen
        if not self._attached:
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
            self._push()
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
        if self._trip == _TRIP_PENDING:
            # Superseded before it was proposed; the local trip is this process's alone.
            self._trip = _NO_TRIP
            self._count_only(_CLOSED, _OPEN)
        self._out.command = command
        self._push()

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
            if self._failures >= self.failure_threshold:
                self._trip_locally(now)
                return
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
            self._push()
        else:
            self._storage.hold(self)  # batched, but still owed to the store

    def _push(self) -> None:
        """The outbox has something the store must learn now (lock held)."""
        self._dirty = True
        self._storage.hold(self)
        self._storage.wake()

    def _trip_locally(self, now: float) -> None:
        """Trip on this process's evidence now; the store hears of it in the next exchange."""
        self._trip = _TRIP_PENDING
        self._trip_epoch = self._remote_epoch
        self._adopt_state(_OPEN, now)  # counted once the store says this process made it
        self._push()

    def _count_trial_permit(self, permit: int | None, outcome: int, now: float) -> None:
        if not self._linked:
            self._count_trial(outcome, now)
        elif permit is not None:
            self._out.trials.append((permit, outcome))
            if outcome == SUCCESS:
                self._trial_successes += 1
            self._push()
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
            self._go_local(self.clock())
        return self._linked

    def _go_local(self, now: float) -> None:
        self._linked = False
        self._lost = True
        if self._trip != _NO_TRIP:
            # The store may never hear of the local trip: from now on it is a local decision,
            # counted here. An answer still in flight must not count it again.
            self._count_only(_CLOSED, _OPEN)
            self._trip = _TRIP_COUNTED if self._trip == _TRIP_SENT else _NO_TRIP
        self._out = Outbox(command=self._out.command)
        self._reserved.clear()
        self._want = 0
        # The local machine takes over from here: apply a trip its counts already call for.
        if self._state is _CLOSED and self._failures >= self.failure_threshold:
            self._transition(_OPEN, now)

    # -- the storage side (called by the storage's worker) ----------------------------------

    def _storage_due(self) -> float:
        return 0.0 if self._dirty else self._due

    def _storage_pending(self) -> bool:
        return self._dirty or self._trip == _TRIP_PENDING or self._out.pending()

    def _storage_unsent(self, outbox: Outbox) -> None:
        with self._lock:
            outbox.trip_epoch = None  # a pending trip is proposed again from ``_trip``
            self._out = outbox.then(self._out)
            if self._trip == _TRIP_SENT:
                self._trip = _TRIP_PENDING
            if outbox.reseed_from and not self._reseed:
                self._reseed = outbox.reseed_from
            self._push()

    def _storage_forked(self) -> None:
        """In a forked child: what is pending belongs to the parent, which still sends it."""
        with self._lock:
            self._out = Outbox()
            self._dirty = False
            self._reserved.clear()
            self._permit_of.clear()
            self._trials.clear()
            self._want = 0
            self._trip = _NO_TRIP
            self._due = 0.0

    def _storage_outbox(self, now: float, refresh: float, force: bool = False) -> Outbox | None:
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
            if not self._dirty and now < self._due and not (force and self._out.pending()):
                return None
            out = self._out
            self._out = Outbox()
            self._dirty = False
            out.epoch = self._remote_epoch
            out.reseed_from, self._reseed = self._reseed, ""
            if self._trip == _TRIP_PENDING:
                self._trip = _TRIP_SENT
                out.trip_epoch = self._trip_epoch
                # A store with no state yet starts CLOSED, so the proposal is its first trip.
                out.seed_state, out.seed_age = _CLOSED.value, 0.0
            else:
                out.seed_state = self._state.value
                out.seed_age = max(self.clock() - self._entered_at, 0.0)
            if self._linked and self._state is _HALF_OPEN:
                out.acquire = self._want
            self._want = 0
            self._due = now + refresh
            return out

    def _storage_reply(self, outbox: Outbox, reply: Reply, now: float, refresh: float) -> None:
        with self._lock:
            local_now = self.clock()
            self._linked = True
            self._lost = False
            was = self._state
            self._remote_epoch = reply.epoch
            self._adopt(outbox, reply, local_now)
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
        answers_trip = outbox.trip_epoch is not None
        counted_locally = answers_trip and self._trip == _TRIP_COUNTED
        if answers_trip:
            self._trip = _NO_TRIP
        if self._out.command or self._trip == _TRIP_PENDING:
            # A manual command or a local trip is on its way; the local state stands until
            # the store has it.
            for old, new in moves:
                self._count_only(old, new)
            return
        before = BreakerState(reply.before)
        final = BreakerState(reply.state)
        if answers_trip:
            # The answer to this process's trip proposal. Its listeners already know of the
            # trip; what the exchange did in the store is counted here (closed -> open if the
            # proposal made the fleet trip), and the store's state is adopted below.
            for i, (old, new) in enumerate(moves):
                if not (counted_locally and i == 0 and new is _OPEN):
                    self._count_only(old, new)
        elif reply.seeded and not moves and self._state is not final:
            # Our own seed, already out of date (the local machine moved on while the
            # request was in flight): keep the local state and replace the seed.
            self._reseed = reply.state
            self._dirty = True
            return
        else:
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
            if self._failures >= self.failure_threshold:
                # The fleet's streak plus failures seen here since reach the threshold.
                self._trip_locally(now)
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
            now = self.clock()
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

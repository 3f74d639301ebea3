"""The state machine of a breaker whose state lives in a shared store.

``CircuitBreaker(name, storage=s)`` owns one of these instead of the plain
:class:`~switchgear._breaker.machine.Machine`, so a breaker without storage keeps the
in-process machine and its exact code path.

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
  (:func:`~switchgear._breaker.protocol.counts_transitions`, i.e. metrics) are not, so the fleet
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

import enum
import time
from collections.abc import Mapping
from typing import Any

from .._errors import CircuitOpenError
from .machine import CLOSED, HALF_OPEN, OPEN, Audience, Machine
from .protocol import FAILURE, NEUTRAL, SUCCESS, BreakerState
from .storage import TRIAL_RELEASE, Outbox, Reply, Rules, Storage

__all__ = ["SharedMachine"]


class Trip(enum.IntEnum):
    """Where a local trip's proposal to the store stands."""

    NONE = 0
    PENDING = 1  # waiting for the next exchange
    SENT = 2  # in the exchange in flight
    COUNTED = 3  # in flight, but the link was lost and the trip was counted locally


class SharedMachine(Machine):
    """A breaker's state machine that trips, probes and closes together with its namesakes.

    The storage's worker drives it through the ``storage_*`` methods (the storage's
    :class:`~switchgear._breaker.storage.Peer` protocol).
    """

    def __init__(self, storage: Storage, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.rules = Rules(
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            open_timeout=self.open_timeout,
            half_open_max_calls=self.half_open_max_calls,
            failure_rate_threshold=self.failure_rate_threshold,
            slow_call_rate_threshold=self.slow_call_rate_threshold,
            window=self.window,
            minimum_calls=self.minimum_calls,
            backoff_factor=self.backoff.factor,
            max_open_timeout=self.backoff.longest,
            backoff_jitter=self.backoff.jitter,
        )
        storage.check_rules(self.rules)
        self.storage = storage
        # Attachment is lazy (first call or state read), so a breaker built only to check
        # options never creates keys, and an asyncio worker starts inside the event loop.
        self.attached = False
        self.attach_at = 0.0
        self.linked = False
        self.lost = False
        self.remote_epoch = -1
        self.out = Outbox()
        self.dirty = False  # the outbox has something the store must learn now
        self.due_at = 0.0  # time.monotonic() of the next exchange
        self.sent_at = 0.0  # time.monotonic() of the last exchange taken (batched writes wait)
        # Announcements not yet answered by an exchange taken after them: the highest epoch
        # announced, and whether anything at all may have changed (a new subscription).
        self.heard = -1
        self.recheck = False
        self.reserved: list[tuple[int, float]] = []  # trial permits held: (id, reserved at)
        self.permit_of: dict[int, int] = {}  # local trial token -> store permit id
        self.want = 0
        self.full = False  # the store has no permit left in this half-open episode
        self.rejected = False  # calls were rejected while OPEN: someone wants to probe
        self.reseed = ""  # a seed of ours went stale in flight: replace it (see adopt)
        self.trip = Trip.NONE
        self.trip_epoch = -1  # the store epoch a local trip's evidence belongs to

    def degraded(self) -> bool:
        """True while the store is unreachable or too slow and this breaker decides locally."""
        if self.linked:
            with self.lock:
                self.check_link()
            self.dispatch()
        return self.lost

    # -- calls -----------------------------------------------------------------------------

    def admit(self) -> int | None:
        # The base class's lock-free CLOSED check, written out: a super() call here would
        # cost a shared breaker's every call more than the check itself.
        gen = self.closed_gen
        if gen is not None and self.attached:
            return gen
        return self.admit_locked()  # attaches first (prepare)

    # The base class's admission and settlement, with the store's say (hooks, lock held).
    def refresh(self, now: float) -> None:
        self.check_link()
        self.advance(now)

    def take_trial(self, now: float) -> tuple[int | None, CircuitOpenError | None]:
        if not self.linked:
            return super().take_trial(now)
        # Linked: a trial needs a permit the fleet granted through the store.
        if self.reserved:
            permit, _ = self.reserved.pop(0)
            token = next(self.permit_ids)
            self.trials[token] = now
            self.permit_of[token] = permit
            return token, None
        if not self.full:
            self.want = min(self.want + 1, self.half_open_max_calls)
            self.push()
        retry = min(1.0, self.storage.timeout)
        return None, CircuitOpenError(self.name, retry, "half_open_full")

    def open_rejection(self, now: float) -> CircuitOpenError:
        self.rejected = True  # someone wants to probe: ask the store for permits early
        return super().open_rejection(now)

    def settle_trial(self, token: int | None, outcome: int, now: float) -> None:
        permit = None if token is None else self.permit_of.pop(token, None)
        self.count_trial_permit(permit, outcome, now)

    # -- manual control --------------------------------------------------------------------

    def prepare(self) -> None:
        if not self.attached:
            self.attach()

    def manual(self, command: str) -> None:
        # Applied here at once by the caller; fleet-wide through the store's next round.
        if self.trip == Trip.PENDING:
            # Superseded before it was proposed; the local trip is this process's alone.
            self.trip = Trip.NONE
            self.count_only(CLOSED, OPEN)
        self.out.command = command
        self.push()

    # -- counting (lock held, no I/O) -------------------------------------------------------

    def count_closed(self, outcome: int, duration: float, now: float) -> None:
        if not self.linked:
            super().count_closed(outcome, duration, now)
            return
        if outcome == NEUTRAL:
            return
        failed = outcome == FAILURE
        out = self.out
        if failed:
            self.failures += 1
            if self.failures >= self.failure_threshold:
                self.trip_locally(now)
                return
            out.streak += 1
            urgent = True
        else:
            urgent = self.failures > 0  # only a known streak is worth a write now
            self.failures = 0
            # Batched outcomes lose their order: keep what each run of failures reached.
            if out.reset:
                out.peak = max(out.peak, out.streak)
            else:
                out.lead = out.streak
            out.reset = True
            out.streak = 0
        window = self.sliding
        if window is not None:
            slow = duration > self.slow_after
            # Kept locally too, so degraded mode starts from what was seen here.
            window.add(now, 1.0, 1.0 if failed else 0.0, 1.0 if slow else 0.0)
            out.calls += 1
            out.failures += failed
            out.slow += slow
        if urgent:
            self.push()
        else:
            self.storage.hold(self)  # batched, but still owed to the store

    def push(self) -> None:
        """The outbox has something the store must learn now (lock held)."""
        self.dirty = True
        self.storage.hold(self)
        self.storage.wake()

    def trip_locally(self, now: float) -> None:
        """Trip on this process's evidence now; the store hears of it in the next exchange."""
        self.trip = Trip.PENDING
        self.trip_epoch = self.remote_epoch
        evidence = {"failures": self.failures, "threshold": self.failure_threshold}
        # Told to every listener but the counting ones: counted once the store says this
        # process made the fleet's trip.
        self.transition(
            OPEN, now, Audience.ADOPTED, reason="consecutive_failures", evidence=evidence
        )
        self.push()

    def count_trial_permit(self, permit: int | None, outcome: int, now: float) -> None:
        if not self.linked:
            self.count_trial(outcome, now)
        elif permit is not None:
            self.out.trials.append((permit, outcome))
            if outcome == SUCCESS:
                self.trial_successes += 1
            self.push()
        # Linked, but admitted while degraded: the store never granted it; nothing to count.

    def advance(self, now: float) -> None:
        if not self.linked:
            super().advance(now)
        # Linked: the store applies time-based transitions, by its own clock.

    def transition(
        self,
        new: BreakerState,
        at: float,
        audience: Audience = Audience.EVERYONE,
        *,
        reason: str | None = None,
        evidence: Mapping[str, float] | None = None,
    ) -> None:
        super().transition(new, at, audience, reason=reason, evidence=evidence)
        # Counts, permits and requests belonged to the episode that just ended.
        self.permit_of.clear()
        self.reserved.clear()
        self.want = 0
        self.full = False
        out = self.out
        out.reset = False
        out.streak = out.lead = out.peak = out.calls = out.failures = out.slow = 0

    def count_only(self, old: BreakerState, new: BreakerState) -> None:
        """Queue a transition for the listeners that count transitions only."""
        self.queue_event(old, new, self.clock(), Audience.COUNT_ONLY)

    # -- link health -------------------------------------------------------------------------

    def attach(self) -> None:
        now = time.monotonic()
        if now < self.attach_at:
            return
        self.attach_at = now + self.storage.max_staleness
        if self.storage.attach(self):
            # Counted outcomes wait in the outbox for the first exchange: deciding locally
            # now would be overruled by the store's state a moment later.
            with self.lock:
                if not self.lost:
                    self.linked = True
            self.attached = True

    def storage_stopped(self) -> None:
        self.attach_at = 0.0
        self.attached = False

    def check_link(self) -> bool:
        """Whether the store decides (lock held); drops to local state if it went silent."""
        if self.linked and self.storage.stale(time.monotonic()):
            self.go_local(self.clock())
            # Ask the store again soon: with changes pushed, an idle breaker's next refresh
            # could be an hour away, and it would decide alone all that time.
            self.due_at = 0.0
        return self.linked

    def go_local(self, now: float) -> None:
        self.linked = False
        self.lost = True
        if self.trip != Trip.NONE:
            # The store may never hear of the local trip: from now on it is a local decision,
            # counted here. An answer still in flight must not count it again.
            self.count_only(CLOSED, OPEN)
            self.trip = Trip.COUNTED if self.trip == Trip.SENT else Trip.NONE
        self.out = Outbox(command=self.out.command)
        self.reserved.clear()
        self.want = 0
        # The local machine takes over from here: apply a trip its counts already call for.
        if self.state is CLOSED and self.failures >= self.failure_threshold:
            self.transition(OPEN, now)

    # -- the storage side (called by the storage's worker) ----------------------------------

    def storage_due(self) -> float:
        if self.dirty:
            return 0.0
        if self.out.has_counts():
            # Batched outcomes go within max_staleness / 2, whatever the refresh interval.
            return min(self.due_at, self.sent_at + self.storage.max_staleness / 2)
        return self.due_at

    def storage_invalidate(self, epoch: int | None) -> None:
        with self.lock:
            if epoch is None:
                self.recheck = True
            elif epoch > self.remote_epoch:
                self.heard = max(self.heard, epoch)
            else:
                return  # already seen (this process's own transition, usually)
            self.due_at = 0.0

    def storage_pending(self) -> bool:
        return self.dirty or self.trip == Trip.PENDING or self.out.pending()

    def storage_unsent(self, outbox: Outbox) -> None:
        with self.lock:
            outbox.trip_epoch = None  # a pending trip is proposed again from ``trip``
            self.out = outbox.then(self.out)
            if self.trip == Trip.SENT:
                self.trip = Trip.PENDING
            if outbox.reseed_from and not self.reseed:
                self.reseed = outbox.reseed_from
            self.push()

    def storage_forked(self) -> None:
        """In a forked child: what is pending belongs to the parent, which still sends it."""
        with self.lock:
            self.out = Outbox()
            self.dirty = False
            self.reserved.clear()
            self.permit_of.clear()
            self.trials.clear()
            self.want = 0
            self.trip = Trip.NONE
            self.due_at = 0.0
            self.heard, self.recheck = -1, False

    def storage_outbox(self, now: float, refresh: float, force: bool = False) -> Outbox | None:
        with self.lock:
            if self.reserved:
                # A reserved permit nobody used goes back before it could look like a hung
                # trial call (which reopens the breaker after open_timeout). Not sooner: a
                # process whose calls come further apart than the hold would have each call
                # rejected while its permit went back, and never close.
                hold = self.open_timeout / 2
                keep = []
                for permit, since in self.reserved:
                    if now - since >= hold:
                        self.out.trials.append((permit, TRIAL_RELEASE))
                        self.dirty = True
                    else:
                        keep.append((permit, since))
                self.reserved = keep
            if now < self.storage_due() and not (force and self.out.pending()):
                return None
            out = self.out
            self.out = Outbox()
            self.dirty = False
            out.epoch = self.remote_epoch
            out.reseed_from, self.reseed = self.reseed, ""
            out.jitter_draw = self.backoff.draw()
            if self.trip == Trip.PENDING:
                self.trip = Trip.SENT
                out.trip_epoch = self.trip_epoch
                # A store with no state yet starts CLOSED, so the proposal is its first trip.
                out.seed_state, out.seed_age = CLOSED.value, 0.0
            else:
                out.seed_state = self.state.value
                out.seed_age = max(self.clock() - self.entered_at, 0.0)
            if self.linked and self.state is HALF_OPEN:
                out.acquire = self.want
            self.want = 0
            self.due_at = now + refresh
            self.sent_at = now
            self.recheck = False  # this exchange reads the state after the announcement
            return out

    def storage_reply(self, outbox: Outbox, reply: Reply, now: float, refresh: float) -> None:
        with self.lock:
            local_now = self.clock()
            self.linked = True
            self.lost = False
            was = self.state
            self.remote_epoch = reply.epoch
            self.adopt(outbox, reply, local_now)
            due = now + refresh
            if reply.state == "open":
                # Ask again right when the store will move it to HALF_OPEN (the store applies
                # time-based transitions only when asked, so nobody announces this one).
                due = min(due, now + max(reply.interval - reply.age, 0.0) + 0.002)
            elif reply.state == "half_open":
                # A trial permit unreturned for open_timeout reopens it, also only when asked.
                due = min(due, now + self.open_timeout)
            if self.recheck or self.heard > reply.epoch:
                due = 0.0  # announced while this exchange was in flight: ask again
            self.due_at = due
            if self.state is HALF_OPEN and reply.state == "half_open":
                self.reserved.extend((permit, now) for permit in reply.granted)
                self.full = reply.successes + reply.permits >= self.half_open_max_calls
                if was is not HALF_OPEN and self.rejected and not self.full:
                    self.want = 1  # calls were waiting: reserve a probe right away
                    self.dirty = True
                self.rejected = False
            elif reply.granted:
                self.out.trials.extend((permit, TRIAL_RELEASE) for permit in reply.granted)
                self.dirty = True
        self.dispatch()

    def adopt(self, outbox: Outbox, reply: Reply, now: float) -> None:
        """Bring the local state to the store's (lock held)."""
        moves = [(BreakerState(a), BreakerState(b)) for a, b in reply.moves]
        answers_trip = outbox.trip_epoch is not None
        counted_locally = answers_trip and self.trip == Trip.COUNTED
        if answers_trip:
            self.trip = Trip.NONE
        if self.out.command or self.trip == Trip.PENDING:
            # A manual command or a local trip is on its way; the local state stands until
            # the store has it.
            for old, new in moves:
                self.count_only(old, new)
            return
        before = BreakerState(reply.before)
        final = BreakerState(reply.state)
        if answers_trip:
            # The answer to this process's trip proposal. Its listeners already know of the
            # trip; what the exchange did in the store is counted here (closed -> open if the
            # proposal made the fleet trip), and the store's state is adopted below.
            for i, (old, new) in enumerate(moves):
                if not (counted_locally and i == 0 and new is OPEN):
                    self.count_only(old, new)
        elif reply.seeded and not moves and self.state is not final:
            # Our own seed, already out of date (the local machine moved on while the
            # request was in flight): keep the local state and replace the seed.
            self.reseed = reply.state
            self.dirty = True
            return
        else:
            if moves and self.state is not before and not outbox.command:
                self.adopt_state(before, now)
            for old, new in moves:
                if self.state is old:
                    self.transition(new, now)
                else:
                    self.count_only(old, new)
        if self.state is not final:
            self.adopt_state(final, max(now - reply.age, self.entered_at))
        if final is OPEN:
            self.opened_at = now - reply.age
        if final is OPEN or final is HALF_OPEN:
            # The fleet's backoff, decided by the store, replaces what this process reckoned.
            self.open_interval = reply.interval
            self.backoffs = reply.backoffs
        elif final is CLOSED:
            pending = self.out
            self.failures = pending.streak if pending.reset else reply.failures + pending.streak
            if self.failures >= self.failure_threshold:
                # The fleet's streak plus failures seen here since reach the threshold.
                self.trip_locally(now)
        elif final is HALF_OPEN:
            self.trial_successes = reply.successes

    def adopt_state(self, state: BreakerState, at: float) -> None:
        self.transition(state, at, Audience.ADOPTED)

    def storage_lost(self, outbox: Outbox | None, retry_at: float) -> None:
        with self.lock:
            now = self.clock()
            self.due_at = retry_at
            if outbox is not None and outbox.command and not self.out.command:
                self.out.command = outbox.command  # resent when the store answers again
            if self.linked:
                self.go_local(now)
                # Trial results the store never saw: the local machine decides them.
                if outbox is not None:
                    for _, outcome in outbox.trials:
                        if outcome != TRIAL_RELEASE and self.state is HALF_OPEN:
                            self.count_trial(outcome, now)
        self.dispatch()

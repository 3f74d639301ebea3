"""The contract between a breaker and a shared store of its state, free of I/O.

A breaker with ``storage=`` never touches the network on the caller's thread. Under its own
short lock it writes what the store must learn into an :class:`Outbox` (counted outcomes,
trial results, permit requests, a manual command) and pokes the storage. The storage's
worker (a thread, or an asyncio task for an asyncio client) collects the outboxes, performs
one atomic exchange per breaker with the store, and hands each breaker back a
:class:`Reply` describing the shared state, which the breaker adopts.

Why it is shaped like this:

* Callers are never blocked by the store, whatever it does: the worst a dead or slow store
  can do is delay the worker, and a breaker that has not heard from the store for
  ``max_staleness + timeout`` seconds decides on its own local state (degraded mode).
* The store applies every transition itself (atomically) and reports which transitions
  *this* exchange performed, so exactly one process counts each transition.
* Changes are pushed, not polled. The store announces every transition on a channel the
  storage listens to; a breaker named in an announcement is refreshed at once. While the
  channel is up an idle breaker costs the store nothing: one cheap liveness check per
  storage every ``max_staleness / 2`` proves the store and the channel alive. While it is
  down (or with push turned off) every breaker refreshes itself every ``max_staleness / 2``
  as the bound on what it may miss, and a fresh subscription refreshes every breaker once,
  for what was announced while nobody listened.
* This module holds the scheduling and health bookkeeping common to every driver
  (:class:`Storage`); drivers only move bytes (:mod:`switchgear._redis.thread_driver`,
  :mod:`switchgear._redis.task_driver`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .. import _validate as v

__all__ = ["Outbox", "Peer", "Reply", "Rules", "Storage"]

logger = logging.getLogger("switchgear")

# Outcomes as the store sees them (same values as the breaker's SUCCESS/FAILURE/NEUTRAL).
TRIAL_SUCCESS = 1
TRIAL_FAILURE = 0
TRIAL_RELEASE = -1

#: How often an idle breaker refreshes while changes are pushed: only so that its keys do not
#: expire while the process still uses it; an announcement refreshes it at once.
PUSHED_REFRESH = 3600.0


@dataclass(frozen=True)
class Rules:
    """The parts of a breaker's configuration the store needs to decide transitions."""

    failure_threshold: int
    success_threshold: int
    open_timeout: float
    half_open_max_calls: int
    failure_rate_threshold: float | None
    slow_call_rate_threshold: float | None
    window: float
    minimum_calls: int
    backoff_factor: float = 1.0
    max_open_timeout: float = 0.0  # the longest open interval (open_timeout without backoff)
    backoff_jitter: float = 0.0


@dataclass
class Outbox:
    """What one breaker tells the store in one exchange (all fields optional)."""

    epoch: int = -1  # the store generation the closed counts below belong to
    seed_state: str = "closed"  # used only if the store has no state for this breaker
    seed_age: float = 0.0  # seconds the seed state has lasted
    reset: bool = False  # a success happened: the consecutive-failure streak restarts
    streak: int = 0  # failures since the last success (or since the last exchange)
    lead: int = 0  # with reset: the failures before the first success (they extend the store's)
    peak: int = 0  # with reset: the longest run of failures between two successes
    calls: int = 0  # rate rules: calls, failures and slow calls since the last exchange
    failures: int = 0
    slow: int = 0
    trials: list[tuple[int, int]] = field(default_factory=list)  # (permit, outcome)
    acquire: int = 0  # trial permits wanted
    command: str = ""  # "", "reset", "forced_open" or "disabled"
    reseed_from: str = ""  # replace a seed this breaker wrote that is now out of date
    jitter_draw: float = 0.0  # the fraction to take off an open interval the store starts
    # A trip made locally, proposed to the store: the epoch its evidence belongs to.
    trip_epoch: int | None = None

    def has_counts(self) -> bool:
        return self.reset or self.streak > 0 or self.calls > 0

    def pending(self) -> bool:
        """Whether the store has anything to learn from this outbox."""
        return bool(self.has_counts() or self.trials or self.command or self.trip_epoch is not None)

    def then(self, later: Outbox) -> Outbox:
        """One outbox saying what this one and then ``later`` say (an unsent one, resent).

        The failure runs keep their meaning: the run before the first success extends the
        store's streak, and the longest complete run between successes is kept.
        """
        merged = Outbox(
            epoch=self.epoch,
            calls=self.calls + later.calls,
            failures=self.failures + later.failures,
            slow=self.slow + later.slow,
            trials=[*self.trials, *later.trials],
            acquire=max(self.acquire, later.acquire),
            command=later.command or self.command,
            reseed_from=self.reseed_from or later.reseed_from,
        )
        if not later.reset:
            merged.reset, merged.lead, merged.peak = self.reset, self.lead, self.peak
            merged.streak = self.streak + later.streak
        else:
            merged.reset, merged.streak = True, later.streak
            if self.reset:
                merged.lead = self.lead
                merged.peak = max(self.peak, later.peak, self.streak + later.lead)
            else:
                merged.lead, merged.peak = self.streak + later.lead, later.peak
        return merged


@dataclass(frozen=True)
class Reply:
    """The shared state after one exchange, and what the exchange itself did."""

    before: str  # state found by the exchange, before it changed anything
    state: str
    epoch: int  # increases by one on every transition in the store
    age: float  # seconds spent in ``state`` so far (store clock)
    failures: int  # consecutive failures (CLOSED)
    successes: int  # trial successes (HALF_OPEN)
    permits: int  # trial permits outstanding fleet-wide
    moves: tuple[tuple[str, str], ...]  # automatic transitions this exchange performed
    granted: tuple[int, ...]  # trial permits granted to this breaker
    seeded: bool = False  # this exchange created the shared state from the outbox's seed
    backoffs: int = 0  # failed trial episodes in a row (the fleet's open backoff)
    interval: float = 0.0  # seconds the current (or next) OPEN episode lasts, store-decided


class Peer(Protocol):
    """The breaker side of the contract (:class:`~switchgear._breaker.shared.SharedMachine`)."""

    name: str

    @property
    def rules(self) -> Rules: ...

    def storage_outbox(self, now: float, refresh: float, force: bool = False) -> Outbox | None:
        """The writes to send now, or None if nothing is pending and no refresh is due.

        ``force``: anything pending goes now, batched successes included (a flush).
        """

    def storage_reply(self, outbox: Outbox, reply: Reply, now: float, refresh: float) -> None:
        """Adopt the shared state of ``reply`` (the answer to ``outbox``)."""

    def storage_lost(self, outbox: Outbox | None, retry_at: float) -> None:
        """The store did not answer: decide locally until it does."""

    def storage_due(self) -> float:
        """When (``time.monotonic``) this breaker next needs an exchange."""

    def storage_stopped(self) -> None:
        """The worker stopped with its event loop: attach again on the next call."""

    def storage_forked(self) -> None:
        """In a forked child: drop what is pending (the parent sends it)."""

    def storage_pending(self) -> bool:
        """Whether the store still has something to learn from this breaker."""

    def storage_unsent(self, outbox: Outbox) -> None:
        """``outbox`` was taken for an exchange that never ran: send it with the next one."""

    def storage_invalidate(self, epoch: int | None) -> None:
        """The store announced a transition to ``epoch`` (None: anything may have changed):
        refresh in the next round unless this breaker has already seen it."""


class Driver(Protocol):
    """Moves a storage's exchanges to and from the store (a thread, or an asyncio task).

    It asks its :class:`Ledger` what to send (``plan``) and tells it what came back
    (``delivered``/``failed``/``unsent``); everything else about scheduling and health is the
    ledger's.
    """

    def start(self) -> bool:
        """Make sure the worker (and the listener of announcements) runs; False if it
        cannot (yet)."""

    def wake(self) -> None:
        """Ask the worker for a round soon; never blocks, safe under a breaker's lock."""

    def flush(self, timeout: float) -> bool:
        """Send everything pending now; wait at most ``timeout``; True if the store has it."""

    async def aflush(self, timeout: float) -> bool:
        """:meth:`flush` without blocking the running event loop."""

    def close(self) -> None:
        """Flush (bounded by the storage's timeout), then stop the worker."""

    async def aclose(self) -> None:
        """:meth:`close`, awaiting the worker."""

    def exit(self, timeout: float) -> None:
        """At interpreter exit: flush within ``timeout``, never waiting longer."""

    def forked(self) -> None:
        """In a forked child: fresh locks and events; restart the worker if needed."""


class Ledger:
    """A storage's breakers, the plan of each round, and the store's health. No I/O.

    Holds the breakers (weakly), plans each round of exchanges, and tracks the store's
    health: ``degraded`` is True from the first failed exchange (or a worker stuck for longer
    than ``max_staleness + timeout``) until an exchange succeeds again; the change is logged
    once each way, never per call.
    """

    def __init__(self, owner: Storage, *, max_staleness: float, timeout: float, key_ttl: float):
        self.owner = owner  # named in log lines; kept alive while breakers have unsent writes
        self.max_staleness = max_staleness
        self.timeout = timeout
        self.key_ttl = key_ttl
        # A breaker that has not heard from the store for this long decides locally.
        self.stale_after = max_staleness + timeout
        self.peers: list[weakref.ref[Peer]] = []
        self.peers_lock = threading.Lock()
        # Whether the store's announcements reach this storage right now (see pushed_up).
        self.push_up = False
        self.degraded = False
        self.degraded_lock = threading.Lock()  # so each outage is logged exactly once
        # What is failing: "" the whole store, or the name of one node of a cluster (its
        # breakers decide locally; the others share state as usual).
        self.failing: set[str] = set()
        self.last_ok = time.monotonic()
        # Breakers with writes not yet sent, held strongly: a breaker dropped by its code
        # right after failing (the end of a request, an invocation, a job) still has them sent.
        self.held: set[Peer] = set()

    def add(self, peer: Peer) -> None:
        with self.peers_lock:
            if not any(ref() is peer for ref in self.peers):
                self.peers = [ref for ref in self.peers if ref() is not None]
                self.peers.append(weakref.ref(peer))
                if not self.degraded:
                    # A new breaker trusts the store until its first answer is overdue.
                    self.last_ok = time.monotonic()

    def hold(self, peer: Peer) -> None:
        """Two set insertions, no lock: safe under a breaker's lock."""
        self.held.add(peer)
        _busy.add(self.owner)

    def stale(self, now: float) -> bool:
        if now - self.last_ok <= self.stale_after:
            return False
        self.set_degraded(f"no answer from the store for {now - self.last_ok:.3f}s")
        return True

    def live_peers(self) -> list[Peer]:
        peers = []
        for ref in self.peers:
            peer = ref()
            if peer is not None:
                peers.append(peer)
        return peers

    def forked(self) -> None:
        """In a forked child: fresh locks, and the breakers drop the parent's pending writes."""
        self.peers_lock = threading.Lock()
        self.degraded_lock = threading.Lock()
        self.push_up = False  # the parent's subscription is not this process's
        for peer in self.live_peers():
            peer.storage_forked()
        self.held = set()
        _busy.discard(self.owner)

    def refresh(self) -> float:
        """Seconds between an idle breaker's refreshes: long while changes are pushed."""
        if self.push_up:
            return min(PUSHED_REFRESH, self.key_ttl / 2)
        return self.max_staleness / 2

    # -- announcements (the driver's listener) ---------------------------------------------

    def pushed_up(self, up: bool) -> None:
        """The listener (re)subscribed, or lost its subscription.

        Either way every breaker refreshes once: after a subscription, for what was
        announced while nobody listened; after losing one, to start polling from fresh
        state. The driver wakes its worker after this.
        """
        self.push_up = up
        for peer in self.live_peers():
            peer.storage_invalidate(None)

    def announced(self, name: str, epoch: int) -> bool:
        """The store announced a transition of ``name``; True if a breaker here must refresh."""
        hit = False
        for peer in self.live_peers():
            if peer.name == name:
                peer.storage_invalidate(epoch)
                hit = True
        return hit

    def alive(self) -> None:
        """The listener's liveness check came back: the store answers, nothing was missed."""
        self.last_ok = time.monotonic()

    def plan(self, now: float, force: bool = False) -> list[tuple[Peer, Outbox]]:
        """The exchanges of one round: every breaker with pending writes or a due refresh.

        ``force``: anything pending goes now, batched successes included (a flush).
        """
        refresh = self.refresh()
        work = []
        held, self.held = self.held, set()
        for peer in self.live_peers():
            outbox = peer.storage_outbox(now, refresh, force)
            if outbox is not None:
                work.append((peer, outbox))
            if peer.storage_pending():
                self.held.add(peer)
        del held  # what was held is now in ``work`` or held again
        if not self.held:
            _busy.discard(self.owner)
            if self.held:  # a breaker was held again meanwhile
                _busy.add(self.owner)
        return work

    def delivered(
        self, work: Sequence[tuple[Peer, Outbox]], replies: Sequence[Reply], where: str = ""
    ) -> None:
        """An exchange (with the store, or with the cluster node ``where``) came back."""
        now = time.monotonic()
        self.last_ok = now
        with self.degraded_lock:
            was = self.degraded
            self.failing.discard(where)
            self.failing.discard("")  # whatever answered, the store as a whole is reachable
            self.degraded = bool(self.failing)
            recovered = was and not self.degraded
        if recovered:
            logger.info("switchgear: %s is reachable again; breakers share state again", self.owner)
        refresh = self.refresh()
        for (peer, outbox), reply in zip(work, replies, strict=True):
            peer.storage_reply(outbox, reply, now, refresh)

    def unsent(self, work: Sequence[tuple[Peer, Outbox]]) -> None:
        """The round was abandoned before its exchange (its event loop is ending)."""
        for peer, outbox in work:
            peer.storage_unsent(outbox)

    def failed(
        self,
        work: Sequence[tuple[Peer, Outbox]],
        error: BaseException,
        where: str = "",
        members: Sequence[Peer] | None = None,
    ) -> None:
        """An exchange failed: with the whole store, or with the cluster node ``where``.

        ``members`` are the breakers that depend on what failed (default: all of them).
        """
        self.set_degraded(f"{type(error).__name__}: {error}", where)
        retry_at = time.monotonic() + self.max_staleness
        sent = {id(peer): outbox for peer, outbox in work}
        for peer in self.live_peers() if members is None else members:
            peer.storage_lost(sent.get(id(peer)), retry_at)

    def stopped(self) -> None:
        """The worker stopped with its event loop: the breakers attach again on their next call."""
        for peer in self.live_peers():
            peer.storage_stopped()

    def set_degraded(self, reason: str, where: str = "") -> None:
        with self.degraded_lock:
            first = where not in self.failing
            self.failing.add(where)
            self.degraded = True
        if first:
            # Once per outage (of the store, or of one cluster node), not per call or retry.
            logger.warning(
                "switchgear: %s%s is unreachable or too slow (%s); %s use local state "
                "until it answers again",
                f"node {where} of " if where else "",
                self.owner,
                reason,
                "its breakers" if where else "breakers",
            )

    def next_wait(self, now: float) -> float:
        """Seconds until the earliest breaker needs an exchange (at most max_staleness / 2)."""
        wait = self.max_staleness / 2
        for peer in self.live_peers():
            wait = min(wait, peer.storage_due() - now)
        return max(wait, 0.001)


class Storage:
    """Where breakers with ``storage=`` keep their state: a :class:`Ledger` and a driver.

    Concrete storages (``switchgear.redis.RedisStorage``) pass the factory of their driver.
    """

    def __init__(
        self,
        driver: Callable[[Ledger], Driver],
        *,
        max_staleness: float,
        timeout: float,
        key_ttl: float,
    ) -> None:
        self.max_staleness = max_staleness
        self.timeout = timeout
        self.key_ttl = key_ttl
        self.stale_after = max_staleness + timeout
        self._ledger = Ledger(self, max_staleness=max_staleness, timeout=timeout, key_ttl=key_ttl)
        self._driver = driver(self._ledger)
        _live.add(self)

    # -- used by breakers -----------------------------------------------------------------

    def attach(self, peer: Peer) -> bool:
        """Start keeping ``peer`` in sync; False if the worker cannot run yet (no event loop)."""
        self._ledger.add(peer)
        running = self._driver.start()
        if running:
            self._driver.wake()
        return running

    def hold(self, peer: Peer) -> None:
        """Keep ``peer`` (and this storage) alive until its pending writes are sent.

        Safe under a breaker's lock: two set insertions, no lock of its own.
        """
        self._ledger.hold(peer)

    def wake(self) -> None:
        """Ask the worker for a round soon; never blocks, safe under a breaker's lock."""
        self._driver.wake()

    def stale(self, now: float) -> bool:
        """Whether the worker has not completed an exchange for ``stale_after`` seconds."""
        return self._ledger.stale(now)

    @property
    def degraded(self) -> bool:
        """True while the store is unreachable or too slow and breakers use local state."""
        return self._ledger.degraded

    def check_rules(self, rules: Rules) -> None:
        """Refuse a breaker whose state could expire from the store while it is in use."""
        longest = max(rules.open_timeout, rules.max_open_timeout)
        if self.key_ttl <= longest:
            option = "max_open_timeout" if longest > rules.open_timeout else "open_timeout"
            raise ValueError(
                f"storage: key_ttl ({self.key_ttl!r} s) must be longer than the breaker's "
                f"{option} ({longest!r} s), or an open breaker's state could expire"
            )

    # -- used by applications ---------------------------------------------------------------

    def flush(self, timeout: v.Seconds | None = None) -> bool:
        """Write every pending outcome, trip and command to the store now.

        Waits at most ``timeout`` seconds (default: the storage's ``timeout``) and returns
        True when the store has them all, False when it did not answer in time (they are then
        decided locally, as in degraded mode). Call it at the end of a serverless invocation
        or a short-lived job; it also runs on :meth:`close` and at interpreter exit. With an
        asyncio client, call ``await storage.aflush()`` from its event loop instead.
        """
        return self._driver.flush(self._limit(timeout))

    async def aflush(self, timeout: v.Seconds | None = None) -> bool:
        """Like :meth:`flush`, without blocking the running event loop."""
        return await self._driver.aflush(self._limit(timeout))

    def close(self) -> None:
        """Flush what is pending (bounded by ``timeout``), then stop the background worker.

        Breakers keep working on local state. The client is not closed: it is the caller's.
        """
        self._driver.close()

    async def aclose(self) -> None:
        """Like :meth:`close`, awaiting the worker (task or thread)."""
        await self._driver.aclose()

    def _limit(self, timeout: v.Seconds | None) -> float:
        if timeout is None:
            return self.timeout
        return v.seconds("timeout", timeout, allow_zero=True)


# Every storage of this process, for the exit flush and the fork handler.
_live: weakref.WeakSet[Storage] = weakref.WeakSet()
# Storages holding breakers with unsent writes, kept alive until those are sent.
_busy: set[Storage] = set()


def _flush_at_exit() -> None:
    # Bounded as a whole by the longest storage timeout: exit is never held up for longer,
    # whatever the stores do.
    storages = list(_live)
    if not storages:
        return
    deadline = time.monotonic() + max(storage.timeout for storage in storages)
    for storage in storages:
        try:
            storage._driver.exit(max(deadline - time.monotonic(), 0.0))
        except Exception:
            logger.exception("switchgear: flushing %s at exit failed", storage)


def _forked_child() -> None:
    for storage in list(_live):
        storage._ledger.forked()
        storage._driver.forked()


atexit.register(_flush_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked_child)

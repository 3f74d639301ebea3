"""What is recorded under one name: counts, latency histogram, sliding window, breakers.

Why it is shaped like this:

* The hot path (``Series.record``) is a closure adding to this thread's own list of
  counts: no lock, no prometheus_client call, no label lookup, no allocation besides the
  float sum. Exposition (Prometheus collector, OpenTelemetry callbacks) sums the threads'
  lists at scrape time.
* The sliding window is fed in batches: calls in the current slot are only counted in the
  running totals, and moved into the ``SlidingWindow`` as one event when the next slot
  begins or when someone reads. The window therefore costs one float comparison per call.
* Breakers and pools are held by weak reference: attaching never keeps them alive, and a
  dead one simply stops being reported.

Pools have their own series (:mod:`switchgear._metrics.pool_series`); a registry's series live in
a :class:`~switchgear._metrics.store.Store`.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol, TypeVar

from .._breaker.events import TRIP_REASONS, default_reason
from .._breaker.protocol import counts_transitions
from .._window import SlidingWindow
from . import exemplars as ex
from .held import Refs

__all__ = [
    "AUTOMATIC_TRANSITIONS",
    "BREAKER_STATES",
    "LATENCY_BUCKETS",
    "MANUAL_ACTIONS",
    "REJECTION_REASONS",
    "TICK_SECONDS",
    "Series",
    "SeriesSnapshot",
    "WindowFigures",
    "WindowSums",
    "adopt_shard",
    "per_call",
]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
REJECTION_REASONS = (
    "circuit_open",
    "half_open_full",
    "pool_full",
    "pool_timeout",
    "limit",
)
#: What the middleware's control plane can do to a breaker (exported as 0 until done).
MANUAL_ACTIONS = ("disable", "force_open", "reset")
BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "disabled")
#: The transitions a breaker makes by itself (trip, probe, reopen, close). Their counters are
#: exported at 0 from the moment a breaker is attached, so ``increase()`` and ``rate()`` see
#: the very first trip: a counter series born at 1 has no earlier sample to rise from.
#: Manual transitions (``reset``, ``force_open``, ``disable``) appear with their first use.
AUTOMATIC_TRANSITIONS: tuple[tuple[str, str], ...] = (
    ("closed", "open"),
    ("open", "half_open"),
    ("half_open", "open"),
    ("half_open", "closed"),
)

# Housekeeping (OpenTelemetry activation, multiprocess gauges) runs at most this often.
TICK_SECONDS = 1.0

Sink = Callable[[float, bool, bool], None]
#: A sink that is also told the time the call ended (``now``, duration, success, cold start).
TimedSink = Callable[[float, float, bool, bool], None]


def _label(state: object) -> str:
    """A breaker state's label: the ``.value`` of a BreakerState, else ``str()``."""
    value = getattr(state, "value", state)
    return value if isinstance(value, str) else str(value)


class Owner(Protocol):
    """What a series needs of the store holding it (:class:`~switchgear._metrics.store.Store`)."""

    @property
    def mirror(self) -> Any:
        """Where events are copied as they happen (the multiprocess mirror), or None."""

    def tick(self) -> None:
        """Run the store's housekeeping if it is due."""


def per_call(total: float, calls: int) -> float:
    """``total`` divided among ``calls``; 0 without calls (a mean or ratio of nothing)."""
    return total / calls if calls else 0.0


class WindowSums(NamedTuple):
    """Sums over the sliding window, and the figures every exporter derives from them."""

    requests: int
    errors: int
    latency_sum: float
    covered: float  # seconds of the window that have elapsed (never 0)

    @property
    def qps(self) -> float:
        return self.requests / self.covered

    @property
    def error_ratio(self) -> float:
        return per_call(self.errors, self.requests)

    @property
    def latency_avg(self) -> float:
        return per_call(self.latency_sum, self.requests)

    def figures(self) -> WindowFigures:
        """Every derived figure at once, for the exporters' window gauges."""
        return WindowFigures(self.qps, self.error_ratio, self.latency_avg)


class WindowFigures(NamedTuple):
    """The figures of :class:`WindowSums`, one per window gauge of the family table."""

    qps: float
    error_ratio: float
    latency_avg: float


class SeriesSnapshot(NamedTuple):
    counts: tuple[int, ...]  # per bucket, not cumulative; the last one is +Inf
    latency_sum: float
    errors: int
    cold_starts: int
    rejected: dict[str, int]
    transitions: dict[tuple[str, str], int]
    window: WindowSums

    @property
    def requests(self) -> int:
        return sum(self.counts)


_S = TypeVar("_S")


class _Owner:
    """Lives in a thread's local storage; its death (thread exit) retires the thread's shard."""

    __slots__ = ("__weakref__",)


def adopt_shard(
    local: threading.local,
    shard: _S,
    shards: list[_S],
    dead: list[_S],
    lock: AbstractContextManager[Any],
) -> _S:
    """Make ``shard`` this thread's (``local.shard``), listed in ``shards`` under ``lock``.

    When the thread ends, the shard joins ``dead``, folded in by the next reader. The
    finalizer holds the list, not the series: a thread that never ends (the main one) must
    not keep the series alive. It takes no lock (``list.append`` is atomic): it runs at any
    point of any thread, also in a forked child while the interpreter discards the threads
    that did not survive the fork, whose locks stay held.
    """
    owner = _Owner()
    with lock:
        shards.append(shard)
    weakref.finalize(owner, dead.append, shard).atexit = False
    local.shard = shard
    local.owner = owner
    return shard


class Series:
    """Everything recorded under one name in one store; shared by same-named ``Metrics``.

    Counts live in per-thread *shards* (plain lists, one writer each) summed at read time:
    recording takes no lock, so it is correct on free-threaded Python without relying on
    ``+=`` being atomic, and eight threads recording at once do not queue behind one lock
    (under the GIL such a lock convoys: 8 threads ran at 0.22x the calls/s of one). A
    thread's shard is merged into ``_retired`` after the thread ends, so memory stays
    bounded by the number of live threads.
    """

    __slots__ = (
        "__weakref__",
        "_dead",
        "_flushed",
        "_local",
        "_pending_at",
        "_reject_index",
        "_retired",
        "_roll_at",
        "_shards",
        "_slow_at",
        "_tick_at",
        "_width",
        "bounds",
        "breakers",
        "clock",
        "exemplars",
        "exemplars_wanted",
        "lock",
        "manual_actions",
        "name",
        "pool_override",
        "pools",
        "record",
        "record_at",
        "reject",
        "sinks",
        "store",
        "transitions",
        "trips",
        "window",
    )

    def __init__(
        self,
        store: Owner,
        name: str,
        bounds: tuple[float, ...],
        window: float,
        clock: Callable[[], float],
        exemplars: bool = True,
    ) -> None:
        self.store = store
        self.name = name
        self.bounds = bounds
        self.clock = clock
        # Guards the shard list, the window and the transitions; never taken per call.
        # Reentrant: a thread-exit finalizer may run while this thread holds it.
        self.lock = threading.RLock()
        self._local = threading.local()
        self._shards: list[list[float]] = []
        self._retired = self._empty_shard()
        self._dead: list[list[float]] = []  # shards of ended threads, not folded yet
        self._reject_index = {r: len(bounds) + 4 + i for i, r in enumerate(REJECTION_REASONS)}
        # Calls at or after this time take the slow path: a new window slot begins,
        # housekeeping is due, or there are sinks. -inf: the first call starts it all.
        self._slow_at: list[float] = [float("-inf")]
        self.transitions: dict[tuple[str, str], int] = {}
        self.manual_actions: dict[str, int] = {}  # control-plane actions, by action
        self.trips: dict[str, int] = {}  # transitions to OPEN, by reason
        self.sinks: tuple[Sink, ...] = ()
        self.window = SlidingWindow(window, start=clock())
        self._width = self.window.width
        self._flushed: list[float] = [0, 0, 0.0]  # requests, errors, sum already in the window
        self._pending_at = 0.0
        self._tick_at = float("-inf")
        self._roll_at = float("-inf")
        self.breakers = Refs()
        self.pools = Refs()
        self.pool_override: tuple[int, int, int] | None = None
        # The latest traced call per bucket; None: exemplars are off (or cannot exist).
        self.exemplars_wanted = exemplars
        self.exemplars = ex.Exemplars.create(exemplars, len(bounds) + 1)
        self.record_at: TimedSink = self._make_record()
        record_at = self.record_at
        self.record: Sink = lambda duration, success, cold_start: record_at(
            clock(), duration, success, cold_start
        )
        self.reject: Callable[[str], None] = self._make_reject()

    def forked(self) -> None:
        """In a forked child: a fresh lock (see ``Store.forked``)."""
        self.lock = threading.RLock()

    # -- shards ------------------------------------------------------------------------------
    #
    # Layout: one count per bucket (the last is +Inf), then the latency sum, errors, cold
    # starts, and one count per rejection reason.

    def _empty_shard(self) -> list[float]:
        return [0] * (len(self.bounds) + 1) + [0.0, 0, 0] + [0] * len(REJECTION_REASONS)

    def _new_shard(self) -> list[float]:
        """This thread's shard, created on its first call."""
        return adopt_shard(self._local, self._empty_shard(), self._shards, self._dead, self.lock)

    def _aggregate(self) -> list[float]:
        """The sum of every shard. Caller holds the lock."""
        dead = self._dead
        while dead:
            shard = dead.pop()
            retired = self._retired
            for i, value in enumerate(shard):
                retired[i] += value
            # By identity: two shards with equal counts compare equal.
            self._shards = [s for s in self._shards if s is not shard]
        total = list(self._retired)
        for shard in self._shards:
            for i, value in enumerate(shard):
                total[i] += value
        return total

    # -- hot path ----------------------------------------------------------------------------

    def recorder_for(self, clock: Callable[[], float]) -> TimedSink:
        """``record_at`` for callers timing with ``clock``; it reads its own when they differ.

        A caller that has just read the clock to time a call passes that reading on, which
        saves the series a second read on every call.
        """
        if clock is self.clock:
            return self.record_at
        record_at = self.record_at
        own = self.clock
        return lambda _now, duration, success, cold_start: record_at(
            own(), duration, success, cold_start
        )

    def _make_record(self) -> TimedSink:
        bounds = self.bounds
        local = self._local
        new_shard = self._new_shard
        slow_at = self._slow_at
        slow = self._record_slow
        k_sum = len(bounds) + 1
        k_errors = k_sum + 1
        k_cold = k_sum + 2
        if self.exemplars is not None:  # the same, plus one call when no span is current
            return ex.traced_recorder(bounds, local, new_shard, slow_at, slow, self.exemplars)

        def record_at(now: float, duration: float, success: bool, cold_start: bool) -> None:
            if now >= slow_at[0]:
                slow(now, duration, success, cold_start)
                return
            try:
                shard = local.shard
            except AttributeError:
                shard = new_shard()
            # le buckets: a duration equal to a bound is in that bound's bucket.
            shard[bisect_left(bounds, duration)] += 1
            shard[k_sum] += duration
            if not success:
                shard[k_errors] += 1
            if cold_start:
                shard[k_cold] += 1

        return record_at

    def _record_slow(self, now: float, duration: float, success: bool, cold_start: bool) -> None:
        if now >= self._roll_at:
            self._roll(now)
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard()
        k_sum = len(self.bounds) + 1
        i = bisect_left(self.bounds, duration)
        shard[i] += 1
        if self.exemplars is not None:
            self.exemplars.observe(i, duration)
        shard[k_sum] += duration
        if not success:
            shard[k_sum + 1] += 1
        if cold_start:
            shard[k_sum + 2] += 1
        for sink in self.sinks:
            sink(duration, success, cold_start)

    def _make_reject(self) -> Callable[[str], None]:
        local = self._local
        new_shard = self._new_shard
        index = self._reject_index
        mirror = self.store.mirror

        def reject(reason: str) -> None:
            try:
                shard = local.shard
            except AttributeError:
                shard = new_shard()
            shard[index[reason]] += 1
            if mirror is not None:
                mirror.rejected(self, reason)

        return reject

    def add_sink(self, sink: Sink) -> None:
        """Also pass every recorded call to ``sink``.

        Calls then always take the slow path; sinks (an OpenTelemetry SDK, multiprocess
        files) cost far more than that detour.
        """
        with self.lock:
            self.sinks = (*self.sinks, sink)
            self._slow_at[0] = float("-inf")

    def _roll(self, now: float) -> None:
        with self.lock:
            if now < self._roll_at:
                return  # another thread rolled first
            tick = now >= self._tick_at
            if tick:
                self._tick_at = now + TICK_SECONDS
            self._flush(now, self._aggregate())
        if tick:
            self.store.tick()

    def _flush(self, now: float, total: list[float]) -> None:
        """Move the calls since the last flush into the window; start the slot of ``now``.

        Calls are added at the pending slot's time: they were made in it (give or take a
        call racing the slot boundary). Caller holds the lock.
        """
        flushed = self._flushed
        k_sum = len(self.bounds) + 1
        requests = sum(total[:k_sum])
        if requests != flushed[0]:
            self.window.add(
                self._pending_at,
                requests - flushed[0],
                total[k_sum + 1] - flushed[1],
                total[k_sum] - flushed[2],
            )
            flushed[0], flushed[1], flushed[2] = requests, total[k_sum + 1], total[k_sum]
        width = self._width
        epoch = now // width
        # The slot's midpoint, so float rounding cannot put the batch in a neighbour slot.
        self._pending_at = (epoch + 0.5) * width
        self._roll_at = min((epoch + 1) * width, self._tick_at)
        self._slow_at[0] = float("-inf") if self.sinks else self._roll_at

    # -- reading -----------------------------------------------------------------------------

    def window_sums(self, span: float | None = None) -> WindowSums:
        """Requests, errors, latency sum and covered seconds over the last ``span`` seconds."""
        with self.lock:
            now = self.clock()
            self._flush(now, self._aggregate())
            if span is None:
                a, b, c = self.window.totals(now)
            else:
                a, b, c = self.window.sums(now, span)
            covered = self.window.covered(now, span)
        return WindowSums(round(a), round(b), c, covered)

    def totals(self) -> tuple[int, int, int, float]:
        """``(requests, errors, cold_starts, latency_sum)`` since the series was created."""
        with self.lock:
            total = self._aggregate()
        k_sum = len(self.bounds) + 1
        return (
            int(sum(total[:k_sum])),
            int(total[k_sum + 1]),
            int(total[k_sum + 2]),
            total[k_sum],
        )

    def rejections(self) -> dict[str, int]:
        with self.lock:
            total = self._aggregate()
        return {reason: int(total[i]) for reason, i in self._reject_index.items()}

    def transition_counts(self) -> dict[tuple[str, str], int]:
        with self.lock:
            return dict(self.transitions)

    def manual_action(self, action: str) -> None:
        """Count one control-plane action (``force_open``, ``disable``, ``reset``)."""
        with self.lock:
            self.manual_actions[action] = self.manual_actions.get(action, 0) + 1
        if self.store.mirror is not None:
            self.store.mirror.manual_action(self, action)

    def manual_action_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.manual_actions)

    def snapshot(self) -> SeriesSnapshot:
        """Every number of the series, read under its lock at one instant."""
        with self.lock:
            now = self.clock()
            total = self._aggregate()
            self._flush(now, total)
            a, b, c = self.window.totals(now)
            covered = self.window.covered(now)
            transitions = dict(self.transitions)
        k_sum = len(self.bounds) + 1
        return SeriesSnapshot(
            tuple(int(n) for n in total[:k_sum]),
            total[k_sum],
            int(total[k_sum + 1]),
            int(total[k_sum + 2]),
            {reason: int(total[i]) for reason, i in self._reject_index.items()},
            transitions,
            WindowSums(round(a), round(b), c, covered),
        )

    # -- breakers ----------------------------------------------------------------------------

    def attach_breaker(self, breaker: Any) -> None:
        with self.lock:
            if not self.breakers.hold(breaker):
                return
            for key in AUTOMATIC_TRANSITIONS:
                self.transitions.setdefault(key, 0)
            for action in MANUAL_ACTIONS:
                self.manual_actions.setdefault(action, 0)
            # The default rule's reason is exported as 0 from the start; the others appear
            # with their first trip (seven zero series per breaker would be mostly noise).
            self.trips.setdefault("consecutive_failures", 0)
        breaker.add_listener(self.on_transition)
        if self.store.mirror is not None:
            self.store.mirror.breaker_attached(self)
            self.store.mirror.refresh(self.store)

    @counts_transitions  # with shared storage: only transitions this process made
    def on_transition(self, change: Any, new: Any = None) -> None:
        """Breaker listener: count the transition, and a trip by its reason (in order).

        Takes the :class:`~switchgear.TransitionEvent`, or ``(old, new)`` from a breaker-like
        object that only knows states (its trips then count by the transition's kind).
        """
        if new is None:
            old, new, reason = change.old, change.new, change.reason
        else:
            old, reason = change, default_reason(change, new)
        key = (_label(old), _label(new))
        trip = reason if key[1] == "open" and reason in TRIP_REASONS else None
        with self.lock:
            self.transitions[key] = self.transitions.get(key, 0) + 1
            if trip is not None:
                self.trips[trip] = self.trips.get(trip, 0) + 1
        if self.store.mirror is not None:
            self.store.mirror.transition(self, key[0], key[1])
            if trip is not None:
                self.store.mirror.tripped(self, trip)

    def trip_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.trips)

    def breaker(self) -> Any | None:
        """The most recently attached breaker that is still alive."""
        return self.breakers.newest()

    def breaker_view(self) -> tuple[str, dict[str, float]] | None:
        """``(state, seconds per state)`` of the live breaker, read now; None if there is none."""
        breaker = self.breaker()
        if breaker is None:
            return None
        durations = {_label(k): float(v) for k, v in breaker.state_durations().items()}
        return _label(breaker.state), durations

    # -- pools (for Stats) ---------------------------------------------------------------------

    def attach_pool(self, pool: Any) -> None:
        with self.lock:
            self.pools.hold(pool)

    def pool(self) -> Any | None:
        """The first attached pool that is still alive."""
        return self.pools.first()

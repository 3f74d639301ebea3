"""The standard HTTP server series of one store: request durations and active requests.

Recorded by the middlewares under OpenTelemetry's stable HTTP semantic conventions
(``http.server.request.duration``, ``http.server.active_requests``), beside each route's own
``switchgear_*`` series. A series is keyed by a tuple of attribute values in the order of
:data:`~switchgear._metrics.families.HTTP_ATTRIBUTES` (``""`` for an attribute that is
absent); the middleware builds those values from bounded sets only.

Like :class:`~switchgear._metrics.series.Series`, counts live in per-thread shards (dicts
per thread, one writer each) summed at scrape time: recording takes no lock. Exemplars are
kept per series and bucket, shared by all threads (a slot is replaced whole).

A middleware's request goes through :meth:`HttpSeries.start` (or
:meth:`HttpSeries.start_new`) when it starts and :meth:`HttpSeries.ended` (or
:meth:`HttpSeries.ended_new`) when it is recorded. A recorded
request stops being active without a second count: the scrape subtracts the requests of
those histograms from the active ones (``active = started - ended``), so the end of a
request is one histogram update. Both ends are remembered per thread under short keys of
the middleware's choosing (the values it has at hand: at the start, as the server gave them;
at the end, the start's values, the route and the status), so a request like one seen
before on the thread starts with one lookup and one count, and ends with one lookup and one
bucket.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Hashable
from typing import Any

from . import exemplars as ex
from .series import LATENCY_BUCKETS, adopt_shard

__all__ = ["ActiveKey", "HttpSeries", "Key"]

#: Values of the duration histogram's attributes, in ``HTTP_ATTRIBUTES`` order.
Key = tuple[str, str, str, str, str, str]
#: Values of the active requests' attributes: method and scheme.
ActiveKey = tuple[str, str]

# What a request key (see ended) stands for on one thread: its counts, its key, its active key.
_Known = tuple[list[float], Key, ActiveKey]


class _Started:
    """What a start key (see :meth:`HttpSeries.start`) stands for on one thread: the requests
    started under it, their active key, and the caller's value for it."""

    __slots__ = ("akey", "n", "value")

    def __init__(self, akey: ActiveKey, value: Any) -> None:
        self.akey = akey
        self.value = value
        self.n = 1


# One thread's counts: per key, the bucket counts (+Inf last) then the sum, as recorded by
# record(); active requests by active(); the histograms of ended requests, whose counts are
# still in the active ones; the request keys known on this thread; its start keys.
_Shard = tuple[
    dict[Key, list[float]],
    dict[ActiveKey, int],
    dict[Key, list[float]],
    dict[Hashable, _Known],
    dict[Hashable, _Started],
]
_MAX_STARTS = 1000  # start keys remembered per thread


class HttpSeries:
    """The standard HTTP series of one store (one registry, or the process in multiprocess
    mode), shared by every middleware recording into it."""

    __slots__ = (
        "__weakref__",
        "_current",
        "_dead",
        "_local",
        "_retired",
        "_shards",
        "active_sinks",
        "bounds",
        "exemplars",
        "lock",
        "sinks",
    )

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.lock = threading.RLock()
        self._local = threading.local()
        self._shards: list[_Shard] = []
        self._dead: list[_Shard] = []
        self._retired: _Shard = ({}, {}, {}, {}, {})
        self._current = ex.context_probe()
        self.exemplars: dict[Key, list[ex.Slot]] = {}
        # Copies of every event (the multiprocess files, an OpenTelemetry SDK).
        self.sinks: tuple[Callable[[Key, float], None], ...] = ()
        self.active_sinks: tuple[Callable[[ActiveKey, int], None], ...] = ()

    def forked(self) -> None:
        """In a forked child: a fresh lock."""
        self.lock = threading.RLock()

    def _shard(self) -> _Shard:
        """This thread's counts, made and registered on the thread's first recording."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = adopt_shard(
                self._local, ({}, {}, {}, {}, {}), self._shards, self._dead, self.lock
            )
        return shard

    # -- recording ---------------------------------------------------------------------------

    def record(self, key: Key, duration: float, traced: bool) -> None:
        """One request in the histogram; ``traced``: keep an exemplar if a sampled span is
        current. Active requests are not touched (see :meth:`ended`)."""
        durations = self._shard()[0]
        counts = durations.get(key)
        if counts is None:
            counts = durations[key] = self._new_counts()
        self._observe(key, counts, duration, traced)
        if self.sinks:
            for sink in self.sinks:
                sink(key, duration)

    def start(self, request: Hashable) -> Any:
        """A request starts under a start key seen on this thread before: counted active;
        the value :meth:`start_new` was given for it. None (nothing done) when unknown: then
        :meth:`start_new` is the call.

        The fast path of a request's start: one lookup, one count.
        """
        try:
            started = self._local.shard[4].get(request)
        except AttributeError:
            return None
        if started is None:
            return None
        started.n += 1
        if self.active_sinks:
            self._tell_active(started.akey, 1)
        return started.value

    def start_new(self, request: Hashable | None, akey: ActiveKey, value: Any) -> None:
        """A request starts, active under ``akey``; ``request``, if not None, is its start key
        and ``value`` what :meth:`start` returns for it on this thread from now on."""
        starts = self._shard()[4]
        if request is not None and len(starts) < _MAX_STARTS:
            starts[request] = _Started(akey, value)
            self._tell_active(akey, 1)
        else:
            self.active(akey, 1)

    def ended(self, request: Hashable, duration: float, traced: bool) -> bool:
        """A request counted by ``active(..., 1)`` ended and is recorded under the key that
        ``request`` stood for on this thread before; False (nothing done) when it stood for
        none: then :meth:`ended_new` is the call.

        The fast path of a request's end: one lookup, one bucket, no active count (the
        scrape derives it); exemplars and sinks as in :meth:`record`.
        """
        try:
            known = self._local.shard[3].get(request)
        except AttributeError:
            return False
        if known is None:
            return False
        counts = known[0]
        i = bisect_left(self.bounds, duration)
        counts[i] += 1
        counts[-1] += duration
        if traced and self._current is not None:
            context = self._current()
            if context:
                self._keep(known[1], i, context, duration)
        if self.sinks or self.active_sinks:
            self._tell_ended(known[1], known[2], duration)
        return True

    def ended_new(self, request: Hashable | None, key: Key, duration: float, traced: bool) -> None:
        """A request counted by ``active(..., 1)`` ended: recorded under ``key`` (its active
        key is ``key[:2]``); ``request``, if not None, stands for ``key`` on this thread from
        now on (see :meth:`ended`)."""
        shard = self._shard()
        ended = shard[2]
        counts = ended.get(key)
        if counts is None:
            counts = ended[key] = self._new_counts()
        akey: ActiveKey = (key[0], key[1])
        if request is not None:
            shard[3][request] = (counts, key, akey)
        self._observe(key, counts, duration, traced)
        if self.sinks or self.active_sinks:
            self._tell_ended(key, akey, duration)

    def _new_counts(self) -> list[float]:
        return [0] * (len(self.bounds) + 1) + [0.0]

    def _observe(self, key: Key, counts: list[float], duration: float, traced: bool) -> None:
        i = bisect_left(self.bounds, duration)
        counts[i] += 1
        counts[-1] += duration
        if traced and self._current is not None:
            context = self._current()
            if context:
                self._keep(key, i, context, duration)

    def _keep(self, key: Key, i: int, context: object, duration: float) -> None:
        """Something is attached to the context: perhaps a sampled span, for bucket ``i``."""
        slots = self.exemplars.get(key)
        if slots is None:
            slots = self.exemplars.setdefault(key, [None] * (len(self.bounds) + 1))
        ex.store(slots, i, context, duration)

    def _tell_ended(self, key: Key, akey: ActiveKey, duration: float) -> None:
        for sink in self.sinks:
            sink(key, duration)
        self._tell_active(akey, -1)

    def active(self, key: ActiveKey, delta: int) -> None:
        """A request started (``+1``) or ended (``-1``)."""
        active = self._shard()[1]
        active[key] = active.get(key, 0) + delta
        self._tell_active(key, delta)

    def _tell_active(self, key: ActiveKey, delta: int) -> None:
        for sink in self.active_sinks:
            sink(key, delta)

    def add_sink(
        self,
        duration: Callable[[Key, float], None],
        active: Callable[[ActiveKey, int], None] | None = None,
    ) -> None:
        """Also pass every recorded request (and every start and end) to these."""
        with self.lock:
            self.sinks = (*self.sinks, duration)
            if active is not None:
                self.active_sinks = (*self.active_sinks, active)

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> tuple[dict[Key, list[float]], dict[ActiveKey, int]]:
        """Every series' counts (buckets, +Inf, sum) and the active requests, summed now."""
        with self.lock:
            dead = self._dead
            while dead:
                shard = dead.pop()
                _add(self._retired, shard)
                self._shards = [s for s in self._shards if s is not shard]
            durations: dict[Key, list[float]] = {}
            active: dict[ActiveKey, int] = {}
            total: _Shard = (durations, active, {}, {}, {})
            _add(total, self._retired)
            for shard in self._shards:
                _add(total, shard)
        return durations, active

    def exemplar_slots(self, key: Key) -> list[ex.Slot] | None:
        """The exemplar slots of ``key``'s buckets, if any traced request landed there."""
        return self.exemplars.get(key)


def _add(total: _Shard, shard: _Shard) -> None:
    """Add ``shard``'s counts into ``total``'s histograms and active requests (its ended
    requests' histograms into both: counted in the histogram, no longer active)."""
    durations, active = total[0], total[1]
    for source in (shard[0], shard[2]):
        for key, counts in list(source.items()):
            into = durations.get(key)
            if into is None:
                durations[key] = list(counts)
            else:
                for i, value in enumerate(counts):
                    into[i] += value
    for akey, n in list(shard[1].items()):
        active[akey] = active.get(akey, 0) + n
    for key, counts in list(shard[2].items()):
        akey = (key[0], key[1])
        active[akey] = active.get(akey, 0) - int(sum(counts[:-1]))
    for started in list(shard[4].values()):
        active[started.akey] = active.get(started.akey, 0) + started.n

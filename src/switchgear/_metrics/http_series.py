"""The standard HTTP server series of one store: request durations and active requests.

Recorded by the middlewares under OpenTelemetry's stable HTTP semantic conventions
(``http.server.request.duration``, ``http.server.active_requests``), beside each route's own
``switchgear_*`` series. A series is keyed by a tuple of attribute values in the order of
:data:`~switchgear._metrics.families.HTTP_ATTRIBUTES` (``""`` for an attribute that is
absent); the middleware builds those values from bounded sets only.

Like :class:`~switchgear._metrics.series.Series`, counts live in per-thread shards (a dict
per thread, one writer each) summed at scrape time: recording takes no lock. Exemplars are
kept per series and bucket, shared by all threads (a slot is replaced whole).
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable

from . import exemplars as ex
from .series import LATENCY_BUCKETS

__all__ = ["ActiveKey", "HttpSeries", "Key"]

#: Values of the duration histogram's attributes, in ``HTTP_ATTRIBUTES`` order.
Key = tuple[str, str, str, str, str, str]
#: Values of the active requests' attributes: method and scheme.
ActiveKey = tuple[str, str]

# One thread's counts: per key, the bucket counts (+Inf last) then the sum; active requests.
_Shard = tuple[dict[Key, list[float]], dict[ActiveKey, int]]


class _Owner:
    """Lives in a thread's local storage; its death (thread exit) retires the thread's shard."""

    __slots__ = ("__weakref__",)


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
        self._retired: _Shard = ({}, {})
        self._current = ex.context_probe()
        self.exemplars: dict[Key, list[ex.Slot]] = {}
        # Copies of every event (the multiprocess files, an OpenTelemetry SDK).
        self.sinks: tuple[Callable[[Key, float], None], ...] = ()
        self.active_sinks: tuple[Callable[[ActiveKey, int], None], ...] = ()

    def forked(self) -> None:
        """In a forked child: a fresh lock."""
        self.lock = threading.RLock()

    def _shard(self) -> _Shard:
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = ({}, {})
            owner = _Owner()
            with self.lock:
                self._shards.append(shard)
            # See Series._new_shard: the finalizer takes no lock and holds the list only.
            weakref.finalize(owner, self._dead.append, shard).atexit = False
            self._local.shard = shard
            self._local.owner = owner
        return shard

    # -- recording ---------------------------------------------------------------------------

    def record(self, key: Key, duration: float, traced: bool) -> None:
        """One finished request; ``traced``: keep an exemplar if a sampled span is current."""
        try:
            durations = self._local.shard[0]
        except AttributeError:
            durations = self._shard()[0]
        counts = durations.get(key)
        if counts is None:
            counts = durations[key] = [0] * (len(self.bounds) + 1) + [0.0]
        i = bisect_left(self.bounds, duration)
        counts[i] += 1
        counts[-1] += duration
        current = self._current
        if traced and current is not None:
            context = current()
            if context:
                slots = self.exemplars.get(key)
                if slots is None:
                    slots = self.exemplars.setdefault(key, [None] * (len(self.bounds) + 1))
                ex.store(slots, i, context, duration)
        if self.sinks:
            for sink in self.sinks:
                sink(key, duration)

    def active(self, key: ActiveKey, delta: int) -> None:
        """A request started (``+1``) or ended (``-1``)."""
        try:
            active = self._local.shard[1]
        except AttributeError:
            active = self._shard()[1]
        active[key] = active.get(key, 0) + delta
        if self.active_sinks:
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
            total = (durations, active)
            _add(total, self._retired)
            for shard in self._shards:
                _add(total, shard)
        return durations, active

    def exemplar_slots(self, key: Key) -> list[ex.Slot] | None:
        """The exemplar slots of ``key``'s buckets, if any traced request landed there."""
        return self.exemplars.get(key)


def _add(total: _Shard, shard: _Shard) -> None:
    durations, active = total
    for key, counts in list(shard[0].items()):
        into = durations.get(key)
        if into is None:
            durations[key] = list(counts)
        else:
            for i, value in enumerate(counts):
                into[i] += value
    for akey, n in list(shard[1].items()):
        active[akey] = active.get(akey, 0) + n

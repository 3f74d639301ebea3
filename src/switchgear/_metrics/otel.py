"""OpenTelemetry export, through ``opentelemetry-api`` only.

Counters and gauges are *observable* instruments fed from the same numbers Prometheus
reads, so they cost nothing per call. Only the two histograms need per-event records, and
those are wired into the hot path only once a real SDK provider is behind the meter: with
the API alone (no-op or proxy provider) a call pays nothing for OpenTelemetry. A global
provider set *after* the Metrics was created is noticed within a second (checked on the
metrics' housekeeping tick) and from then on receives the histograms too; the observable
instruments follow the global provider by themselves (the API's proxy delegates them).

Instrument names are chosen so that the OpenTelemetry Prometheus exporter reproduces the
native Prometheus names (``switchgear.request.duration`` + unit ``s`` ->
``switchgear_request_duration_seconds``; counters get ``_total``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from opentelemetry import metrics as otel
from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    Meter,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
)

from .errors import contained
from .families import (
    FAMILIES,
    LIMIT_GAUGES,
    LIMIT_RTT_ESTIMATES,
    POOL_GAUGES,
    WINDOW_FIGURES,
    Family,
)
from .http_series import ActiveKey, HttpSeries, Key
from .limit_series import LimitSeries
from .pool_series import SCALE_DIRECTIONS, PoolSeries
from .series import BREAKER_STATES, LATENCY_BUCKETS, REJECTION_REASONS, Series
from .store import Store

__all__ = ["Bridge", "bridge_for"]

try:  # the API's stand-in until a real global provider is set
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    _NOT_REAL: tuple[type, ...] = (NoOpMeterProvider, _ProxyMeterProvider)
except ImportError:  # pragma: no cover - older or newer API layouts
    _NOT_REAL = (NoOpMeterProvider,)


def is_real(provider: MeterProvider) -> bool:
    """True if records sent to ``provider`` go somewhere (an SDK, not the API's stand-ins)."""
    return not isinstance(provider, _NOT_REAL)


def _histogram(meter: Meter, family: Family) -> Histogram:
    name, unit, description = family.otel_name, family.otel_unit, family.help
    try:
        return meter.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS),
        )
    except TypeError:  # pragma: no cover - opentelemetry-api < 1.23 has no advisory
        return meter.create_histogram(name, unit=unit, description=description)


Callback = Callable[[CallbackOptions], Iterable[Observation]]
_Named = TypeVar("_Named", PoolSeries, LimitSeries)


def _attributes(keys: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str | int]:
    """The attributes of one HTTP series: absent ones left out, the status code an int."""
    found: dict[str, str | int] = {}
    for key, value in zip(keys, values, strict=True):
        if value:
            found[key] = int(value) if key == "http.response.status_code" else value
    return found


class Bridge:
    """The switchgear instruments on one meter provider, observing any number of series."""

    def __init__(self, provider: MeterProvider, follows_global: bool) -> None:
        self._lock = threading.Lock()
        self._follows_global = follows_global
        self._active = is_real(provider)
        self._series: weakref.WeakValueDictionary[str, Series] = weakref.WeakValueDictionary()
        self._stores: weakref.WeakSet[Store] = weakref.WeakSet()
        self._wired: weakref.WeakSet[Any] = weakref.WeakSet()

        meter = provider.get_meter("switchgear")
        self.duration = _histogram(meter, FAMILIES["duration"])
        self.pool_wait = _histogram(meter, FAMILIES["pool_wait"])
        self._meter = meter
        self._http: weakref.WeakSet[HttpSeries] = weakref.WeakSet()
        self.http_duration: Histogram | None = None  # made with the first HTTP series
        callbacks: dict[str, Callback] = {
            "requests": self._requests,
            "rejected": self._rejected,
            "cold_starts": self._cold_starts,
            "transitions": self._transitions,
            "manual_actions": self._manual_actions,
            "trips": self._trips,
            "circuit_time": self._circuit_time,
            "scale_events": self._scale_events,
            "state": self._state,
            "memory_used": self._memory_used,
            "memory_limit": self._memory_limit,
            **{key: self._window_gauge(i) for i, key in enumerate(WINDOW_FIGURES)},
            **{key: self._figure(self._all_pools, "pool", i) for i, key in enumerate(POOL_GAUGES)},
            **{
                key: self._figure(self._all_limits, "name", i) for i, key in enumerate(LIMIT_GAUGES)
            },
            "limit_rtt": self._limit_rtt,
        }
        for key, callback in callbacks.items():
            f = FAMILIES[key]
            create = (
                meter.create_observable_counter
                if f.kind == "counter"
                else meter.create_observable_gauge
            )
            create(f.otel_name, [callback], unit=f.otel_unit, description=f.help)

    def forked(self) -> None:
        """In a forked child: a fresh lock."""
        self._lock = threading.Lock()

    # -- wiring ------------------------------------------------------------------------------

    def add(self, store: Store, series: Series) -> None:
        """Report ``series`` (and the pools of ``store``, which holds it) through this provider."""
        with self._lock:
            self._series[series.name] = series
            new_store = store not in self._stores
            self._stores.add(store)
        if new_store:
            store.pool_hooks.append(self._pool_added)
        if self._poll():
            return
        store.on_tick(self._poll)

    def add_http(self, store: Store, http: HttpSeries) -> None:
        """Report the standard HTTP series of ``store`` through this provider."""
        with self._lock:
            if self.http_duration is None:
                # Made on first use: a provider without HTTP middleware shows no HTTP series.
                self.http_duration = _histogram(self._meter, FAMILIES["http_duration"])
                family = FAMILIES["http_active"]
                self._meter.create_observable_up_down_counter(
                    family.otel_name,
                    [self._http_active],
                    unit=family.otel_unit,
                    description=family.help,
                )
            self._http.add(http)
        if self._poll():
            return
        store.on_tick(self._poll)

    def _poll(self) -> bool:
        """Wire the histograms if the provider is real now; True once it is."""
        if not self._active:
            if not (self._follows_global and is_real(otel.get_meter_provider())):
                return False
            self._active = True
        with self._lock:
            series = list(self._series.values())
            stores = list(self._stores)
            https = list(self._http)
        for s in series:
            self._wire_series(s)
        for store in stores:
            for pool in store.all_pools():
                self._wire_pool(pool)
        for http in https:
            self._wire_http(http)
        return True

    def _pool_added(self, pool: PoolSeries) -> None:
        if self._active:
            self._wire_pool(pool)

    def _claim(self, target: Series | PoolSeries | HttpSeries) -> bool:
        with self._lock:
            if target in self._wired:
                return False
            self._wired.add(target)
            return True

    def _wire_series(self, series: Series) -> None:
        if not self._claim(series):
            return
        record = self.duration.record
        attributes = {"name": series.name}

        @contained("opentelemetry")
        def sink(duration: float, success: bool, cold_start: bool) -> None:
            record(duration, attributes)

        series.add_sink(sink)

    def _wire_http(self, http: HttpSeries) -> None:
        histogram = self.http_duration
        if histogram is None or not self._claim(http):
            return
        record = histogram.record
        keys = FAMILIES["http_duration"].otel_attributes
        attributes: dict[Key, dict[str, str | int]] = {}  # bounded: one per series

        @contained("opentelemetry")
        def sink(key: Key, duration: float) -> None:
            found = attributes.get(key)
            if found is None:
                found = attributes[key] = _attributes(keys, key)
            record(duration, found)

        http.add_sink(sink)  # active requests are observed at collection (_http_active)

    def _http_active(self, options: CallbackOptions) -> Iterator[Observation]:
        with self._lock:
            https = list(self._http)
        keys = FAMILIES["http_active"].otel_attributes
        totals: dict[ActiveKey, int] = {}
        for http in https:
            for key, n in http.snapshot()[1].items():
                totals[key] = totals.get(key, 0) + n
        for key, n in sorted(totals.items()):
            yield Observation(n, _attributes(keys, key))

    def _wire_pool(self, pool: PoolSeries) -> None:
        if not self._claim(pool):
            return
        record = self.pool_wait.record
        attributes = {"pool": pool.name}

        @contained("opentelemetry")
        def sink(wait: float) -> None:
            record(wait, attributes)

        pool.add_sink(sink)

    # -- observable callbacks ----------------------------------------------------------------

    def _all_series(self) -> list[Series]:
        with self._lock:
            return list(self._series.values())

    def _stores_now(self) -> list[Store]:
        with self._lock:
            return list(self._stores)

    def _by_name(self, entries: Callable[[Store], list[_Named]]) -> dict[str, _Named]:
        """Each name once (the first store's, when registries share a name)."""
        found: dict[str, _Named] = {}
        for store in self._stores_now():
            for entry in entries(store):
                found.setdefault(entry.name, entry)
        return found

    def _all_pools(self) -> dict[str, PoolSeries]:
        return self._by_name(Store.all_pools)

    def _all_limits(self) -> dict[str, LimitSeries]:
        return self._by_name(Store.all_limits)

    def _requests(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._all_series():
            requests, errors, _, _ = s.totals()
            yield Observation(requests - errors, {"name": s.name, "outcome": "success"})
            yield Observation(errors, {"name": s.name, "outcome": "error"})

    def _rejected(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._all_series():
            counts = s.rejections()
            for reason in REJECTION_REASONS:
                yield Observation(counts[reason], {"name": s.name, "reason": reason})

    def _cold_starts(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._all_series():
            yield Observation(s.totals()[2], {"name": s.name})

    def _transitions(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._all_series():
            s.breaker_view()  # applies due transitions (OPEN -> HALF_OPEN) before counting
            transitions = s.transition_counts()
            for (old, new), count in sorted(transitions.items()):
                yield Observation(count, {"name": s.name, "from_state": old, "to_state": new})

    def _trips(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._all_series():
            s.breaker_view()  # applies due transitions before counting
            for reason, count in sorted(s.trip_counts().items()):
                yield Observation(count, {"name": s.name, "reason": reason})

    def _manual_actions(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._all_series():
            for action, count in sorted(s.manual_action_counts().items()):
                yield Observation(count, {"name": s.name, "action": action})

    def _state(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._all_series():
            view = s.breaker_view()
            if view is not None:
                for state in BREAKER_STATES:
                    value = 1 if state == view[0] else 0
                    yield Observation(value, {"name": s.name, "state": state})

    def _circuit_time(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._all_series():
            view = s.breaker_view()
            if view is not None:
                for state in BREAKER_STATES:
                    yield Observation(view[1].get(state, 0.0), {"name": s.name, "state": state})

    def _figure(self, entries: Callable[[], Mapping[str, Any]], label: str, index: int) -> Callback:
        """The callback of figure ``index`` of ``gauges()``, for each live pool or limit."""

        def callback(options: CallbackOptions) -> Iterator[Observation]:
            for name, entry in entries().items():
                gauges = entry.gauges()
                if gauges is not None:
                    yield Observation(gauges[index], {label: name})

        return callback

    def _limit_rtt(self, options: CallbackOptions) -> Iterator[Observation]:
        for name, entry in self._all_limits().items():
            for estimate, rtt in zip(LIMIT_RTT_ESTIMATES, entry.rtts(), strict=True):
                if rtt is not None:
                    yield Observation(rtt, {"name": name, "estimate": estimate})

    def _scale_events(self, options: CallbackOptions) -> Iterator[Observation]:
        for name, pool in self._all_pools().items():
            scaled = pool.snapshot()[2]
            for direction in SCALE_DIRECTIONS:
                yield Observation(scaled.get(direction, 0), {"pool": name, "direction": direction})

    def _memory(self) -> tuple[int, int] | None:
        with self._lock:
            stores = list(self._stores)
        return stores[0].memory() if stores else None

    def _memory_used(self, options: CallbackOptions) -> Iterator[Observation]:
        memory = self._memory()
        if memory is not None:
            yield Observation(memory[0])

    def _memory_limit(self, options: CallbackOptions) -> Iterator[Observation]:
        memory = self._memory()
        if memory is not None and memory[1] > 0:
            yield Observation(memory[1])

    def _window_gauge(self, index: int) -> Callback:
        def callback(options: CallbackOptions) -> Iterator[Observation]:
            for s in self._all_series():
                yield Observation(s.window_sums().figures()[index], {"name": s.name})

        return callback


# -- one bridge per provider -------------------------------------------------------------------

_lock = threading.Lock()
_bridges: weakref.WeakKeyDictionary[MeterProvider, Bridge] = weakref.WeakKeyDictionary()
_strong: dict[int, tuple[MeterProvider, Bridge]] = {}  # providers that refuse weak references
_global: Bridge | None = None


def _lookup(provider: MeterProvider) -> Bridge | None:
    try:
        return _bridges.get(provider)
    except TypeError:
        entry = _strong.get(id(provider))
        return entry[1] if entry is not None else None


def _remember(provider: MeterProvider, bridge: Bridge) -> None:
    try:
        _bridges[provider] = bridge
    except TypeError:
        _strong[id(provider)] = (provider, bridge)


def bridge_for(provider: MeterProvider | None) -> Bridge:
    """The bridge for ``provider``; ``None`` means the global provider, now or set later.

    Exactly one bridge per provider: a second set of instruments with the same names on
    one meter would be dropped by the SDK (with a warning), losing its callbacks.
    """
    global _global
    with _lock:
        current = otel.get_meter_provider()
        if provider is None:
            if _global is None:
                _global = _lookup(current) or Bridge(current, follows_global=not is_real(current))
                _remember(current, _global)
            return _global
        bridge = _lookup(provider)
        if bridge is None:
            if _global is not None and provider is current:
                bridge = _global
            else:
                bridge = Bridge(provider, follows_global=False)
            _remember(provider, bridge)
        return bridge


def _after_fork() -> None:
    # A fork may catch a lock held by another thread (wiring a series, an SDK collection).
    global _lock
    _lock = threading.Lock()
    bridges = [bridge for _, bridge in _strong.values()]
    bridges.extend(_bridges.values())
    if _global is not None:
        bridges.append(_global)
    for bridge in bridges:
        bridge.forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

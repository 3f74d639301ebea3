"""Every kind of protected callable records every outcome the same way.

Kinds: function, coroutine function, generator, async generator, and methods of both
flavours; each with the fast wrapper (breaker and metrics only) and the general one (a pool).
Outcomes: success, failure, ignored exception, rejection, timeout, cancellation. For each
cell the breaker, the counters, the histogram and the pool must end the same; the caller
gets the callable's own exception object, or what the outcome documents.

A kind or an outcome is one line in ``KINDS`` or ``OUTCOMES``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear.testing import FakeClock

TIMEOUT = 0.05  # seconds; a "slow" call takes 1.0 on the fake clock (or sleeps, if awaited)
_names = itertools.count()


class Ignored(Exception):
    """Listed in ``ignore_on``: neither a failure nor a success for the breaker."""


@dataclass
class Cell:
    """The components of one test, and what the protected body should do."""

    clock: FakeClock
    breaker: sg.CircuitBreaker
    metrics: sg.Metrics
    registry: CollectorRegistry
    pool: sg.DynamicPool[Any] | None
    error: BaseException
    started: asyncio.Event | None = None

    def act(self, mode: str) -> None:
        """The sync part of the body: fail, or be slow on the fake clock."""
        if mode in ("failure", "ignored"):
            raise self.error
        if mode == "timeout":
            self.clock.advance(1.0)


# -- the kinds: each returns a zero-argument callable that runs one call and gives "ok" ----


async def _async_body(cell: Cell, mode: str, interruptible: bool) -> str:
    if mode == "cancelled":
        assert cell.started is not None
        cell.started.set()
        await asyncio.Event().wait()
    if mode == "timeout" and interruptible:
        await asyncio.sleep(5)  # wait_for interrupts it after TIMEOUT
    cell.act(mode)
    return "ok"


def sync_function(cell: Cell, mode: str, **opts: Any) -> Callable[[], Any]:
    @sg.protected(cell.breaker.name, **opts)
    def call() -> str:
        cell.act(mode)
        return "ok"

    return call


def coroutine_function(cell: Cell, mode: str, **opts: Any) -> Callable[[], Any]:
    @sg.protected(cell.breaker.name, **opts)
    async def call() -> str:
        return await _async_body(cell, mode, interruptible=True)

    return call


def generator(cell: Cell, mode: str, **opts: Any) -> Callable[[], Any]:
    @sg.protected(cell.breaker.name, **opts)
    def rows() -> Iterator[str]:
        cell.act(mode)
        yield "ok"

    return lambda: next(iter(list(rows())))


def async_generator(cell: Cell, mode: str, **opts: Any) -> Callable[[], Any]:
    @sg.protected(cell.breaker.name, **opts)
    async def rows() -> AsyncIterator[str]:
        # Iteration is timed, not interrupted: a slow one is slow on the fake clock.
        yield await _async_body(cell, mode, interruptible=False)

    async def first() -> str:
        found = [row async for row in rows()]
        return found[0]

    return first


def sync_method(cell: Cell, mode: str, **opts: Any) -> Callable[[], Any]:
    class Client:
        @sg.protected(cell.breaker.name, **opts)
        def call(self) -> str:
            cell.act(mode)
            return "ok"

    return Client().call


def async_method(cell: Cell, mode: str, **opts: Any) -> Callable[[], Any]:
    class Client:
        @sg.protected(cell.breaker.name, **opts)
        async def call(self) -> str:
            return await _async_body(cell, mode, interruptible=True)

    return Client().call


KINDS: dict[str, Callable[..., Callable[[], Any]]] = {
    "function": sync_function,
    "coroutine function": coroutine_function,
    "generator": generator,
    "async generator": async_generator,
    "method": sync_method,
    "async method": async_method,
}
ASYNC_KINDS = {"coroutine function", "async generator", "async method"}
# Awaiting is interrupted at the timeout (TimeoutError); a sync call or an iteration cannot
# be, so it returns its result and counts as a failure.
INTERRUPTED_AT_TIMEOUT = {"coroutine function", "async method"}


# -- the outcomes: what each must record, whatever the kind --------------------------------


@dataclass(frozen=True)
class Expected:
    requests: int  # executed calls (and histogram observations)
    errors: int  # executed calls the breaker counted as failures
    rejected: int  # calls refused with circuit_open
    state: sg.BreakerState


OUTCOMES: dict[str, Expected] = {
    "success": Expected(1, 0, 0, sg.BreakerState.CLOSED),
    "failure": Expected(1, 1, 0, sg.BreakerState.OPEN),
    "ignored": Expected(1, 0, 0, sg.BreakerState.CLOSED),
    "rejected": Expected(0, 0, 1, sg.BreakerState.FORCED_OPEN),
    "timeout": Expected(1, 1, 0, sg.BreakerState.OPEN),
    "cancelled": Expected(0, 0, 0, sg.BreakerState.CLOSED),
}


def cells() -> Iterator[Any]:
    for kind, outcome, pooled in itertools.product(KINDS, OUTCOMES, (False, True)):
        if outcome == "cancelled" and kind not in ASYNC_KINDS:
            continue  # only an awaiting caller can be cancelled
        wrapper = "general" if pooled else "fast"
        yield pytest.param(kind, outcome, pooled, id=f"{kind}-{outcome}-{wrapper}")


def make_cell(outcome: str, pooled: bool) -> Cell:
    name = f"matrix-{next(_names)}"
    clock = FakeClock()
    registry = CollectorRegistry()
    breaker = sg.CircuitBreaker(name, failure_threshold=1, ignore_on=Ignored, clock=clock)
    metrics = sg.Metrics(name, registry=registry, clock=clock)
    pool = sg.DynamicPool(name=name, min_size=1, max_size=2) if pooled else None
    error: BaseException = Ignored("ignored") if outcome == "ignored" else ConnectionError("down")
    return Cell(clock, breaker, metrics, registry, pool, error)


def run(cell: Cell, call: Callable[[], Any], kind: str, outcome: str) -> Any:
    """Make the call as its kind is made; cancel it mid-call for "cancelled"."""
    if kind not in ASYNC_KINDS:
        return call()

    async def main() -> Any:
        if outcome != "cancelled":
            return await call()
        cell.started = asyncio.Event()
        task = asyncio.ensure_future(call())
        await cell.started.wait()
        task.cancel()
        return await task

    return asyncio.run(main())


def recorded(cell: Cell) -> tuple[int, int, int, float]:
    name = cell.breaker.name
    stats = cell.metrics.stats()
    rejected = cell.registry.get_sample_value(
        "switchgear_rejected_total", {"name": name, "reason": "circuit_open"}
    )
    histogram = cell.registry.get_sample_value(
        "switchgear_request_duration_seconds_count", {"name": name}
    )
    return stats.request_count, stats.error_count, int(rejected or 0), histogram or 0.0


@pytest.mark.parametrize(("kind", "outcome", "pooled"), list(cells()))
def test_each_kind_records_each_outcome_alike(kind: str, outcome: str, pooled: bool) -> None:
    cell = make_cell(outcome, pooled)
    opts = {
        "breaker": cell.breaker,
        "metrics": cell.metrics,
        "pool": cell.pool,
        "timeout": TIMEOUT if outcome == "timeout" else None,
    }
    call = KINDS[kind](cell, outcome, **opts)
    if outcome == "rejected":
        cell.breaker.force_open()

    result: Any = None
    raised: BaseException | None = None
    try:
        result = run(cell, call, kind, outcome)
    except BaseException as exc:  # the cell decides which one it must be
        raised = exc

    expected = OUTCOMES[outcome]
    if outcome in ("failure", "ignored"):
        assert raised is cell.error  # the callable's own exception, unchanged
    elif outcome == "rejected":
        assert isinstance(raised, sg.CircuitOpenError)
        assert raised.reason == "circuit_open"
    elif outcome == "cancelled":
        assert isinstance(raised, asyncio.CancelledError)
    elif outcome == "timeout" and kind in INTERRUPTED_AT_TIMEOUT:
        assert isinstance(raised, TimeoutError)
    else:
        assert raised is None
        assert result == "ok"

    requests, errors, rejected, observed = recorded(cell)
    assert (requests, errors, rejected) == (expected.requests, expected.errors, expected.rejected)
    assert observed == expected.requests  # one latency observation per executed call
    assert cell.breaker.state is expected.state
    if cell.pool is not None:
        assert cell.pool.stats().in_use == 0  # the resource went back, whatever happened

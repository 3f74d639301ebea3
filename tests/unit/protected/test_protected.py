"""@protected and instrument(): every kind of callable, rejections, fallbacks, timeouts."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import switchgear as sg
from switchgear.testing import FakeClock

_names = itertools.count()


def unique(prefix: str = "p") -> str:
    return f"{prefix}-{next(_names)}"


def parts(
    clock: FakeClock | None = None, **breaker_options: Any
) -> tuple[str, sg.CircuitBreaker, sg.Metrics, CollectorRegistry]:
    name = unique()
    registry = CollectorRegistry()
    if clock is not None:
        breaker_options["clock"] = clock
    breaker = sg.CircuitBreaker(name, **breaker_options)
    metrics = (
        sg.Metrics(name, registry=registry, clock=clock)
        if clock is not None
        else sg.Metrics(name, registry=registry)
    )
    return name, breaker, metrics, registry


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Boom(Exception):
    pass


# -- kinds of callables ---------------------------------------------------------------------


def test_plain_function_keeps_identity_and_counts() -> None:
    name, breaker, metrics, _ = parts()

    @sg.protected(name, breaker=breaker, metrics=metrics)
    def add(a: int, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    assert add(1) == 3
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 2) -> 'int'"
    assert not inspect.iscoroutinefunction(add)
    assert metrics.stats().request_count == 1


def test_bare_decorator_uses_the_qualified_name() -> None:
    @sg.protected
    def bare() -> str:
        return "ok"

    assert bare() == "ok"
    plan = bare.__switchgear__  # type: ignore[attr-defined]
    assert plan.name == f"{__name__}.test_bare_decorator_uses_the_qualified_name.<locals>.bare"
    assert plan.breaker.name == plan.name


def test_coroutine_function() -> None:
    name, breaker, metrics, _ = parts()

    @sg.protected(name, breaker=breaker, metrics=metrics)
    async def fetch(x: int) -> int:
        """Fetch."""
        await asyncio.sleep(0)
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__doc__ == "Fetch."
    assert asyncio.run(fetch(4)) == 8
    assert metrics.stats().request_count == 1


def test_methods_classmethods_staticmethods_bind_correctly() -> None:
    name, breaker, metrics, _ = parts()
    opts: dict[str, Any] = {"breaker": breaker, "metrics": metrics}

    class Service:
        factor = 10

        def __init__(self) -> None:
            self.base = 1

        @sg.protected(name, **opts)
        def method(self, x: int) -> int:
            return self.base + x

        @sg.protected(name, **opts)
        @classmethod
        def cm_outer(cls, x: int) -> int:
            return cls.factor * x

        @classmethod
        @sg.protected(name, **opts)
        def cm_inner(cls, x: int) -> int:
            return cls.factor + x

        @sg.protected(name, **opts)
        @staticmethod
        def sm(x: int) -> int:
            return -x

        @sg.protected(name, **opts)
        async def amethod(self, x: int) -> int:
            return self.base * x

    svc = Service()
    assert svc.method(2) == 3
    assert Service.cm_outer(3) == 30
    assert svc.cm_outer(3) == 30
    assert Service.cm_inner(3) == 13
    assert Service.sm(4) == -4
    assert svc.sm(4) == -4
    assert asyncio.run(svc.amethod(5)) == 5
    assert inspect.iscoroutinefunction(svc.amethod)
    assert list(inspect.signature(svc.method).parameters) == ["x"]
    assert isinstance(vars(Service)["cm_outer"], classmethod)
    assert isinstance(vars(Service)["sm"], staticmethod)
    assert metrics.stats().request_count == 7


def test_generator_is_timed_over_the_whole_iteration(clock: FakeClock) -> None:
    name, breaker, metrics, _ = parts(clock)

    @sg.protected(name, breaker=breaker, metrics=metrics)
    def rows(n: int) -> Iterator[int]:
        for i in range(n):
            clock.advance(0.5)
            yield i

    assert inspect.isgeneratorfunction(rows)
    gen = rows(3)
    clock.advance(10.0)  # creating the generator object is not the call
    assert metrics.stats().request_count == 0
    assert list(gen) == [0, 1, 2]
    stats = metrics.stats()
    assert stats.request_count == 1
    assert stats.avg_latency == pytest.approx(1.5)


def test_generator_closed_early_is_a_completed_call(clock: FakeClock) -> None:
    name, breaker, metrics, _ = parts(clock, failure_threshold=1)

    @sg.protected(name, breaker=breaker, metrics=metrics)
    def endless() -> Iterator[int]:
        i = 0
        while True:
            clock.advance(1.0)
            yield i
            i += 1

    for i in endless():
        if i == 2:
            break
    assert breaker.state is sg.BreakerState.CLOSED
    stats = metrics.stats()
    assert (stats.request_count, stats.success_count) == (1, 1)
    assert stats.avg_latency == pytest.approx(3.0)


def test_generator_failure_counts(clock: FakeClock) -> None:
    name, breaker, metrics, _ = parts(clock, failure_threshold=1)

    @sg.protected(name, breaker=breaker, metrics=metrics)
    def broken() -> Iterator[int]:
        yield 1
        raise Boom

    with pytest.raises(Boom):
        list(broken())
    assert breaker.state is sg.BreakerState.OPEN
    assert metrics.stats().error_count == 1


def test_async_generator_is_timed_over_the_whole_iteration(clock: FakeClock) -> None:
    name, breaker, metrics, _ = parts(clock)

    @sg.protected(name, breaker=breaker, metrics=metrics)
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            clock.advance(0.25)
            await asyncio.sleep(0)
            yield i

    assert inspect.isasyncgenfunction(stream)

    async def main() -> list[int]:
        return [i async for i in stream(4)]

    assert asyncio.run(main()) == [0, 1, 2, 3]
    stats = metrics.stats()
    assert stats.request_count == 1
    assert stats.avg_latency == pytest.approx(1.0)


def test_async_generator_asend_and_athrow_pass_through() -> None:
    name, breaker, metrics, _ = parts()

    @sg.protected(name, breaker=breaker, metrics=metrics)
    async def echo() -> AsyncGenerator[str, str]:
        received = "start"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = "thrown"

    async def main() -> list[str]:
        agen = echo()
        out = [await agen.__anext__(), await agen.asend("a"), await agen.athrow(KeyError())]
        await agen.aclose()
        return out

    assert asyncio.run(main()) == ["got start", "got a", "got thrown"]
    assert metrics.stats().request_count == 1


# -- outcomes ---------------------------------------------------------------------------------


def test_user_exception_is_the_same_object() -> None:
    name, breaker, metrics, _ = parts()
    original = Boom("mine")

    @sg.protected(name, breaker=breaker, metrics=metrics)
    def raise_() -> None:
        raise original

    with pytest.raises(Boom) as info:
        raise_()
    assert info.value is original
    assert metrics.stats().error_count == 1


def test_fallback_receives_the_exception_on_failure_and_rejection(clock: FakeClock) -> None:
    name, breaker, metrics, registry = parts(clock, failure_threshold=2, open_timeout=10.0)
    seen: list[tuple[type[BaseException], tuple[Any, ...]]] = []

    def fallback(exc: BaseException, *args: Any, **kwargs: Any) -> str:
        seen.append((type(exc), args))
        return "fallback"

    @sg.protected(name, breaker=breaker, metrics=metrics, fallback=fallback)
    def fetch(key: str) -> str:
        raise Boom(key)

    assert fetch("a") == "fallback"
    assert fetch("b") == "fallback"
    assert breaker.state is sg.BreakerState.OPEN
    assert fetch("c") == "fallback"
    assert seen == [(Boom, ("a",)), (Boom, ("b",)), (sg.CircuitOpenError, ("c",))]
    s = samples(registry)
    assert s[("switchgear_rejected_total", (("name", name), ("reason", "circuit_open")))] == 1
    assert s[("switchgear_requests_total", (("name", name), ("outcome", "error")))] == 2


def test_fallback_not_used_for_ignored_exceptions() -> None:
    name, _, metrics, _ = parts()
    breaker = sg.CircuitBreaker(name, ignore_on=KeyError)

    @sg.protected(name, breaker=breaker, metrics=metrics, fallback=lambda exc: "fallback")
    def lookup() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        lookup()
    stats = metrics.stats()
    # An ignored exception is a completed call that the breaker does not count as failed.
    assert (stats.request_count, stats.error_count) == (1, 0)


def test_async_fallback_may_be_a_coroutine() -> None:
    name, breaker, metrics, _ = parts()

    async def fallback(exc: BaseException) -> str:
        return f"fallback for {type(exc).__name__}"

    @sg.protected(name, breaker=breaker, metrics=metrics, fallback=fallback)
    async def fetch() -> str:
        raise Boom

    assert asyncio.run(fetch()) == "fallback for Boom"


def test_pool_rejections_never_trip_the_breaker() -> None:
    name, breaker, metrics, registry = parts(failure_threshold=1)
    pool: sg.DynamicPool[Any] = sg.DynamicPool(
        None, name=name, min_size=1, max_size=1, max_waiting=0
    )
    held = pool.acquire()

    @sg.protected(name, breaker=breaker, metrics=metrics, pool=pool)
    def work() -> str:
        return "done"

    for _ in range(5):
        with pytest.raises(sg.PoolFullError):
            work()
    assert breaker.state is sg.BreakerState.CLOSED
    assert (
        samples(registry)[("switchgear_rejected_total", (("name", name), ("reason", "pool_full")))]
        == 5
    )
    pool.release(held)
    assert work() == "done"
    pool.close()


def test_half_open_rejection_returns_no_permit_leak(clock: FakeClock) -> None:
    """A pool rejection after the breaker admitted a trial call gives the permit back."""
    name, breaker, metrics, _ = parts(
        clock, failure_threshold=1, success_threshold=1, open_timeout=1.0
    )
    pool: sg.DynamicPool[Any] = sg.DynamicPool(
        None, name=name, min_size=1, max_size=1, max_waiting=0
    )

    @sg.protected(name, breaker=breaker, metrics=metrics, pool=pool)
    def work(fail: bool = False) -> str:
        if fail:
            raise Boom
        return "done"

    with pytest.raises(Boom):
        work(fail=True)
    clock.advance(1.0)
    held = pool.acquire()
    with pytest.raises(sg.PoolFullError):
        work()
    pool.release(held)
    assert work() == "done"  # the trial permit was returned, so this trial could run
    assert breaker.state is sg.BreakerState.CLOSED
    pool.close()


def test_pool_resource_argument_and_cold_start() -> None:
    name, breaker, metrics, _ = parts()
    made: list[object] = []

    def factory() -> object:
        made.append(object())
        return made[-1]

    pool: sg.DynamicPool[object] = sg.DynamicPool(factory, name=name, min_size=0, max_size=2)

    @sg.protected(name, breaker=breaker, metrics=metrics, pool=pool, resource_arg="engine")
    def work(x: int, *, engine: object = None) -> tuple[int, object]:
        return x, engine

    assert work(1) == (1, made[0])
    assert work(2) == (2, made[0])  # reused: not a cold start
    stats = metrics.stats()
    assert (stats.request_count, stats.cold_start_count) == (2, 1)
    assert pool.stats().in_use == 0
    pool.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_fallback_gets_the_callers_arguments_without_the_leased_resource(kind: str) -> None:
    name, breaker, metrics, _ = parts()
    pool: sg.DynamicPool[str] = sg.DynamicPool(
        lambda: "engine-1", name=name, min_size=0, max_size=1
    )
    seen: list[tuple[type[BaseException], tuple[Any, ...], dict[str, Any]]] = []

    def fallback(exc: BaseException, *args: Any, **kwargs: Any) -> str:
        seen.append((type(exc), args, kwargs))
        return "fallback"

    options: dict[str, Any] = {
        "breaker": breaker,
        "metrics": metrics,
        "pool": pool,
        "resource_arg": "engine",
        "fallback": fallback,
    }
    if kind == "sync":

        @sg.protected(name, **options)
        def work(x: int, *, flag: bool, engine: str = "") -> str:
            assert engine == "engine-1"
            raise ConnectionError("down")

        assert work(1, flag=True) == "fallback"
    else:

        @sg.protected(name, **options)
        async def awork(x: int, *, flag: bool, engine: str = "") -> str:
            assert engine == "engine-1"
            raise ConnectionError("down")

        assert asyncio.run(awork(1, flag=True)) == "fallback"
    assert seen == [(ConnectionError, (1,), {"flag": True})]
    assert pool.stats().in_use == 0
    pool.close()


def test_async_timeout_cancels_and_counts_a_failure() -> None:
    name, breaker, metrics, _ = parts(failure_threshold=1)
    cancelled = threading.Event()

    @sg.protected(name, breaker=breaker, metrics=metrics, timeout=0.01)
    async def hang() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        asyncio.run(hang())
    assert cancelled.is_set()
    assert breaker.state is sg.BreakerState.OPEN
    assert metrics.stats().error_count == 1


def test_sync_timeout_returns_the_result_but_counts_a_failure(clock: FakeClock) -> None:
    name, breaker, metrics, _ = parts(clock, failure_threshold=1)

    @sg.protected(name, breaker=breaker, metrics=metrics, timeout=1.0)
    def slow() -> str:
        clock.advance(2.0)
        return "late"

    assert slow() == "late"
    assert breaker.state is sg.BreakerState.OPEN
    assert metrics.stats().error_count == 1


def test_cancelled_calls_are_not_recorded() -> None:
    name, breaker, metrics, _ = parts(failure_threshold=1)

    @sg.protected(name, breaker=breaker, metrics=metrics)
    async def forever() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.ensure_future(forever())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert metrics.stats().request_count == 0
    assert breaker.state is sg.BreakerState.CLOSED


def test_slow_call_rule_sees_the_decorator_duration(clock: FakeClock) -> None:
    name, breaker, metrics, _ = parts(
        clock, slow_call_duration=1.0, slow_call_rate_threshold=1.0, minimum_calls=2
    )

    @sg.protected(name, breaker=breaker, metrics=metrics)
    def slow() -> None:
        clock.advance(1.5)

    slow()
    slow()
    assert breaker.state is sg.BreakerState.OPEN


# -- sharing ----------------------------------------------------------------------------------


def test_same_name_shares_one_breaker_and_one_series() -> None:
    name = unique("shared")

    @sg.protected(name)
    def one() -> None:
        raise Boom

    @sg.protected(name)
    def two() -> None:
        raise Boom

    plan_one = one.__switchgear__  # type: ignore[attr-defined]
    plan_two = two.__switchgear__  # type: ignore[attr-defined]
    assert plan_one.breaker is plan_two.breaker
    for fn in (one, two, one, two, one):
        with pytest.raises(Boom):
            fn()
    assert plan_one.breaker.state is sg.BreakerState.OPEN
    with pytest.raises(sg.CircuitOpenError):
        two()
    assert plan_one.metrics.stats().error_count == 5


# -- end to end -------------------------------------------------------------------------------


def test_trip_reject_half_open_recover_visible_in_exposition(clock: FakeClock) -> None:
    name, breaker, metrics, registry = parts(
        clock, failure_threshold=3, success_threshold=2, open_timeout=30.0
    )
    dependency_up = False

    @sg.protected(name, breaker=breaker, metrics=metrics)
    def charge() -> str:
        clock.advance(0.02)
        if not dependency_up:
            raise ConnectionError("down")
        return "charged"

    def state_gauge() -> dict[str, float]:
        s = samples(registry)
        return {
            state.value: s[("switchgear_circuit_state", (("name", name), ("state", state.value)))]
            for state in sg.BreakerState
        }

    assert state_gauge()["closed"] == 1
    for _ in range(3):
        with pytest.raises(ConnectionError):
            charge()
    assert state_gauge() == {
        "closed": 0,
        "open": 1,
        "half_open": 0,
        "forced_open": 0,
        "disabled": 0,
    }
    clock.advance(10.0)
    with pytest.raises(sg.CircuitOpenError) as info:
        charge()
    assert info.value.retry_after == pytest.approx(30.0 - 10.0 - 0.0, abs=0.1)
    clock.advance(20.0)
    assert state_gauge()["half_open"] == 1
    dependency_up = True
    assert charge() == "charged"
    assert charge() == "charged"
    assert state_gauge()["closed"] == 1
    s = samples(registry)

    def transitions(a: str, b: str) -> float:
        key = ("from_state", a), ("name", name), ("to_state", b)
        return s[("switchgear_circuit_transitions_total", key)]

    assert transitions("closed", "open") == 1
    assert transitions("open", "half_open") == 1
    assert transitions("half_open", "closed") == 1
    assert s[("switchgear_rejected_total", (("name", name), ("reason", "circuit_open")))] == 1
    assert s[("switchgear_requests_total", (("name", name), ("outcome", "error")))] == 3
    assert s[("switchgear_requests_total", (("name", name), ("outcome", "success")))] == 2
    time_open = s[("switchgear_circuit_time_seconds_total", (("name", name), ("state", "open")))]
    assert time_open == pytest.approx(30.0, abs=0.1)


# -- instrument() ----------------------------------------------------------------------------


def _write_module(tmp_path: Path, name: str) -> None:
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            class Client:
                def get(self, key):
                    if key == "bad":
                        raise ConnectionError(key)
                    return f"value of {key}"

                @classmethod
                def make(cls):
                    return cls()

            def ping():
                return "pong"
            """
        )
    )


def test_instrument_module_imported_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = unique("late_mod").replace("-", "_")
    _write_module(tmp_path, mod)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = unique("instr")
    sg.instrument(f"{mod}:Client.get", name=name)
    sg.instrument(f"{mod}:Client.make", name=name)
    assert mod not in sys.modules
    module = __import__(mod)
    client = module.Client.make()
    assert client.get("a") == "value of a"
    with pytest.raises(ConnectionError):
        client.get("bad")
    plan = module.Client.get.__switchgear__
    assert plan.name == name
    assert plan.metrics.stats().request_count == 3  # make + two gets
    assert isinstance(vars(module.Client)["make"], classmethod)


def test_instrument_module_already_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = unique("early_mod").replace("-", "_")
    _write_module(tmp_path, mod)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(mod)
    name = unique("instr")
    sg.instrument(f"{mod}:ping", name=name)
    sg.instrument(f"{mod}:ping", name=name)  # twice: still wrapped once
    assert module.ping() == "pong"
    assert module.ping.__switchgear__.metrics.stats().request_count == 1
    assert not hasattr(module.ping.__wrapped__, "__switchgear__")


@pytest.mark.parametrize("target", ["no_colon", "mod:", ":attr", "mod:a..b", "1mod:x"])
def test_instrument_bad_targets(target: str) -> None:
    with pytest.raises(ValueError, match="target"):
        sg.instrument(target)


# -- bad input --------------------------------------------------------------------------------


def test_bad_decoration() -> None:
    with pytest.raises(TypeError, match="callable"):
        sg.protected(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="callable"):
        sg.protected("named")(42)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="timeout"):
        sg.protected("t", timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        sg.protected("t", timeout=-1.0)
    with pytest.raises(TypeError, match="fallback"):
        sg.protected("t", fallback="nope")  # type: ignore[call-overload]
    breaker = sg.CircuitBreaker(unique())
    with pytest.raises(ValueError, match="breaker is named"):
        sg.protected("other-name", breaker=breaker)(lambda: None)
    with pytest.raises(TypeError, match="breaker"):
        sg.protected("x", breaker="b")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="resource_arg"):
        sg.protected("x", resource_arg="engine")(lambda: None)
    with pytest.raises(ValueError, match="name"):
        sg.protected("")(lambda: None)


# -- review fixes: explicit breakers, own timeouts, generator fallbacks --------------------


def test_a_different_breaker_for_a_shared_name_is_refused() -> None:
    name = unique()

    @sg.protected(name)
    def first() -> int:
        return 1

    mine = sg.CircuitBreaker(name, failure_threshold=1)
    with pytest.raises(ValueError, match="breaker: another CircuitBreaker named"):
        sg.protected(name, breaker=mine)(lambda: 2)
    shared = first.__switchgear__.breaker  # type: ignore[attr-defined]
    again: Any = sg.protected(name, breaker=shared)(lambda: 3)  # the same object is fine
    assert again.__switchgear__.breaker is shared
    assert first() == 1


def test_async_timeout_lets_the_callables_own_timeout_error_through() -> None:
    name, breaker, metrics, _ = parts(ignore_on=TimeoutError, failure_threshold=1)
    own = TimeoutError("the callable's own")

    @sg.protected(name, breaker=breaker, metrics=metrics, timeout=5.0)
    async def f() -> None:
        raise own

    with pytest.raises(TimeoutError) as info:
        asyncio.run(f())
    assert info.value is own
    assert breaker.state is sg.BreakerState.CLOSED  # ignore_on applies to it as to any other

    @sg.protected(name, breaker=breaker, metrics=metrics, timeout=0.01)
    async def slow() -> None:
        await asyncio.sleep(5)

    with pytest.raises(TimeoutError, match=r"did not finish within 0\.01s"):
        asyncio.run(slow())
    assert breaker.state is sg.BreakerState.OPEN  # ours is a failure, whatever ignore_on says


def test_generator_fallback_answers_a_failure_before_the_first_item_only() -> None:
    name, breaker, metrics, _ = parts(failure_threshold=10)

    def fallback(exc: BaseException, n: int) -> list[str]:
        return [f"fallback for {n}"]

    @sg.protected(name, breaker=breaker, metrics=metrics, fallback=fallback)
    def rows(n: int) -> Iterator[str]:
        if n == 0:
            raise ConnectionError("down before anything")
        yield "first"
        raise ConnectionError("down midway")

    assert list(rows(0)) == ["fallback for 0"]
    seen: list[str] = []

    def consume() -> None:
        seen.extend(rows(1))

    with pytest.raises(ConnectionError, match="midway"):
        consume()
    assert seen == ["first"]  # half a result is not replaced by a fallback
    assert metrics.stats().error_count == 2


def test_async_generator_fallback_and_timeout() -> None:
    name, breaker, metrics, _ = parts(failure_threshold=10)

    async def fallback(exc: BaseException, n: int) -> list[str]:
        return [f"fallback for {n}"]

    @sg.protected(name, breaker=breaker, metrics=metrics, fallback=fallback, timeout=0.05)
    async def rows(n: int) -> AsyncIterator[str]:
        if n == 0:
            raise ConnectionError("down before anything")
        if n == 2:
            await asyncio.sleep(0.1)  # longer than the timeout: counted as a failure
        yield "first"
        if n == 1:
            raise ConnectionError("down midway")

    async def collect(n: int) -> list[str]:
        return [row async for row in rows(n)]

    assert asyncio.run(collect(0)) == ["fallback for 0"]
    with pytest.raises(ConnectionError, match="midway"):
        asyncio.run(collect(1))
    assert asyncio.run(collect(2)) == ["first"]
    assert metrics.stats().error_count == 3
    assert metrics.stats().request_count == 3


def test_exception_filters_must_be_exception_types_or_predicates() -> None:
    for option in ("failure_on", "ignore_on"):
        for bad in (int, dict, object, str):
            options: dict[str, Any] = {option: bad}
            with pytest.raises(TypeError, match=option):
                sg.CircuitBreaker(unique(), **options)


def test_a_raising_predicate_counts_a_failure_and_settles_the_trial(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()

    def broken(exc: BaseException) -> bool:
        raise KeyError("predicate bug")

    name, breaker, metrics, _ = parts(
        clock, failure_on=broken, failure_threshold=1, success_threshold=1, open_timeout=1.0
    )
    calls = itertools.count()

    @sg.protected(name, breaker=breaker, metrics=metrics)
    def f() -> int:
        if next(calls) < 2:
            raise Boom("the caller's own")
        return 1

    with pytest.raises(Boom):
        f()
    assert breaker.state is sg.BreakerState.OPEN
    clock.advance(1.0)
    with pytest.raises(Boom):  # the HALF_OPEN trial fails: its permit is settled, not leaked
        f()
    assert breaker.state is sg.BreakerState.OPEN
    clock.advance(1.0)
    assert f() == 1
    assert breaker.state is sg.BreakerState.CLOSED
    assert sum("predicate raised" in r.getMessage() for r in caplog.records) == 1


# -- refused at once, never later ---------------------------------------------------------------


def test_instrument_typo_in_an_imported_module_is_refused_at_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = unique("typo_now").replace("-", "_")
    _write_module(tmp_path, mod)
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__(mod)
    with pytest.raises(ValueError, match=r"has no attribute 'gte'"):
        sg.instrument(f"{mod}:Client.gte")
    with pytest.raises(TypeError, match="must be callable"):
        sg.instrument(f"{mod}:__name__")


def test_instrument_typo_in_a_module_imported_later_never_breaks_its_import(
    tmp_path: Path,
) -> None:
    """In a fresh interpreter: the module imports and works, unpatched; the typo is logged."""
    mod = unique("typo_later").replace("-", "_")
    _write_module(tmp_path, mod)
    script = textwrap.dedent(
        f"""
        import logging, sys
        logging.basicConfig(level=logging.ERROR)
        sys.path.insert(0, {str(tmp_path)!r})
        import switchgear as sg

        sg.instrument("{mod}:Client.gte")  # typo: Client.get
        sg.instrument("{mod}:ping")
        import {mod}
        assert {mod}.Client().get("a") == "value of a"
        assert not hasattr({mod}.Client.get, "__switchgear__")  # left unpatched
        assert {mod}.ping() == "pong" and hasattr({mod}.ping, "__switchgear__")
        print("imported")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "imported"
    assert f"instrument('{mod}:Client.gte') could not be applied" in proc.stderr


@pytest.mark.parametrize("bad", ["", " padded ", "a\udc80b"])
def test_instrument_and_protected_refuse_a_bad_name_at_once(bad: str) -> None:
    with pytest.raises(ValueError, match="name"):
        sg.instrument("json:dumps", name=bad)
    with pytest.raises(ValueError, match="name"):
        sg.protected(bad)


def test_resource_arg_of_the_wrong_type_is_a_type_error() -> None:
    pool: sg.DynamicPool[Any] = sg.DynamicPool(None, name=unique("ra"), min_size=0, max_size=1)
    with pytest.raises(TypeError, match="resource_arg"):
        sg.protected("ra", pool=pool, resource_arg=5)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="resource_arg"):
        sg.protected("ra", pool=pool, resource_arg="not an identifier")
    with pytest.raises(ValueError, match="resource_arg"):
        sg.protected("ra", resource_arg="engine")  # no pool to lease from
    pool.close()


def test_a_failed_decoration_leaves_nothing_registered() -> None:
    name = unique("all-or-nothing")
    # Metrics of this name with other buckets: a Metrics made by the decoration is refused.
    odd = sg.Metrics(name, buckets=(0.5, 1.0))
    first = sg.CircuitBreaker(name, failure_threshold=2)
    with pytest.raises(ValueError, match="buckets"):
        sg.protected(name, breaker=first)(lambda: None)
    # The corrected decoration, with another breaker for the same name, is accepted.
    second = sg.CircuitBreaker(name, failure_threshold=7)

    def ok() -> str:
        return "ok"

    fn = sg.protected(name, breaker=second, metrics=odd)(ok)
    assert fn() == "ok"
    assert fn.__switchgear__.breaker is second  # type: ignore[attr-defined]
    assert first is not second

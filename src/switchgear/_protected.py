"""``@protected``: admission (breaker, limit, then pool), the call, one timing, one record.

Everything that can be decided at decoration time is: the kind of callable (sync, coroutine,
generator, async generator), which components exist, and which of a few specialised wrappers
runs. The common case (breaker + metrics, no pool, no fallback, no timeout) is a short closure
over pre-bound methods: no per-call lookups, allocations of config objects, or locks held
across the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, TypeVar, overload

from . import _validate as v
from ._breaker.breaker import CircuitBreaker
from ._breaker.protocol import FAILURE, NEUTRAL, NEVER_COUNTED, SUCCESS
from ._breaker.registry import breaker_named, register_breaker, unregister_breaker
from ._errors import (
    CircuitOpenError,
    LimitExceededError,
    PoolFullError,
    PoolTimeoutError,
    Rejection,
)
from ._limit.limiter import AdaptiveLimit
from ._metrics.facade import Metrics
from ._pool.pool import DynamicPool
from ._protected_checks import check_components, check_fallback, check_resource_arg
from ._protected_fast import fast_async, fast_sync, limit_steps

__all__ = ["protected"]

F = TypeVar("F", bound=Callable[..., Any])

_REJECTIONS = (CircuitOpenError, LimitExceededError, PoolFullError, PoolTimeoutError)


class _Plan:
    """The resolved components of one protected callable, and the steps every wrapper shares.

    ``enter`` admits (breaker, concurrency limit, then pool) and ``succeeded``/``failed``
    settle the call, so the sync, async and generator wrappers differ only in how they run
    the callable. Rejections are counted here, once, and never reach the breaker as failures.
    """

    __slots__ = (
        "breaker",
        "fallback",
        "limit",
        "metrics",
        "name",
        "pool",
        "resource_arg",
        "settle_limit",
        "timeout",
    )

    def __init__(
        self,
        name: str,
        breaker: CircuitBreaker,
        metrics: Metrics,
        pool: DynamicPool[Any] | None,
        fallback: Callable[..., Any] | None,
        timeout: float | None,
        resource_arg: str | None,
        limit: AdaptiveLimit | None = None,
    ) -> None:
        self.name = name
        self.limit = limit
        # The rule a finished call settles the limit by (shared with the fast wrappers).
        self.settle_limit = None if limit is None else limit_steps(limit, breaker.clock)[1]
        self.breaker = breaker
        self.metrics = metrics
        self.pool = pool
        self.fallback = fallback
        self.timeout = timeout
        self.resource_arg = resource_arg

    def _admit(self) -> int | None:
        try:
            return self.breaker.admit()
        except CircuitOpenError as exc:
            self.metrics.series.reject(exc.reason)
            raise

    def _abandon(self, token: int | None, exc: BaseException) -> None:
        # The call never ran: give the breaker its permit back, count a limit's or a pool's
        # rejection.
        self.breaker.finish(token, NEUTRAL, 0.0)
        if isinstance(exc, Rejection):
            self.metrics.series.reject(exc.reason)

    def _limit(self, token: int | None) -> None:
        limit = self.limit
        if limit is not None:
            try:
                limit.acquire()
            except LimitExceededError as exc:
                self._abandon(token, exc)
                raise

    def _unlimit(self) -> None:
        if self.limit is not None:
            self.limit.cancel()

    def _lease(self, kwargs: dict[str, Any], resource: Any) -> None:
        if self.resource_arg is not None:
            kwargs[self.resource_arg] = resource

    def enter(self, kwargs: dict[str, Any]) -> tuple[int | None, Any, bool]:
        """Admit a call: ``(token, resource, cold)``, or raise the recorded rejection."""
        token = self._admit()
        self._limit(token)
        if self.pool is None:
            return token, None, False
        try:
            resource, cold, _ = self.pool.acquire_timed()
        except BaseException as exc:
            self._unlimit()
            self._abandon(token, exc)
            raise
        self._lease(kwargs, resource)
        return token, resource, cold

    async def enter_async(self, kwargs: dict[str, Any]) -> tuple[int | None, Any, bool]:
        """:meth:`enter` for coroutines: waiting for the pool never blocks the loop."""
        token = self._admit()
        self._limit(token)
        if self.pool is None:
            return token, None, False
        try:
            resource, cold, _ = await self.pool.acquire_timed_async()
        except BaseException as exc:
            self._unlimit()
            self._abandon(token, exc)
            raise
        self._lease(kwargs, resource)
        return token, resource, cold

    def succeeded(
        self, token: int | None, resource: Any, cold: bool, duration: float, timed: bool = True
    ) -> None:
        """Settle a call that returned. ``timed``: a call that cannot be interrupted returns
        its result even when over its timeout, and counts as a failure, so a slow dependency
        still trips the breaker; an awaited one was interrupted at it instead (``False``).
        """
        ok = not timed or self.timeout is None or duration <= self.timeout
        if self.pool is not None:
            self.pool.release(resource, failed=not ok)
        if self.settle_limit is not None:
            self.settle_limit(self.breaker.clock(), duration, SUCCESS if ok else FAILURE)
        self.breaker.finish(token, SUCCESS if ok else FAILURE, duration)
        self.metrics.series.record(duration, ok, cold)

    def failed(
        self,
        token: int | None,
        resource: Any,
        cold: bool,
        exc: BaseException,
        duration: float,
        outcome: int | None = None,
    ) -> bool:
        """Settle a call that raised; true when ``fallback`` should answer instead."""
        if outcome is None:
            outcome = self.breaker.classify(exc)
        if self.pool is not None:
            self.pool.release(resource, failed=outcome == FAILURE)
        if self.settle_limit is not None:
            self.settle_limit(self.breaker.clock(), duration, outcome)
        self.breaker.finish(token, outcome, duration)
        if isinstance(exc, NEVER_COUNTED):
            return False
        self.metrics.series.record(duration, outcome != FAILURE, cold)
        return outcome == FAILURE and self.fallback is not None

    def simple(self) -> bool:
        """Whether the fast wrappers serve: a breaker and metrics (and a limit), no more."""
        return self.pool is None and self.fallback is None and self.timeout is None

    def fallback_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The caller's keyword arguments, without the leased resource."""
        if self.resource_arg is not None:
            kwargs.pop(self.resource_arg, None)
        return kwargs


def _default_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if qualname is None:
        qualname = type(fn).__qualname__
    return f"{module}.{qualname}" if module else str(qualname)


def _plan(
    fn: Callable[..., Any],
    name: str | None,
    *,
    breaker: CircuitBreaker | None,
    pool: DynamicPool[Any] | None,
    limit: AdaptiveLimit | None,
    metrics: Metrics | None,
    fallback: Callable[..., Any] | None,
    timeout: object,
    resource_arg: str | None,
) -> _Plan:
    if name is None:
        name = breaker.name if isinstance(breaker, CircuitBreaker) else _default_name(fn)
    v.name("name", name)
    check_components(name, breaker, pool, metrics, limit)
    v.optional_callable("fallback", fallback)
    if fallback is not None:
        check_fallback(fn, fallback, resource_arg)
    timeout_s = v.optional_seconds("timeout", timeout)
    check_resource_arg(resource_arg, pool)
    # Everything is valid: now the shared components. If one of them still refuses (metrics
    # of this name with other buckets, say), nothing this decoration registered stays.
    if breaker is None:
        breaker, registered = breaker_named(name)
    else:
        # One name, one breaker: silently using another would ignore this one's options.
        registered = register_breaker(breaker)
    try:
        if metrics is None:
            metrics = Metrics(name)
        metrics.attach(breaker)
        if pool is not None:
            metrics.attach(pool)
        if limit is not None:
            metrics.attach(limit)
    except BaseException:
        if registered:
            unregister_breaker(breaker)
        raise
    return _Plan(name, breaker, metrics, pool, fallback, timeout_s, resource_arg, limit)


@overload
def protected(target: F, /) -> F: ...


@overload
def protected(
    target: str | None = None,
    /,
    *,
    breaker: CircuitBreaker | None = None,
    pool: DynamicPool[Any] | None = None,
    limit: AdaptiveLimit | None = None,
    metrics: Metrics | None = None,
    fallback: Callable[..., Any] | None = None,
    timeout: float | None = None,
    resource_arg: str | None = None,
) -> Callable[[F], F]: ...


def protected(
    target: Any = None,
    /,
    *,
    breaker: CircuitBreaker | None = None,
    pool: DynamicPool[Any] | None = None,
    limit: AdaptiveLimit | None = None,
    metrics: Metrics | None = None,
    fallback: Callable[..., Any] | None = None,
    timeout: float | None = None,
    resource_arg: str | None = None,
) -> Any:
    """Protect a callable with a circuit breaker (optionally a concurrency limit and a pool)
    and measure it.

    Works on functions, coroutine functions, methods, classmethods, staticmethods, and sync
    and async generators (timed over the whole iteration). Components with the same name are
    shared; the default name is the function's module-qualified name.

    Example::

        @sg.protected
        def lookup(key): ...

        @sg.protected("payments", pool=engines, resource_arg="engine",
                      fallback=lambda exc, order, **kw: "queued", timeout=2.0)
        async def charge(order, *, engine): ...

    Admission runs the breaker, then ``limit`` (an :class:`AdaptiveLimit`, which may be shared
    by several callables of one dependency), then the pool. Rejections raise
    :class:`CircuitOpenError`, :class:`LimitExceededError`, :class:`PoolFullError` or
    :class:`PoolTimeoutError` (or return ``fallback(exc, *args, **kwargs)``) and are counted
    in ``switchgear_rejected_total``, never as breaker failures. Exceptions from the callable
    pass through unchanged unless ``fallback`` handles a failure.
    """
    options = {
        "breaker": breaker,
        "pool": pool,
        "limit": limit,
        "metrics": metrics,
        "fallback": fallback,
        "timeout": timeout,
        "resource_arg": resource_arg,
    }
    if target is None or isinstance(target, str):
        name = target

        def decorate(fn: F) -> F:
            return _wrap(fn, name, **options)  # type: ignore[no-any-return]

        # Validate what can be validated before the function is seen.
        if name is not None:
            v.name("name", name)
        check_components(name, breaker, pool, metrics, limit)
        if timeout is not None:
            v.seconds("timeout", timeout)
        if fallback is not None:
            v.callable_("fallback", fallback)
        check_resource_arg(resource_arg, pool)
        return decorate
    return _wrap(target, None, **options)


def _wrap(fn: Any, name: str | None, **options: Any) -> Any:
    """``fn`` wrapped for its kind; ``options`` are :func:`protected`'s keywords."""
    if isinstance(fn, (classmethod, staticmethod)):
        return type(fn)(_wrap(fn.__func__, name, **options))
    if not callable(fn):
        raise TypeError(f"@protected needs a callable, not {type(fn).__name__}")
    plan = _plan(fn, name, **options)
    if inspect.isasyncgenfunction(fn):
        wrapper = _async_gen_wrapper(fn, plan)
    elif inspect.isgeneratorfunction(fn):
        wrapper = _gen_wrapper(fn, plan)
    elif inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        fast = fast_async(fn, plan.breaker, plan.metrics.series, plan.limit)
        wrapper = fast if plan.simple() else _async_wrapper(fn, plan)
    elif plan.simple():
        wrapper = fast_sync(fn, plan.breaker, plan.metrics.series, plan.limit)
    else:
        wrapper = _sync_wrapper(fn, plan)
    with contextlib.suppress(AttributeError):  # exotic callables without __dict__
        functools.update_wrapper(wrapper, fn)
    wrapper.__switchgear__ = plan  # type: ignore[attr-defined]
    return wrapper


# -- sync -----------------------------------------------------------------------------------


def _sync_wrapper(fn: Callable[..., Any], plan: _Plan) -> Callable[..., Any]:
    clock = plan.breaker.clock
    fallback = plan.fallback

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            token, resource, cold = plan.enter(kwargs)
        except _REJECTIONS as exc:
            if fallback is None:
                raise
            return fallback(exc, *args, **kwargs)
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if plan.failed(token, resource, cold, exc, clock() - start):
                return fallback(exc, *args, **plan.fallback_kwargs(kwargs))  # type: ignore[misc]
            raise
        plan.succeeded(token, resource, cold, clock() - start)
        return result

    return wrapper


# -- async ----------------------------------------------------------------------------------


class _OwnTimeout(Exception):
    """Carries the callable's own TimeoutError past ``wait_for``, whose timeout looks alike."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc


async def _tag_own_timeout(awaitable: Any) -> Any:
    try:
        return await awaitable
    except asyncio.TimeoutError as exc:
        raise _OwnTimeout(exc) from None


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _async_wrapper(fn: Callable[..., Any], plan: _Plan) -> Callable[..., Any]:
    clock = plan.breaker.clock
    fallback = plan.fallback
    timeout = plan.timeout
    # Without a pool, admission never waits: skip creating a coroutine for it.
    enter = None if plan.pool is not None else plan.enter

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if enter is not None:
                token, resource, cold = enter(kwargs)
            else:
                token, resource, cold = await plan.enter_async(kwargs)
        except _REJECTIONS as exc:
            if fallback is None:
                raise
            return await _maybe_await(fallback(exc, *args, **kwargs))
        start = clock()
        outcome: int | None = None
        try:
            if timeout is None:
                result = await fn(*args, **kwargs)
            else:
                own: BaseException | None = None
                try:
                    result = await asyncio.wait_for(_tag_own_timeout(fn(*args, **kwargs)), timeout)
                except _OwnTimeout as carrier:
                    own = carrier.exc  # the callable's own: re-raised as is, classified as is
                except asyncio.TimeoutError as exc:
                    # wait_for cancelled the call; to the breaker that is a failure.
                    outcome = FAILURE
                    raise TimeoutError(f"{plan.name!r} did not finish within {timeout:g}s") from exc
                if own is not None:
                    raise own
        except BaseException as exc:
            if plan.failed(token, resource, cold, exc, clock() - start, outcome):
                kwargs = plan.fallback_kwargs(kwargs)
                return await _maybe_await(fallback(exc, *args, **kwargs))  # type: ignore[misc]
            raise
        plan.succeeded(token, resource, cold, clock() - start, timed=False)
        return result

    return wrapper


# -- generators -----------------------------------------------------------------------------


def _gen_wrapper(fn: Callable[..., Any], plan: _Plan) -> Callable[..., Any]:
    """Admission when iteration starts; timed and recorded when it ends."""
    clock = plan.breaker.clock
    fallback = plan.fallback

    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        try:
            token, resource, cold = plan.enter(kwargs)
        except _REJECTIONS as exc:
            if fallback is None:
                raise
            return (yield from _as_iterable(fallback(exc, *args, **kwargs)))
        start = clock()
        gen = fn(*args, **kwargs)
        produced = False  # a fallback may answer a failure only before the first item
        try:
            item = next(gen)
            produced = True
            while True:
                try:
                    sent = yield item
                except GeneratorExit:
                    gen.close()
                    raise
                except BaseException as thrown:
                    item = gen.throw(thrown)
                else:
                    item = gen.send(sent)
        except StopIteration as stop:
            result = stop.value
        except GeneratorExit:
            # The consumer stopped early (break, close()): a normal end of the call.
            plan.succeeded(token, resource, cold, clock() - start, timed=False)
            raise
        except BaseException as exc:
            if plan.failed(token, resource, cold, exc, clock() - start) and not produced:
                kwargs = plan.fallback_kwargs(kwargs)
                return (yield from _as_iterable(fallback(exc, *args, **kwargs)))  # type: ignore[misc]
            raise
        plan.succeeded(token, resource, cold, clock() - start)
        return result

    return wrapper


def _as_iterable(value: Any) -> Any:
    return value if hasattr(value, "__iter__") else iter((value,))


def _async_gen_wrapper(fn: Callable[..., Any], plan: _Plan) -> Callable[..., Any]:
    clock = plan.breaker.clock
    fallback = plan.fallback

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        try:
            token, resource, cold = await plan.enter_async(kwargs)
        except _REJECTIONS as exc:
            if fallback is None:
                raise
            async for item in _as_async_iterable(fallback(exc, *args, **kwargs)):
                yield item
            return
        start = clock()
        agen = fn(*args, **kwargs)
        produced = False  # a fallback may answer a failure only before the first item
        try:
            item = await agen.__anext__()
            produced = True
            while True:
                try:
                    sent = yield item
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as thrown:
                    item = await agen.athrow(thrown)
                else:
                    item = await agen.asend(sent)
        except StopAsyncIteration:
            plan.succeeded(token, resource, cold, clock() - start)
        except GeneratorExit:
            # The consumer stopped early (break, aclose()): a normal end of the call.
            plan.succeeded(token, resource, cold, clock() - start, timed=False)
            raise
        except BaseException as exc:
            if plan.failed(token, resource, cold, exc, clock() - start) and not produced:
                kwargs = plan.fallback_kwargs(kwargs)
                async for fallback_item in _as_async_iterable(fallback(exc, *args, **kwargs)):  # type: ignore[misc]
                    yield fallback_item
                return
            raise

    return wrapper


async def _as_async_iterable(value: Any) -> AsyncGenerator[Any, None]:
    value = await _maybe_await(value)
    if hasattr(value, "__aiter__"):
        async for item in value:
            yield item
    else:
        for item in value:
            yield item

"""The fast paths of ``@protected``: a breaker and metrics, optionally an adaptive limit.

The common case (no pool, fallback or timeout) runs as a short closure over pre-bound
methods instead of the general wrappers' steps (``_Plan.enter``/``succeeded``/``failed`` in
:mod:`switchgear._protected`). These closures inline those steps' rules, so the two must
say the same: a rejection is counted and never a breaker failure; a call that raised is
classified once; a NEUTRAL outcome (ignored, cancelled) tells the limit nothing, any other
gives it the call's round-trip time (a FAILURE as a drop). ``bench_protected`` pays for each
with a row ("@protected (breaker + metrics)", "@protected + adaptive limit", and the async
one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._breaker.breaker import CircuitBreaker
from ._breaker.protocol import FAILURE, NEUTRAL, NEVER_COUNTED, SUCCESS
from ._errors import CircuitOpenError, LimitExceededError
from ._limit.limiter import AdaptiveLimit
from ._metrics.series import Series

__all__ = ["fast_async", "fast_sync", "limit_steps"]


def fast_sync(
    fn: Callable[..., Any], breaker: CircuitBreaker, series: Series, limit: AdaptiveLimit | None
) -> Callable[..., Any]:
    """The wrapper of a plain function."""
    if limit is not None:
        return _limited_sync(fn, breaker, series, limit)
    admit = breaker.admit
    finish = breaker.finish
    classify = breaker.classify
    clock = breaker.clock
    record = series.recorder_for(clock)  # told the end time: one read less
    reject = series.reject

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            token = admit()
        except CircuitOpenError as exc:
            reject(exc.reason)
            raise
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            now = clock()
            duration = now - start
            outcome = classify(exc)
            finish(token, outcome, duration)
            if not isinstance(exc, NEVER_COUNTED):
                record(now, duration, outcome != FAILURE, False)
            raise
        now = clock()
        duration = now - start
        finish(token, SUCCESS, duration)
        record(now, duration, True, False)
        return result

    return wrapper


def fast_async(
    fn: Callable[..., Any], breaker: CircuitBreaker, series: Series, limit: AdaptiveLimit | None
) -> Callable[..., Any]:
    """:func:`fast_sync` for coroutine functions: admission needs no await."""
    if limit is not None:
        return _limited_async(fn, breaker, series, limit)
    admit = breaker.admit
    finish = breaker.finish
    classify = breaker.classify
    clock = breaker.clock
    record = series.recorder_for(clock)
    reject = series.reject

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            token = admit()
        except CircuitOpenError as exc:
            reject(exc.reason)
            raise
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            now = clock()
            duration = now - start
            outcome = classify(exc)
            finish(token, outcome, duration)
            if not isinstance(exc, NEVER_COUNTED):
                record(now, duration, outcome != FAILURE, False)
            raise
        now = clock()
        duration = now - start
        finish(token, SUCCESS, duration)
        record(now, duration, True, False)
        return result

    return wrapper


def limit_steps(
    limit: AdaptiveLimit, clock: Callable[[], float]
) -> tuple[Callable[[float, float, bool], None], Callable[[float, float, int], None]]:
    """How a finished call settles ``limit``, given the end time ``now`` read from ``clock``.

    ``release_at(now, rtt, dropped)`` gives the call's round-trip time back (the limit's own
    clock is read instead when it is not ``clock``); ``settle(now, duration, outcome)`` is the
    rule for any outcome: NEUTRAL (ignored, cancelled) tells the limit nothing, FAILURE is a
    drop. The general wrappers (``_Plan``) and the fast ones share it.
    """
    cancel = limit.cancel
    if limit.clock is clock:
        release_at = limit.release_at
    else:  # the limit keeps its own time

        def release_at(now: float, rtt: float, dropped: bool) -> None:
            limit.release(rtt, dropped)

    def settle(now: float, duration: float, outcome: int) -> None:
        if outcome == NEUTRAL:
            cancel()  # no evidence about the dependency
        else:
            release_at(now, duration, outcome == FAILURE)

    return release_at, settle


def _limited_sync(
    fn: Callable[..., Any], breaker: CircuitBreaker, series: Series, limit: AdaptiveLimit
) -> Callable[..., Any]:
    admit = breaker.admit
    finish = breaker.finish
    classify = breaker.classify
    clock = breaker.clock
    record = series.recorder_for(clock)
    reject = series.reject
    take = limit.acquire
    release_at, settle = limit_steps(limit, clock)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            token = admit()
        except CircuitOpenError as exc:
            reject(exc.reason)
            raise
        try:
            take()
        except LimitExceededError as exc:
            finish(token, NEUTRAL, 0.0)  # the breaker's permit back: the call never ran
            reject(exc.reason)
            raise
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            now = clock()
            duration = now - start
            outcome = classify(exc)
            settle(now, duration, outcome)
            finish(token, outcome, duration)
            if not isinstance(exc, NEVER_COUNTED):
                record(now, duration, outcome != FAILURE, False)
            raise
        now = clock()
        duration = now - start
        release_at(now, duration, False)
        finish(token, SUCCESS, duration)
        record(now, duration, True, False)
        return result

    return wrapper


def _limited_async(
    fn: Callable[..., Any], breaker: CircuitBreaker, series: Series, limit: AdaptiveLimit
) -> Callable[..., Any]:
    admit = breaker.admit
    finish = breaker.finish
    classify = breaker.classify
    clock = breaker.clock
    record = series.recorder_for(clock)
    reject = series.reject
    take = limit.acquire
    release_at, settle = limit_steps(limit, clock)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            token = admit()
        except CircuitOpenError as exc:
            reject(exc.reason)
            raise
        try:
            take()
        except LimitExceededError as exc:
            finish(token, NEUTRAL, 0.0)
            reject(exc.reason)
            raise
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            now = clock()
            duration = now - start
            outcome = classify(exc)
            settle(now, duration, outcome)
            finish(token, outcome, duration)
            if not isinstance(exc, NEVER_COUNTED):
                record(now, duration, outcome != FAILURE, False)
            raise
        now = clock()
        duration = now - start
        release_at(now, duration, False)
        finish(token, SUCCESS, duration)
        record(now, duration, True, False)
        return result

    return wrapper

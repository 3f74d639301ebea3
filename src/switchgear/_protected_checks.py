"""What ``@protected`` checks before it wraps anything: components, ``resource_arg``, and
that a ``fallback`` can take every call of the protected function.

Each check raises ``TypeError``/``ValueError`` naming the argument, at decoration time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._breaker.breaker import CircuitBreaker
from ._limit.limiter import AdaptiveLimit
from ._metrics.facade import Metrics
from ._pool.pool import DynamicPool

__all__ = ["check_components", "check_fallback", "check_resource_arg"]


def check_fallback(
    fn: Callable[..., Any], fallback: Callable[..., Any], resource_arg: str | None
) -> None:
    """``fallback(exc, *args, **kwargs)`` must accept every way of calling ``fn``.

    Checked when decorating, so that a fallback with the wrong signature fails at import
    rather than during the outage it was written for. The calls tried are ``fn``'s required
    arguments only and all of its arguments (positionally, keyword-only ones by keyword,
    one extra for ``*args``/``**kwargs``), less ``resource_arg``, which the fallback does not
    get. A callable whose signature cannot be read is not checked.
    """
    try:
        wanted = inspect.signature(fn).parameters.values()
        offered = inspect.signature(fallback)
    except (TypeError, ValueError):
        return
    required: tuple[list[str], dict[str, str]] = ([], {})
    every: tuple[list[str], dict[str, str]] = ([], {})
    for p in wanted:
        if p.name == resource_arg:
            continue
        if p.kind is p.VAR_POSITIONAL:
            every[0].append("*args")
        elif p.kind is p.VAR_KEYWORD:
            every[1]["switchgear_extra_keyword"] = "**kwargs"
        else:
            positional = p.kind is not p.KEYWORD_ONLY
            for args, kwargs in (every, required) if p.default is p.empty else (every,):
                if positional:
                    args.append(p.name)
                else:
                    kwargs[p.name] = p.name
    for args, kwargs in (required, every):
        try:
            offered.bind("exc", *args, **kwargs)
        except TypeError as exc:
            call = ", ".join(["exc", *args, *(f"{k}=..." for k in kwargs)])
            raise TypeError(
                f"fallback must accept (exc, *args, **kwargs) of the protected function "
                f"{getattr(fn, '__qualname__', fn)!r}: fallback({call}) fails ({exc}); "
                "for example: def fallback(exc, *args, **kwargs)"
            ) from None


def check_components(
    name: str | None, breaker: object, pool: object, metrics: object, limit: object = None
) -> None:
    """The components' types, and that they carry the protected ``name`` (when known).

    A concurrency limit may carry another name: several callables can share one dependency's.
    """
    if limit is not None and not isinstance(limit, AdaptiveLimit):
        raise TypeError(f"limit must be a switchgear.AdaptiveLimit, not {type(limit).__name__}")
    if breaker is not None and not isinstance(breaker, CircuitBreaker):
        raise TypeError(f"breaker must be a CircuitBreaker, not {type(breaker).__name__}")
    if metrics is not None and not isinstance(metrics, Metrics):
        raise TypeError(f"metrics must be a switchgear.Metrics, not {type(metrics).__name__}")
    if pool is not None and not isinstance(pool, DynamicPool):
        raise TypeError(f"pool must be a switchgear.DynamicPool, not {type(pool).__name__}")
    if limit is not None and pool is not None and pool.limit is limit:
        raise ValueError(
            f"pool {pool.name!r} is bounded by limit {limit.name!r} already: each call would "
            "take two of its slots; pass limit= to one of them"
        )
    if name is None:
        return
    if breaker is not None and breaker.name != name:
        raise ValueError(
            f"breaker is named {breaker.name!r} but the protected name is {name!r}; "
            "they must match (metrics and status are keyed by that name)"
        )
    if metrics is not None and metrics.name != name:
        raise ValueError(
            f"metrics is named {metrics.name!r} but the protected name is {name!r}; they must match"
        )


def check_resource_arg(resource_arg: object, pool: object) -> None:
    if resource_arg is None:
        return
    if not isinstance(resource_arg, str):
        raise TypeError(
            f"resource_arg must be a keyword argument name (str), not {type(resource_arg).__name__}"
        )
    if not resource_arg.isidentifier():
        raise ValueError(f"resource_arg must be a keyword argument name, got {resource_arg!r}")
    if pool is None:
        raise ValueError("resource_arg needs a pool= to lease the resource from")

"""The options of the ASGI and WSGI middleware: declared once, validated once.

:class:`HttpOptions` declares them with their defaults. Both middleware constructors spell
them out as keyword parameters (so help() and IDEs show them plainly) and pass them on as
one ``HttpOptions``; a test holds both signatures to this declaration. The checks below each
name the bad option; :class:`~switchgear._http.core.HttpCore` applies them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from prometheus_client import CollectorRegistry

from .. import _validate as v
from .._breaker.breaker import CircuitBreaker
from .._limit.limiter import AdaptiveLimit
from .._pool.pool import DynamicPool
from .auth import Headers

__all__ = [
    "HttpOptions",
    "breaker_options",
    "default_failure_status",
    "exclude_option",
    "int_option",
    "limits_option",
    "meter_provider_option",
    "methods_option",
    "path_option",
    "probe_breaker",
    "route_breaker_options",
]


def default_failure_status(code: int) -> bool:
    """The default ``failure_status``: server errors are failures."""
    return code >= 500


@dataclass(frozen=True, kw_only=True)
class HttpOptions:
    """Every option of :class:`~switchgear.asgi.ASGIMiddleware` and ``WSGIMiddleware``.

    As given by the caller; :class:`~switchgear._http.core.HttpCore` checks each one.
    """

    metrics_path: str | None = "/metrics"
    status_path: str | None = "/switchgear"
    breaker_per_route: bool = True
    failure_status: Callable[[int], bool] = default_failure_status
    breaker_options: Mapping[str, Any] | None = None
    route_breaker_options: Mapping[str, Mapping[str, Any]] | None = None
    pool: DynamicPool[Any] | None = None
    limit: AdaptiveLimit | None = None
    route_limits: Mapping[str, AdaptiveLimit] | None = None
    exclude_paths: Iterable[str | re.Pattern[str]] = ()
    endpoint_auth: str | Callable[[Headers], Any] | None = None
    registry: CollectorRegistry | None = None
    max_routes: int = 100
    pool_full_status: int = 503
    ready_path: str | None = "/switchgear/ready"
    critical: Iterable[str] | Callable[[str], bool] = ()
    control_plane: bool = False
    exclude_methods: Iterable[str] = ()
    http_metrics: bool = True
    exemplars: bool = True
    meter_provider: Any = None
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def among(cls, arguments: Mapping[str, Any]) -> HttpOptions:
        """The options among a middleware constructor's arguments (its ``locals()``)."""
        return cls(**{f.name: arguments[f.name] for f in fields(cls)})


def path_option(name: str, value: object) -> str | None:
    """``metrics_path``/``status_path``: None, or an absolute path without spaces or query."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a path string or None, not {type(value).__name__}")
    if not value.startswith("/") or any(c.isspace() for c in value) or "?" in value:
        raise ValueError(
            f"{name} must be a path starting with '/' (no spaces or '?'), got {value!r}"
        )
    return value


def exclude_option(
    value: object,
) -> tuple[frozenset[str], tuple[str, ...], tuple[re.Pattern[str], ...]]:
    """``exclude_paths`` as (exact paths, prefixes, patterns); an item ending in ``*`` is a
    prefix, a compiled regular expression a pattern the whole path must match."""
    what = "path strings or compiled regular expressions"
    value = v.collection("exclude_paths", value, what)
    exact: set[str] = set()
    prefixes: list[str] = []
    patterns: list[re.Pattern[str]] = []
    for item in value:
        if isinstance(item, re.Pattern):
            if not isinstance(item.pattern, str):
                raise TypeError("exclude_paths patterns must be compiled from str, not bytes")
            patterns.append(item)
            continue
        if not isinstance(item, str):
            raise TypeError(
                "exclude_paths items must be strings or compiled regular expressions, "
                f"not {type(item).__name__}"
            )
        if not item.startswith("/"):
            raise ValueError(f"exclude_paths items must start with '/', got {item!r}")
        if item.endswith("*"):
            prefixes.append(item[:-1])
        else:
            exact.add(item)
    return frozenset(exact), tuple(prefixes), tuple(patterns)


def methods_option(value: object) -> frozenset[str]:
    """``exclude_methods``: a collection of method names, as clients send them (``OPTIONS``)."""
    methods = frozenset(v.collection("exclude_methods", value, "method names"))
    for item in methods:
        if not isinstance(item, str) or not item or any(c.isspace() for c in item):
            raise ValueError(f"exclude_methods items must be method names, got {item!r}")
    return methods


def meter_provider_option(value: object) -> Any:
    """``meter_provider``: None (the global one) or an OpenTelemetry ``MeterProvider``."""
    if value is not None and not callable(getattr(value, "get_meter", None)):
        raise TypeError(
            "meter_provider must be an opentelemetry MeterProvider or None, "
            f"not {type(value).__name__}"
        )
    return value


def int_option(name: str, value: object, low: int, high: int) -> int:
    """An int (not a bool) in ``[low, high]``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")
    return value


def breaker_options(value: object, clock: Callable[[], float]) -> dict[str, Any]:
    """``breaker_options`` as a fresh dict of CircuitBreaker keywords (``clock`` defaulted)."""
    if value is None:
        options: dict[str, Any] = {}
    elif isinstance(value, Mapping):
        options = dict(value)
    else:
        raise TypeError(
            f"breaker_options must be a mapping of CircuitBreaker keyword arguments, "
            f"not {type(value).__name__}"
        )
    for key in options:
        if not isinstance(key, str):
            raise TypeError(f"breaker_options keys must be strings, got {key!r}")
    if "name" in options:
        raise ValueError("breaker_options must not contain 'name': each route's key is its name")
    options.setdefault("clock", clock)
    return options


def probe_breaker(options: dict[str, Any], where: str = "breaker_options") -> CircuitBreaker:
    """A breaker built from ``options`` now, so a bad option fails here, not on a request."""
    try:
        return CircuitBreaker("breaker_options", **options)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


# Classification runs before the route is known (an exception is judged as it escapes), so
# it is one rule for every route.
_ROUTE_WIDE = frozenset({"name", "failure_on", "ignore_on", "clock"})


def _route_key(option: str, key: object, methods: frozenset[str]) -> str:
    """A route key as /metrics shows it, ``'METHOD /template'``; else the error naming it."""
    method, _, template = key.partition(" ") if isinstance(key, str) else ("", "", "")
    if method not in methods or not template.startswith("/"):
        raise ValueError(
            f"{option} keys are route keys as /metrics shows them, "
            f"'METHOD /template' (for example 'GET /items/{{id}}'), got {key!r}"
        )
    assert isinstance(key, str)
    return key


def limits_option(
    limit: object, route_limits: object, pool: DynamicPool[Any] | None, methods: frozenset[str]
) -> tuple[AdaptiveLimit | None, dict[str, AdaptiveLimit]]:
    """``limit`` (every request's) and ``route_limits`` (per route key, instead of ``limit``)."""
    if limit is not None and not isinstance(limit, AdaptiveLimit):
        raise TypeError(f"limit must be a switchgear.AdaptiveLimit, not {type(limit).__name__}")
    if route_limits is None:
        route_limits = {}
    if not isinstance(route_limits, Mapping):
        raise TypeError(
            "route_limits must be a mapping of route keys to switchgear.AdaptiveLimit, "
            f"not {type(route_limits).__name__}"
        )
    routes: dict[str, AdaptiveLimit] = {}
    for key, value in route_limits.items():
        route = _route_key("route_limits", key, methods)
        if not isinstance(value, AdaptiveLimit):
            raise TypeError(
                f"route_limits[{key!r}] must be a switchgear.AdaptiveLimit, "
                f"not {type(value).__name__}"
            )
        routes[route] = value
    bound = None if pool is None else pool.limit
    if bound is not None and (bound is limit or bound in routes.values()):
        raise ValueError(
            "pool is bounded by the same AdaptiveLimit the middleware applies: each request "
            "would take two of its slots; pass it to one of them"
        )
    return limit, routes


def route_breaker_options(
    value: object, base: dict[str, Any], methods: frozenset[str]
) -> dict[str, dict[str, Any]]:
    """``route_breaker_options``: per route key, ``base`` with that route's overrides."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            "route_breaker_options must be a mapping of route keys to breaker options, "
            f"not {type(value).__name__}"
        )
    routes: dict[str, dict[str, Any]] = {}
    for key, overrides in value.items():
        _route_key("route_breaker_options", key, methods)
        where = f"route_breaker_options[{key!r}]"
        if not isinstance(overrides, Mapping):
            raise TypeError(f"{where} must be a mapping, not {type(overrides).__name__}")
        shared = _ROUTE_WIDE.intersection(overrides)
        if shared:
            raise ValueError(
                f"{where} must not set {', '.join(sorted(shared))}: that applies to every "
                "route (set it in breaker_options)"
            )
        merged = {**base, **overrides}
        probe_breaker(merged, where)
        routes[key] = merged
    return routes

"""The options of the ASGI and WSGI middleware: declared once, validated once.

Both middleware constructors take ``app, **options`` typed by :class:`HttpOptions`, and hand
the options to :class:`~switchgear._http.core.HttpCore`, whose keyword defaults are the
documented ones. The checks below each name the bad option.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypedDict

from .._breaker.breaker import CircuitBreaker
from .auth import Headers

__all__ = [
    "HttpOptions",
    "breaker_options",
    "default_failure_status",
    "exclude_option",
    "int_option",
    "path_option",
    "probe_breaker",
]


class HttpOptions(TypedDict, total=False):
    """Keyword options of :class:`~switchgear.asgi.ASGIMiddleware` and ``WSGIMiddleware``.

    Defaults: ``metrics_path="/metrics"``, ``status_path="/switchgear"``,
    ``breaker_per_route=True``, ``failure_status=lambda code: code >= 500``,
    ``breaker_options=None`` (the breaker's defaults), ``pool=None``, ``exclude_paths=()``,
    ``endpoint_auth=None`` (open), ``registry=None`` (prometheus_client's default),
    ``max_routes=100``, ``pool_full_status=503``, ``clock=time.monotonic``.
    """

    metrics_path: str | None
    status_path: str | None
    breaker_per_route: bool
    failure_status: Callable[[int], bool]
    breaker_options: dict[str, Any] | None
    pool: Any
    exclude_paths: tuple[str, ...] | list[str] | frozenset[str]
    endpoint_auth: str | Callable[[Headers], Any] | None
    registry: Any
    max_routes: int
    pool_full_status: int
    clock: Callable[[], float]


def default_failure_status(code: int) -> bool:
    """The default ``failure_status``: server errors are failures."""
    return code >= 500


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


def exclude_option(value: object) -> tuple[frozenset[str], tuple[str, ...]]:
    """``exclude_paths`` as (exact paths, prefixes); an item ending in ``*`` is a prefix."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            "exclude_paths must be a collection of path strings (a lone string is not), "
            f"not {type(value).__name__}"
        )
    exact: set[str] = set()
    prefixes: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"exclude_paths items must be strings, not {type(item).__name__}")
        if not item.startswith("/"):
            raise ValueError(f"exclude_paths items must start with '/', got {item!r}")
        if item.endswith("*"):
            prefixes.append(item[:-1])
        else:
            exact.add(item)
    return frozenset(exact), tuple(prefixes)


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


def probe_breaker(options: dict[str, Any]) -> CircuitBreaker:
    """A breaker built from ``options`` now, so a bad option fails here, not on a request."""
    try:
        return CircuitBreaker("breaker_options", **options)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"breaker_options: {exc}") from None

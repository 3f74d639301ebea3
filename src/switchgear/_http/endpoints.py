"""The responses the HTTP middleware writes itself, as plain ``(status, headers, body)``.

No I/O here: the ASGI and WSGI adapters send what these functions return. Bodies are
small, fixed JSON documents; no exception text ever goes into one (details go to the log).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .._breaker.breaker import storage_degraded
from .._errors import PoolFullError, PoolTimeoutError, Rejection
from .._metrics.errors import counts as metrics_errors

__all__ = [
    "Response",
    "error_response",
    "json_response",
    "rejection_answer",
    "rejection_response",
    "retry_after_seconds",
    "status_document",
]

#: ``(status code, [(header name, value)], body)``
Response = tuple[int, list[tuple[str, str]], bytes]

_JSON = "application/json"
_NO_STORE = ("Cache-Control", "no-store")

_REASON_PHRASES = {
    200: "OK",
    401: "Unauthorized",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def reason_phrase(status: int) -> str:
    """The reason phrase for a WSGI status line (``"Unknown"`` for codes not used here)."""
    return _REASON_PHRASES.get(status, "Unknown")


def retry_after_seconds(retry_after: float) -> int:
    """Whole seconds for ``Retry-After``: rounded up, at least 1.

    ``0`` would invite an immediate retry storm, and a fraction is not allowed by RFC 9110.

    >>> retry_after_seconds(0.2), retry_after_seconds(12.0), retry_after_seconds(12.01)
    (1, 12, 13)
    """
    if not math.isfinite(retry_after):
        return 1
    return max(1, math.ceil(retry_after))


def json_response(
    status: int, document: object, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """A JSON response; non-finite floats become ``null`` so the body is valid JSON."""
    body = json.dumps(_finite(document), separators=(",", ":"), sort_keys=False).encode()
    return (
        status,
        [
            ("Content-Type", _JSON),
            ("Content-Length", str(len(body))),
            _NO_STORE,
            *headers,
        ],
        body,
    )


def error_response(status: int, error: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """``{"error": "<error>"}`` with ``status``: the whole body of every refusal."""
    return json_response(status, {"error": error}, headers)


def rejection_response(status: int, reason: str, name: str, retry_after: float) -> Response:
    """The answer to a request the breaker or the pool refused, without running the app.

    >>> rejection_response(503, "circuit_open", "GET /items/{id}", 11.2)[2]
    b'{"error":"circuit_open","name":"GET /items/{id}","retry_after":12}'
    """
    seconds = retry_after_seconds(retry_after)
    return json_response(
        status,
        {"error": reason, "name": name, "retry_after": seconds},
        [("Retry-After", str(seconds))],
    )


def rejection_answer(exc: Rejection, pool_full_status: int = 503) -> Response:
    """The answer to a rejection raised inside a route: the refusing protection's name.

    A pool's refusal is ``pool_full_status`` (the middleware's option, ``503`` unless set),
    like the middleware's own pool; any other (a breaker, a concurrency limit) is a ``503``.
    """
    status = pool_full_status if isinstance(exc, (PoolFullError, PoolTimeoutError)) else 503
    return rejection_response(status, exc.reason, exc.name, exc.retry_after)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def as_dict(value: object) -> dict[str, Any]:
    """A stats object (dataclass, named tuple or mapping) as a plain dict."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    as_named = getattr(value, "_asdict", None)
    if callable(as_named):
        return dict(as_named())
    return {k: v for k, v in vars(value).items() if not k.startswith("_")}


def _breaker_status(breaker: object) -> dict[str, Any]:
    # ``breaker`` is a state string, the breaker itself (shared ones report degraded mode), or
    # None for metrics no breaker reports through.
    state = getattr(breaker, "state", breaker)
    value = getattr(state, "value", state)
    out: dict[str, Any] = {"state": value}
    if value in ("forced_open", "disabled"):
        out["manual"] = True  # held by hand (a method call or the control plane) until reset
    recent = getattr(breaker, "transitions", None)
    if callable(recent):
        events = [event.as_dict() for event in recent()]
        if events:
            out["transitions"] = events  # the last ones, oldest first, with their reasons
    degraded = storage_degraded(breaker)
    if degraded is not None:
        out["storage_degraded"] = degraded
    return out


def _details(snapshot: object, bounds: object) -> dict[str, Any]:
    """Rejections by reason and the latency histogram (per bucket, since start) of a name."""
    if snapshot is None:
        return {}
    return {
        "rejected": dict(getattr(snapshot, "rejected", {})),
        "latency": {
            "le": [*list(bounds), "+Inf"],  # type: ignore[call-overload]
            "counts": list(getattr(snapshot, "counts", ())),
        },
    }


def status_document(
    names: Mapping[str, tuple[object, ...]],
    pools: Mapping[str, object],
    memory: tuple[int, int],
    limits: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, Any]:
    """The status endpoint's JSON document (its shape is public: see docs/middleware.md).

    ``names`` maps a route key to ``(Stats, WindowStats, breaker or its state)``, optionally
    followed by the series' snapshot and bucket bounds (rejections and the latency histogram);
    ``pools`` maps a pool name to its ``PoolStats``; ``memory`` is ``(used, limit)`` in bytes
    (limit 0 = none); ``limits`` maps an adaptive limit's name to its figures.
    """
    return {
        "names": {
            name: {
                "total": as_dict(entry[0]),
                "window": as_dict(entry[1]),
                "circuit_breaker": _breaker_status(entry[2]),
                **(_details(entry[3], entry[4]) if len(entry) >= 5 else {}),
            }
            for name, entry in names.items()
        },
        "pools": {name: as_dict(stats) for name, stats in pools.items()},
        "limits": {name: dict(figures) for name, figures in (limits or {}).items()},
        "memory": {"used": memory[0], "limit": memory[1]},
        # Failures of metrics backends so far (never raised to callers), by backend.
        "metrics_errors": metrics_errors(),
    }

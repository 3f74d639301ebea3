"""Argument checks shared by every public constructor: each names the bad argument."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

Seconds = float | int | timedelta

# The longest time any option or measured duration may be: one year. Longer values are
# typing mistakes, and they overflow what they reach later (thread waits, Redis's
# millisecond TTLs, a Retry-After header).
MAX_SECONDS = 365.0 * 24 * 3600
# The largest count or size any option may be.
MAX_INTEGER = 10**9
# The longest name (breaker, metrics, pool): it becomes a label value on every series.
MAX_NAME_LENGTH = 200


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float seconds in [0, MAX_SECONDS]; accept int, float or timedelta.

    >>> seconds("open_timeout", timedelta(milliseconds=1500))
    1.5
    """
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        raise TypeError(
            f"{name} must be seconds as a number or a datetime.timedelta, "
            f"not {type(value).__name__}"
        )
    if math.isnan(result) or math.isinf(result):
        raise ValueError(f"{name} must be a finite number of seconds, got {result!r}")
    if result < 0 or (result == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} seconds, got {result!r}")
    if result > MAX_SECONDS:
        raise ValueError(
            f"{name} must be at most {MAX_SECONDS:.0f} seconds (a year), got {result!r}"
        )
    return result


def optional_seconds(name: str, value: object, *, allow_zero: bool = False) -> float | None:
    """Like :func:`seconds`, but ``None`` passes through."""
    return None if value is None else seconds(name, value, allow_zero=allow_zero)


def integer(name: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int in [``minimum``, MAX_INTEGER] (bools are refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if value > MAX_INTEGER:
        raise ValueError(f"{name} must be <= {MAX_INTEGER}, got {value!r}")
    return value


def ratio(name: str, value: object) -> float:
    """Return ``value`` as a float in the half-open interval (0, 1]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number in (0, 1], not {type(value).__name__}")
    result = float(value)
    if not 0.0 < result <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return result


def optional_ratio(name: str, value: object) -> float | None:
    """Like :func:`ratio`, but ``None`` passes through."""
    return None if value is None else ratio(name, value)


def callable_(name: str, value: object) -> Callable[..., Any]:
    """Return ``value`` if it is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")
    return value


def optional_callable(name: str, value: object) -> Callable[..., Any] | None:
    """Like :func:`callable_`, but ``None`` passes through."""
    return None if value is None else callable_(name, value)


def boolean(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool, nothing else (``1`` is not ``True`` here)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


def collection(name: str, value: object, what: str, alternative: str = "") -> Iterable[Any]:
    """Return ``value`` if it is a collection (of ``what``); a lone string is refused, since
    iterating it would take each character for an item. ``alternative``: what else the
    argument may be, for the message."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        other = f" or {alternative}" if alternative else ""
        raise TypeError(
            f"{name} must be a collection of {what} (a lone string is not){other}, "
            f"not {type(value).__name__}"
        )
    return value


def name(argname: str, value: object) -> str:
    """Return ``value`` if it can be a label value on every exposition format.

    A non-empty string of at most MAX_NAME_LENGTH characters, encodable as UTF-8 (no lone
    surrogates), without control characters or surrounding whitespace.
    """
    if not isinstance(value, str):
        raise TypeError(f"{argname} must be a str, not {type(value).__name__}")
    if not value or value.strip() != value:
        raise ValueError(
            f"{argname} must be a non-empty string without surrounding spaces, got {value!r}"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{argname} must be at most {MAX_NAME_LENGTH} characters, got {len(value)}: "
            f"{value[:40]!r}..."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{argname} must be valid Unicode text (no lone surrogates), got {value!r}"
        ) from None
    if any(not ch.isprintable() for ch in value):
        raise ValueError(f"{argname} must not contain control characters, got {value!r}")
    return value


def clock(value: object) -> Callable[[], float]:
    """Return ``value`` if it is a callable returning finite seconds (it is called once)."""
    fn = callable_("clock", value)
    try:
        now = fn()
    except Exception as exc:
        raise ValueError(f"clock raised {type(exc).__name__} when called") from exc
    if not isinstance(now, (int, float)) or isinstance(now, bool):
        raise TypeError(f"clock must return seconds as a float, not {type(now).__name__}")
    if not math.isfinite(now):
        raise ValueError(f"clock must return a finite number of seconds, got {now!r}")
    return fn

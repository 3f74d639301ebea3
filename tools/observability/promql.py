"""Small PromQL helpers for writing rules: durations, numbers, selectors."""

from __future__ import annotations

import math

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration(seconds: int) -> str:
    """``300 -> "5m"``, ``86400 -> "1d"``, ``90 -> "90s"``: the largest unit that divides."""
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {seconds}")
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: 1 s divides everything")


def number(value: float) -> str:
    """A PromQL number literal without float noise: ``0.05``, ``14.4``, ``3``."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    text = repr(round(float(value), 12))
    return text


def le_matcher(bound: float) -> str:
    """Matcher for one histogram bucket.

    prometheus_client writes ``le="0.5"`` and ``le="1.0"``; other exporters write ``1`` for
    integral bounds, so those get a regex accepting both.
    """
    if math.isinf(bound):
        return 'le="+Inf"'
    if float(bound).is_integer():
        return f'le=~"{int(bound)}(\\\\.0)?"'
    return f'le="{float(bound)!r}"'


def selector(metric: str, *matchers: str) -> str:
    """``selector("m", 'a="b"') -> 'm{a="b"}'`` (no braces when there are no matchers)."""
    present = [m for m in matchers if m]
    return f"{metric}{{{', '.join(present)}}}" if present else metric

"""Enough of Prometheus' alert templating to predict rendered annotations in unit tests.

promtool compares ``exp_annotations`` exactly, so the generated tests render each alert's
templates with the labels and ``$value`` they expect. Only the forms the rules use are
supported: ``{{ $labels.x }}``, ``{{ $value }}`` and ``{{ $value | f }}`` with ``f`` one of
``humanize``, ``humanizePercentage`` and ``humanizeDuration`` (ported from Prometheus'
``template.go``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def _g4(value: float) -> str:
    return f"{value:.4g}"


def humanize(value: float) -> str:
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    if abs(value) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix = p
            value /= 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(value) >= 1:
                break
            prefix = p
            value *= 1000
    return f"{_g4(value)}{prefix}"


def humanize_percentage(value: float) -> str:
    return f"{_g4(value * 100)}%"


def humanize_duration(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    if value == 0:
        return f"{_g4(value)}s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        whole = int(value)
        seconds, minutes = whole % 60, (whole // 60) % 60
        hours, days = (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(value)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = p
        value *= 1000
    return f"{_g4(value)}{prefix}s"


_FUNCTIONS = {
    "humanize": humanize,
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
}


def render(template: str, labels: Mapping[str, str], value: float | None) -> str:
    """Render ``template`` as Prometheus would for an alert with ``labels`` and ``value``."""

    def one(match: re.Match[str]) -> str:
        expr = match.group(1)
        if expr.startswith("$labels."):
            return labels.get(expr.removeprefix("$labels."), "")
        head, _, func = (part.strip() for part in expr.partition("|"))
        if head != "$value":
            raise ValueError(f"unsupported template expression: {expr!r}")
        if value is None:
            raise ValueError(f"template {template!r} needs a $value")
        if not func:
            return f"{value:g}"
        return _FUNCTIONS[func](value)

    return _EXPR.sub(one, template)

"""Small PromQL helpers: durations, selectors, and reading metric names back out of a query.

The parser here is deliberately tiny: it knows the shapes the generator writes (and
Grafana's ``$variables``), which is all the lint tests need. Syntax itself is checked by
``promtool`` in the tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

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


# --- reading queries back ------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?[0-9][0-9a-z]*", re.IGNORECASE)
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_TOKEN = re.compile(
    r"(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
)
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    }
)
_SELECTOR = re.compile(r"(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)\s*(?P<matchers>\{[^{}]*\})?")


def _strip(expr: str) -> str:
    """Blank out strings, label matchers, ranges and grouping clauses."""
    out = _STRING.sub('""', expr)
    out = _BRACES.sub(" ", out)
    out = _RANGE.sub(" ", out)
    out = _OFFSET.sub(" ", out)
    return _GROUPING.sub(" ", out)


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects (functions, keywords and numbers excluded)."""
    names: set[str] = set()
    for match in _TOKEN.finditer(_strip(expr)):
        ident = match.group("ident")
        if ident is None or match.group("call") is not None:
            continue
        if ident.lower() in _KEYWORDS:
            continue
        names.add(ident)
    return names


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: str  # the text between the braces, "" when there are none


def selectors(expr: str) -> list[Selector]:
    """Every vector selector ``name{...}`` of an expression, in order."""
    masked = _STRING.sub(lambda m: "\0" * len(m.group(0)), expr)
    masked = _RANGE.sub(lambda m: " " * len(m.group(0)), masked)
    masked = _GROUPING.sub(lambda m: " " * len(m.group(0)), masked)
    found: list[Selector] = []
    wanted = metric_names(expr)
    for match in _SELECTOR.finditer(masked):
        name = match.group("name")
        if name not in wanted:
            continue
        end = match.end("name")
        if re.match(r"\s*\(", masked[end:]):
            continue  # a function with the same name as a metric: not possible here, but safe
        braces = match.group("matchers")
        text = ""
        if braces is not None:
            start, stop = match.span("matchers")
            text = expr[start + 1 : stop - 1]
        found.append(Selector(name, text))
    return found


def ranges(expr: str) -> list[str]:
    """The contents of every ``[...]`` range (or subquery) of an expression."""
    masked = _STRING.sub('""', expr)
    return [m.group(0)[1:-1] for m in _RANGE.finditer(masked)]


def all_metric_names(exprs: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for expr in exprs:
        names |= metric_names(expr)
    return names

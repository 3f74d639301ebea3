"""Reading metric names, selectors and ranges back out of a PromQL query, for the lint tests.

Deliberately tiny: it knows the shapes the generator writes (and Grafana's ``$variables``);
syntax itself is checked by ``promtool``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

"""A tiny, deterministic YAML emitter for the generated rules, tests and provisioning files.

It writes block mappings and sequences, literal blocks (``|-``) for multi-line strings,
plain scalars where they cannot be misread and JSON-style double quotes everywhere else
(JSON string escapes are valid YAML). No dependency, stable output, readable diffs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TypeAlias

Yaml: TypeAlias = "bool | int | float | str | Sequence[Yaml] | Mapping[str, Yaml] | None"

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_ ./()':-]*$")
_DURATION = re.compile(r"^[0-9]+(?:ms|s|m|h|d|w|y)$")
_RESERVED = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"})
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def scalar(value: Yaml) -> str:
    """One scalar on one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if _DURATION.match(value) or (
            _PLAIN.match(value)
            and value.lower() not in _RESERVED
            and not value.endswith((" ", ":"))
            and " -" not in value
            and ": " not in value
        ):
            return value
        if value.isprintable() and not value.startswith(" "):
            return "'" + value.replace("'", "''") + "'"
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"not a scalar: {value!r}")


def _key(key: str) -> str:
    return key if _KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _is_block_string(value: Yaml) -> bool:
    return isinstance(value, str) and "\n" in value


def _literal(text: str, indent: int) -> list[str]:
    lines = text.split("\n")
    if lines and lines[0].startswith(" "):
        raise ValueError("a literal block may not start with a space")
    pad = " " * indent
    return [f"{pad}{line}".rstrip() if line else "" for line in lines]


def _block(value: Yaml, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        lines: list[str] = []
        for key, item in value.items():
            head = f"{pad}{_key(key)}:"
            if _is_block_string(item):
                assert isinstance(item, str)
                lines.append(f"{head} |-")
                lines.extend(_literal(item, indent + 2))
            elif isinstance(item, Mapping | list | tuple) and len(item) > 0:
                lines.append(head)
                lines.extend(_block(item, indent + 2))
            elif isinstance(item, Mapping):
                lines.append(f"{head} {{}}")
            elif isinstance(item, list | tuple):
                lines.append(f"{head} []")
            else:
                lines.append(f"{head} {scalar(item)}")
        return lines
    if isinstance(value, list | tuple):
        lines = []
        for item in value:
            if isinstance(item, Mapping) and len(item) > 0:
                inner = _block(item, indent + 2)
                inner[0] = f"{pad}- {inner[0][indent + 2 :]}"
                lines.extend(inner)
            elif _is_block_string(item):
                assert isinstance(item, str)
                lines.append(f"{pad}- |-")
                lines.extend(_literal(item, indent + 2))
            elif isinstance(item, Mapping | list | tuple):
                if len(item) > 0:
                    raise TypeError("nested sequences are not supported")
                lines.append(f"{pad}- {'{}' if isinstance(item, Mapping) else '[]'}")
            else:
                lines.append(f"{pad}- {scalar(item)}")
        return lines
    return [f"{pad}{scalar(value)}"]


def dump(value: Yaml, header: str = "") -> str:
    """The YAML document for ``value``, with ``header`` as leading ``#`` comment lines."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    lines.extend(_block(value, 0))
    return "\n".join(lines) + "\n"

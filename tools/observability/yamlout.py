"""YAML output through PyYAML: block style, keys in the given order, literal blocks (``|-``)
for multi-line strings such as PromQL expressions, and sequences indented under their key."""

from __future__ import annotations

from typing import Any, TypeAlias

import yaml

Yaml: TypeAlias = Any


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(value: Any, header: str = "") -> str:
    """The YAML document for ``value``, with ``header`` as leading ``#`` comment lines."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    body: str = yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)
    return "".join(f"{line}\n" for line in lines) + body

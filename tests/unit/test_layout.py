"""The source stays readable: small modules, short functions, each rule written once.

A function may be longer than the limit only if it is a fast path documented in
docs/architecture.md (which names the benchmark row that pays for it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "switchgear"
MODULE_LINES = 600
FUNCTION_LINES = 80


def fast_paths() -> set[str]:
    text = (ROOT / "docs/architecture.md").read_text()
    section = text[text.index("## Fast paths") : text.index("## Where a new feature goes")]
    names: set[str] = set()
    for row in section.splitlines():
        cells = row.split("|")
        if len(cells) > 3 and not set(cells[2].strip()) <= {"-", ":"}:
            names.update(re.findall(r"`([\w.]+)`", cells[2]))
    return names


def functions(tree: ast.AST) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((prefix + child.name, child))
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def test_no_module_over_the_limit() -> None:
    long = {
        str(path.relative_to(SOURCE)): lines
        for path in SOURCE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MODULE_LINES
    }
    assert not long, f"modules over {MODULE_LINES} lines: {long}"


def test_no_function_over_the_limit_but_documented_fast_paths() -> None:
    allowed = fast_paths()
    assert allowed, "the fast-path table of docs/architecture.md was not found"
    long = {}
    for path in SOURCE.rglob("*.py"):
        for name, node in functions(ast.parse(path.read_text())):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > FUNCTION_LINES and name not in allowed:
                long[f"{path.relative_to(SOURCE)}:{name}"] = lines
    assert not long, f"functions over {FUNCTION_LINES} lines: {long}"


TOOLS = ROOT / "tools"
#: The generator of the dashboards, rules and docs stays a fraction of the library's size:
#: about 1,800 lines, with room for an alert or a board option more (about 20 lines each).
TOOLS_LINES = 1_850


def test_tools_stay_small() -> None:
    sizes = {
        str(p.relative_to(TOOLS)): len(p.read_text().splitlines()) for p in TOOLS.rglob("*.py")
    }
    assert sum(sizes.values()) <= TOOLS_LINES, sizes
    assert not {k: n for k, n in sizes.items() if n > MODULE_LINES}
    long = {
        f"{path}:{name}": (node.end_lineno or node.lineno) - node.lineno + 1
        for path in sizes
        for name, node in functions(ast.parse((TOOLS / path).read_text()))
        if (node.end_lineno or node.lineno) - node.lineno + 1 > FUNCTION_LINES
    }
    assert not long, f"functions over {FUNCTION_LINES} lines: {long}"

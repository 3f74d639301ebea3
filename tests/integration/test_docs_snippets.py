"""Every ```python block in README.md and docs/*.md runs, each on its own.

Each block runs in a fresh interpreter, so it must carry its own imports and setup, as it
does for a reader who copies one block; global state (prometheus_client's default registry,
shared breakers) starts empty. A block preceded by ``<!-- snippet: continues -->`` is the
next step of the block before it (a tutorial's steps): it runs after that one, in the same
interpreter and namespace. Tracebacks name the page and line. The environment has
``METRICS_TOKEN`` set, as a deployment would.

Blocks in other languages (console, text, yaml, promql, json, ...) are not run; a fence with
no language is an error, so Python cannot hide in one. A Python block that must not run is
preceded by ``<!-- snippet: skip -->``; those are listed in ``ALLOWED_SKIPS`` and kept few.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import switchgear as sg

ROOT = Path(__file__).resolve().parents[2]
SKIP_MARKER = "<!-- snippet: skip -->"
CONTINUE_MARKER = "<!-- snippet: continues -->"
PYTHON_LANGS = {"python", "py", "python3"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")

# (page, first line of the block): every Python block that is deliberately not run.
ALLOWED_SKIPS = {
    ("docs/middleware.md", "# settings.py"),  # needs a Django project
    ("docs/migrate-instrumentator.md", "# before: prometheus-fastapi-instrumentator"),
    ("docs/redis.md", "from redis.backoff import NoBackoff\nfrom redis.cluster"),  # a cluster
}
MAX_SKIPS = 5


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the first code line
    lang: str
    code: str
    skip: bool
    continues: bool = False


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (nested list indentation removed)."""
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        info = m["info"].strip()
        lang = info.split()[0].lower() if info else ""
        previous = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence) and set(close) == {fence[0]}:
                break
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        else:
            raise AssertionError(f"{rel}:{i + 1}: unclosed code fence")
        code = "\n".join(body) + "\n"
        blocks.append(
            Block(rel, i + 2, lang, code, previous == SKIP_MARKER, previous == CONTINUE_MARKER)
        )
        i = j + 1
    return blocks


ALL_BLOCKS = {p.relative_to(ROOT).as_posix(): parse(p) for p in pages()}
PYTHON_PAGES = sorted(
    page for page, blocks in ALL_BLOCKS.items() if any(b.lang in PYTHON_LANGS for b in blocks)
)

RUNNER = r"""
import json, sys, types
blocks = json.load(sys.stdin)
module = types.ModuleType("docs_snippet")
sys.modules["docs_snippet"] = module
namespace = module.__dict__
for block in blocks:
    print(f"--- {block['where']}", flush=True)
    exec(compile(block["code"], block["where"], "exec"), namespace)
"""


def test_every_fence_names_its_language() -> None:
    bare = [
        f"{b.page}:{b.line - 1}" for blocks in ALL_BLOCKS.values() for b in blocks if not b.lang
    ]
    assert not bare, (
        "code fences without a language (use python, console, text, yaml, promql, json, ...): "
        + ", ".join(bare)
    )


def test_skips_are_few_and_listed() -> None:
    skipped = [b for blocks in ALL_BLOCKS.values() for b in blocks if b.skip]
    assert len(skipped) <= MAX_SKIPS, [f"{b.page}:{b.line}" for b in skipped]
    unlisted = [
        f"{b.page}:{b.line}"
        for b in skipped
        if not any(b.page == page and b.code.startswith(first) for page, first in ALLOWED_SKIPS)
    ]
    assert not unlisted, f"skipped Python blocks not in ALLOWED_SKIPS: {unlisted}"
    for page, first_line in ALLOWED_SKIPS:
        assert any(b.skip and b.code.startswith(first_line) for b in ALL_BLOCKS.get(page, [])), (
            f"ALLOWED_SKIPS lists a block that is gone or no longer skipped: {page} {first_line!r}"
        )


def test_snippet_pages_found() -> None:
    # The pages this project's docs are built around; each one has Python in it.
    for page in ("README.md", "docs/quickstart.md", "docs/configuration.md", "docs/concepts.md"):
        assert page in PYTHON_PAGES, page


def chains(page: str) -> list[list[Block]]:
    """The page's runnable Python blocks, grouped: a block and the blocks that continue it."""
    groups: list[list[Block]] = []
    for b in ALL_BLOCKS[page]:
        if b.lang not in PYTHON_LANGS or b.skip:
            continue
        if b.continues:
            assert groups, f"{b.page}:{b.line}: the first Python block cannot continue another"
            groups[-1].append(b)
        else:
            groups.append([b])
    return groups


def run_chain(chain: list[Block], cwd: Path) -> subprocess.CompletedProcess[str]:
    blocks = [{"where": f"{b.page}:{b.line}", "code": b.code} for b in chain]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    env["METRICS_TOKEN"] = "docs-snippet-token"
    return subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(blocks),
        cwd=cwd,  # snippets that write files write them here
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_continuations_are_few() -> None:
    # Tutorials may build step by step; reference pages show self-contained blocks.
    continued = {b.page for blocks in ALL_BLOCKS.values() for b in blocks if b.continues}
    assert continued <= {"docs/quickstart.md"}, continued


@pytest.mark.timeout(200)
@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_page_snippets_run(page: str, tmp_path: Path) -> None:
    groups = chains(page)
    dirs = [tmp_path / str(i) for i in range(len(groups))]
    for d in dirs:
        d.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run_chain, groups, dirs))
    failed = [
        f"a Python block of {page} failed\n--- stdout\n{proc.stdout[-4000:]}\n"
        f"--- stderr\n{proc.stderr[-6000:]}"
        for proc in results
        if proc.returncode != 0
    ]
    assert not failed, "\n".join(failed)


# -- docs/configuration.md against the real signatures ---------------------------------------

SIGNATURE_MARKER = re.compile(r"^<!-- signature: (?P<targets>[\w. ]+) -->$")
CODE_SPAN = re.compile(r"`([^`]+)`")


def _resolve(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _parameters(obj: Any) -> dict[str, inspect.Parameter]:
    """The options a user passes: ``__init__``'s for a class (whatever ``__new__`` takes)."""
    if isinstance(obj, type):
        params = list(inspect.signature(obj.__init__).parameters.values())[1:]  # type: ignore[misc]
        return {p.name: p for p in params}
    return dict(inspect.signature(obj).parameters)


def config_tables() -> list[tuple[list[str], dict[str, str]]]:
    """``([target, ...], {option: default cell})`` for each marked table."""
    lines = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines()
    tables = []
    for i, line in enumerate(lines):
        m = SIGNATURE_MARKER.match(line.strip())
        if m is None:
            continue
        rows: dict[str, str] = {}
        j = i + 1
        while j < len(lines) and not lines[j].startswith("|"):
            j += 1
        for row in lines[j + 2 :]:  # after the header and the |---| line
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            for option in CODE_SPAN.findall(cells[0]):
                rows[option] = cells[1]
        tables.append((m["targets"].split(), rows))
    return tables


def _same_default(cell: str, default: Any) -> bool:
    span = CODE_SPAN.search(cell)
    if default is inspect.Parameter.empty:
        return span is None and "required" in cell
    if span is None:
        return False
    value = eval(span.group(1), {"time": time, "LATENCY_BUCKETS": sg.LATENCY_BUCKETS})
    if isinstance(default, types.FunctionType):  # e.g. failure_status: compare behaviour
        return all(value(code) == default(code) for code in range(100, 600))
    return bool(value == default and type(value) is type(default))


def test_configuration_reference_matches_signatures() -> None:
    tables = config_tables()
    documented = {target for targets, _ in tables for target in targets}
    for public in ("CircuitBreaker", "DynamicPool", "Metrics", "protected", "instrument"):
        assert f"switchgear.{public}" in documented, public
    assert {"switchgear.ASGIMiddleware", "switchgear.WSGIMiddleware"} <= documented
    problems = []
    for targets, rows in tables:
        used: set[str] = set()
        for k, target in enumerate(targets):
            params = _parameters(_resolve(target))
            for pname, param in params.items():
                if param.kind is inspect.Parameter.VAR_KEYWORD:
                    used.update(rows)  # **options: documented by the other target's rows
                    continue
                if pname not in rows:
                    problems.append(f"{target}: option {pname!r} is not documented")
                    continue
                used.add(pname)
                # Defaults are those of the first target; the others must only agree on names.
                if k == 0 and not _same_default(rows[pname], param.default):
                    problems.append(
                        f"{target}: {pname} documented as {rows[pname]!r}, "
                        f"code says {param.default!r}"
                    )
        stale = set(rows) - used
        if stale:
            problems.append(f"{targets}: documented options that do not exist: {sorted(stale)}")
    assert not problems, "\n".join(problems)


# -- words a reader cannot follow -------------------------------------------------------------

# The documentation is for users: nothing in it may point to where the project came from or
# to documents that are not in the repository.
INSIDER_WORDS = re.compile(
    r"\bseed(?:'s|s)?\b|design contract|design doc|DESIGN\.md|§|\bsession\b", re.IGNORECASE
)


def test_user_docs_speak_to_users() -> None:
    found = []
    for path in pages():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in INSIDER_WORDS.finditer(line):
                found.append(
                    f"{path.relative_to(ROOT)}:{number}: {m.group(0)!r} in {line.strip()!r}"
                )
    assert not found, "\n".join(found)

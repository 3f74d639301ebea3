"""The public surface: what the documentation promises imports, and nothing else is public.

Private modules may move freely; the facades (``switchgear``, ``switchgear.asgi``,
``switchgear.wsgi``, ``switchgear.redis``, ``switchgear.testing``) may not, and none of them
may leak one of the package's own classes or functions under a public name by accident.
"""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest

import switchgear

ROOT = Path(__file__).resolve().parents[2]
FACADES = (
    "switchgear",
    "switchgear.asgi",
    "switchgear.wsgi",
    "switchgear.redis",
    "switchgear.testing",
)
IMPORT = re.compile(r"^\s*from (switchgear[\w.]*) import (\([^)]*\)|[^\n#]+)", re.M)


def versioning_names() -> set[str]:
    """The names docs/versioning.md lists as ``switchgear.__all__``."""
    text = (ROOT / "docs/versioning.md").read_text()
    start = text.index("**Python names in `switchgear.__all__`**")
    end = text.index("and the public", start)
    return set(re.findall(r"`(\w+)`", text[start:end]))


def test_all_is_exactly_what_the_versioning_policy_lists() -> None:
    assert set(switchgear.__all__) == versioning_names()
    assert len(switchgear.__all__) == len(set(switchgear.__all__))


@pytest.mark.parametrize("name", FACADES)
def test_every_name_in_all_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__, f"{name} declares its public names"
    for attr in module.__all__:
        assert getattr(module, attr) is not None, f"{name}.{attr}"


@pytest.mark.parametrize("name", FACADES)
def test_nothing_of_ours_is_public_by_accident(name: str) -> None:
    module = importlib.import_module(name)
    leaked = []
    for attr, value in vars(module).items():
        if attr.startswith("_") or attr in module.__all__ or isinstance(value, types.ModuleType):
            continue
        if getattr(value, "__module__", "").startswith("switchgear"):
            leaked.append(attr)
    assert not leaked, f"{name} exposes {leaked}; import them under a private name"


def test_public_submodules_are_the_only_public_modules() -> None:
    public = {
        attr
        for attr, value in vars(switchgear).items()
        if isinstance(value, types.ModuleType) and not attr.startswith("_")
    }
    assert public <= {"asgi", "wsgi", "redis", "testing"}


def documented_imports() -> list[tuple[str, str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in IMPORT.finditer(path.read_text()):
            for item in re.split(r"[,()]+", match.group(2)):
                attr = item.split(" as ")[0].strip()  # "name" or "name as alias"
                if attr:
                    found.append((path.name, match.group(1), attr))
    return found


def test_every_documented_import_works_and_names_a_public_module() -> None:
    imports = documented_imports()
    assert any(module == "switchgear.asgi" for _, module, _ in imports)  # the scan works
    for page, module, attr in imports:
        target = importlib.import_module(module)
        assert hasattr(target, attr), f"{page}: from {module} import {attr}"
        private = [part for part in module.split(".") if part.startswith("_")]
        if private:
            # Advanced use the docs point to explicitly; it must be said to be outside the
            # versioning policy.
            assert module in (ROOT / "docs/versioning.md").read_text(), (page, module)

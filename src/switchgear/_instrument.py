"""``instrument()``: protect a callable you do not own, now or when its module is imported."""

from __future__ import annotations

import logging
import sys
import threading
from types import ModuleType
from typing import Any

import wrapt

from . import _validate as v
from ._protected import protected

__all__ = ["instrument"]

logger = logging.getLogger("switchgear")

_lock = threading.Lock()
_applied: set[str] = set()
_reported: set[str] = set()  # targets whose failure to apply was logged


def _parse(target: object) -> tuple[str, str]:
    if not isinstance(target, str):
        raise TypeError(
            f"target must be a 'package.module:Qualified.name' string, not {type(target).__name__}"
        )
    module, sep, attribute = target.partition(":")
    parts = attribute.split(".")
    if (
        not sep
        or not module
        or not all(p.isidentifier() for p in module.split("."))
        or not all(p.isidentifier() for p in parts)
    ):
        raise ValueError(f"target must look like 'package.module:Qualified.name', got {target!r}")
    return module, attribute


def _resolve(target: str, module: ModuleType, attribute: str) -> tuple[Any, str, Any]:
    """``(parent, attribute name, raw value)`` of ``attribute`` in ``module``.

    Raises ValueError naming the first part of the path that is missing, and TypeError when
    the target is not callable.
    """
    owner: Any = module
    for part in attribute.split("."):
        if not hasattr(owner, part):
            where = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", "?")
            raise ValueError(f"target {target!r}: {where} has no attribute {part!r}")
        owner = getattr(owner, part)
    parent, attr, original = wrapt.resolve_path(module, attribute)
    # The raw class attribute, so classmethod/staticmethod keep their kind.
    raw = vars(parent).get(attr, original) if isinstance(parent, type) else original
    if not callable(owner):  # the bound attribute: a classmethod object is callable once bound
        raise TypeError(f"target {target!r} must be callable, not {type(owner).__name__}")
    return parent, attr, raw


def instrument(target: str, /, **options: Any) -> None:
    """Apply :func:`protected` to ``"package.module:Qualified.name"`` in place.

    If the module is already imported the patch is applied now, and a target that does not
    exist there raises ``ValueError`` at once. Otherwise it is applied when the module is
    first imported; a target missing then is logged (``switchgear`` logger) and the module is
    left unpatched, so a typo never breaks the import of an unrelated module. Options are
    those of :func:`protected`; ``name=`` defaults to the target's qualified name.
    Instrumenting the same target twice is a no-op.

    Example::

        sg.instrument("requests.sessions:Session.request", name="http-out",
                      breaker=sg.CircuitBreaker("http-out", failure_threshold=10))
    """
    module_name, attribute = _parse(target)
    name = options.pop("name", None)
    if name is not None:
        v.name("name", name)
    # Build (and so validate) the decorator now, so a bad option fails at the call site.
    decorator = protected(name if name is not None else f"{module_name}.{attribute}", **options)

    def patch(module: ModuleType) -> None:
        with _lock:
            if target in _applied:
                return
            parent, attr, raw = _resolve(target, module, attribute)
            wrapt.apply_patch(parent, attr, decorator(raw))
            _applied.add(target)

    module = sys.modules.get(module_name)
    if module is not None:
        patch(module)  # errors are the caller's, here and now
        return

    def on_import(module: ModuleType) -> None:
        try:
            patch(module)
        except Exception as error:
            # Raising here would fail the import of the module, far from this call. Said
            # once per target, however often it was instrumented.
            with _lock:
                first = target not in _reported
                _reported.add(target)
            if first:
                logger.error(
                    "switchgear: instrument(%r) could not be applied (%s); %s is left unpatched",
                    target,
                    error,
                    module_name,
                )

    wrapt.register_post_import_hook(on_import, module_name)

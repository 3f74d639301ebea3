"""``instrument()``: protect a callable you do not own, now or when its module is imported."""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

import wrapt

from ._protected import protected

__all__ = ["instrument"]

_lock = threading.Lock()
_applied: set[str] = set()


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


def instrument(target: str, /, **options: Any) -> None:
    """Apply :func:`protected` to ``"package.module:Qualified.name"`` in place.

    If the module is already imported the patch is applied now; otherwise when the module is
    first imported. Options are those of :func:`protected`; ``name=`` defaults to the
    target's qualified name. Instrumenting the same target twice is a no-op.

    Example::

        sg.instrument("requests.sessions:Session.request", name="http-out",
                      breaker=sg.CircuitBreaker("http-out", failure_threshold=10))
    """
    module_name, attribute = _parse(target)
    name = options.pop("name", None)
    # Build (and so validate) the decorator now, so a bad option fails at the call site.
    decorator = protected(name or f"{module_name}.{attribute}", **options)

    def apply(module: ModuleType) -> None:
        with _lock:
            if target in _applied:
                return
            parent, attr, original = wrapt.resolve_path(module, attribute)
            # Take the raw class attribute, so classmethod/staticmethod keep their kind.
            raw = vars(parent).get(attr, original) if isinstance(parent, type) else original
            wrapt.apply_patch(parent, attr, decorator(raw))
            _applied.add(target)

    # Runs ``apply`` now if the module is imported, else right after its first import.
    wrapt.register_post_import_hook(apply, module_name)

"""What a forked child must repair: each object registers its own repair, once.

A fork copies one thread: locks held by other threads stay held in the child, and counts of
work in flight belong to the parent. An object with such state calls
:func:`repair_in_child` with itself and a function of it; after a fork, in the child, every
owner still alive gets its repair, in registration order. The registry holds owners weakly
and their repair functions (plain functions of the owner, not bound methods), so
registering keeps nothing alive.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["forget", "repair_in_child"]

_T = TypeVar("_T")

_repairs: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def repair_in_child(owner: _T, repair: Callable[[_T], None]) -> None:
    """Call ``repair(owner)`` in a forked child, as long as ``owner`` is alive."""
    with _lock:
        _repairs[owner] = repair


def forget(owner: object) -> None:
    """Stop repairing ``owner`` (closed: nothing of it runs in a child)."""
    with _lock:
        _repairs.pop(owner, None)


def _in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by another thread
    for owner, repair in list(_repairs.items()):
        repair(owner)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)

"""Objects held weakly, each once, in the order attached: a name's breakers and pools
(:class:`Refs`), and the components of one name, pools and adaptive limits, whose newest
alive one reports (:class:`Held`)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["Held", "Refs"]


class Refs:
    """Objects held by weak reference, each once, in the order attached; the caller keeps
    them under its own lock. Dead references are dropped on the next :meth:`hold`."""

    __slots__ = ("refs",)

    def __init__(self) -> None:
        self.refs: list[weakref.ref[Any]] = []

    def hold(self, target: Any) -> bool:
        """Remember ``target`` (lock held by the caller); True if it was not held yet."""
        live = [ref for ref in self.refs if ref() is not None]
        new = not any(ref() is target for ref in live)
        if new:
            live.append(weakref.ref(target))
        self.refs = live
        return new

    def newest(self) -> Any | None:
        """The most recently attached object that is still alive."""
        return _first_alive(reversed(self.refs))

    def first(self) -> Any | None:
        """The earliest attached object that is still alive."""
        return _first_alive(self.refs)


def _first_alive(refs: Iterable[weakref.ref[Any]]) -> Any | None:
    for ref in refs:
        target = ref()
        if target is not None:
            return target
    return None


class Held(Refs):
    """The objects attached under one name, with the lock that guards them."""

    __slots__ = ("__weakref__", "lock", "name")

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.lock = threading.Lock()

    def forked(self) -> None:
        """In a forked child: a fresh lock (see ``Store.forked``)."""
        self.lock = threading.Lock()

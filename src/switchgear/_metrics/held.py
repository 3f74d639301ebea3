"""Components of one name held weakly (pools, adaptive limits): the newest alive reports."""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["Held"]


class Held:
    """The objects attached under one name, by weak reference, in the order attached."""

    __slots__ = ("__weakref__", "lock", "name", "refs")

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
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
        for ref in reversed(self.refs):
            target = ref()
            if target is not None:
                return target
        return None

    def forked(self) -> None:
        """In a forked child: a fresh lock (see ``Store.forked``)."""
        self.lock = threading.Lock()

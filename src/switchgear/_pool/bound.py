"""A pool bounded by a concurrency limit: one slot of the limit per resource handed out.

The pool takes a slot before it hands out a resource and returns it with the resource, telling
the limit how long the resource was held and whether its use failed. So the pool never has
more resources out than the limit allows now, and the limit learns the dependency's latency
from the leases themselves. A caller the limit refuses is refused at once (the limit's
rejection), before it would wait in the pool's line. An unbounded pool gets
:class:`Unbounded`, whose steps do nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .._errors import Rejection

__all__ = ["Bound", "BoundLeases", "Unbounded", "bound_leases"]

Take = Callable[[], Any]
Release = Callable[[Any, bool], bool]
GiveBack = Callable[[Any], bool]


@runtime_checkable
class Bound(Protocol):
    """What a pool needs of its limit (:class:`switchgear.AdaptiveLimit` is one)."""

    name: str
    clock: Callable[[], float]

    def acquire(self) -> None: ...  # a slot, or raise a Rejection
    def release(self, rtt: float, dropped: bool = False) -> None: ...
    def cancel(self) -> None: ...


class Unbounded:
    """The steps of a pool without a limit: none."""

    limit: Bound | None = None

    def admit(self) -> None:
        pass

    def cancel(self) -> None:
        pass

    def leased(self, resource: object) -> None:
        pass

    def forked(self) -> None:
        pass


class BoundLeases(Unbounded):
    """The slots a bounded pool holds, and when each leased resource was handed out."""

    def __init__(self, limit: Bound) -> None:
        self.limit = limit
        self.bound = limit
        self.clock = limit.clock
        self.since: dict[int, float] = {}  # id(resource) -> when it was handed out

    def admit(self) -> None:
        """A slot, or the limit's rejection."""
        self.bound.acquire()

    def cancel(self) -> None:
        """Free a slot taken for a resource that was not handed out."""
        self.bound.cancel()

    def leased(self, resource: object) -> None:
        self.since[id(resource)] = self.clock()

    def forked(self) -> None:
        """In a forked child the parent's leases are not ours (the limit frees its slots)."""
        self.since.clear()

    def paths(
        self, take: Take, give_back: GiveBack, missing: object
    ) -> tuple[Take, Release, GiveBack]:
        """The plain paths wrapped: a slot per resource out, its hold time told on return."""
        limit, since, clock = self.bound, self.since, self.clock

        def take_bounded() -> Any:
            try:
                limit.acquire()
            except Rejection:
                return missing  # the caller's slow path raises the rejection
            resource = take()
            if resource is missing:
                limit.cancel()
            else:
                since[id(resource)] = clock()
            return resource

        def release_bounded(resource: Any, failed: bool) -> bool:
            # Forgotten first: a waiter handed this resource records its own lease at once.
            start = since.pop(id(resource), None)
            if not give_back(resource):
                if start is not None:
                    since[id(resource)] = start
                return False
            if start is not None:
                limit.release(max(0.0, clock() - start), failed)
            return True

        return take_bounded, release_bounded, lambda resource: release_bounded(resource, False)


def bound_leases(limit: object) -> Unbounded:
    """The bound of a pool given ``limit`` (None: unbounded); names a bad one."""
    if limit is None:
        return Unbounded()
    if not isinstance(limit, Bound):
        raise TypeError(f"limit must be a switchgear.AdaptiveLimit, not {type(limit).__name__}")
    return BoundLeases(limit)

"""Components shared by name: ``@protected("payments")`` twice means one breaker.

Held weakly: a breaker lives as long as something protected with it does, so tests and
short-lived code do not accumulate breakers forever.
"""

from __future__ import annotations

import os
import threading
import weakref

from ._breaker import CircuitBreaker

__all__ = ["breaker_named", "breakers", "register_breaker", "unregister_breaker"]

_lock = threading.Lock()
_breakers: weakref.WeakValueDictionary[str, CircuitBreaker] = weakref.WeakValueDictionary()


def breaker_named(name: str) -> tuple[CircuitBreaker, bool]:
    """The live breaker called ``name`` (made with the defaults if there is none).

    Also says whether it was made (and registered) by this call.
    """
    with _lock:
        breaker = _breakers.get(name)
        if breaker is not None:
            return breaker, False
        breaker = CircuitBreaker(name)
        _breakers[name] = breaker
        return breaker, True


def register_breaker(breaker: CircuitBreaker) -> bool:
    """Make ``breaker`` the shared one for its name; True if this call registered it.

    Raises ValueError if another live breaker already has that name: one name, one breaker.
    """
    with _lock:
        current = _breakers.get(breaker.name)
        if current is None:
            _breakers[breaker.name] = breaker
            return True
    if current is not breaker:
        raise ValueError(
            f"breaker: another CircuitBreaker named {breaker.name!r} is already shared by a "
            "live @protected function; pass that same breaker to both, or give this one "
            "another name"
        )
    return False


def unregister_breaker(breaker: CircuitBreaker) -> None:
    """Undo a registration (a decoration that failed after registering must leave none)."""
    with _lock:
        if _breakers.get(breaker.name) is breaker:
            del _breakers[breaker.name]


def breakers() -> dict[str, CircuitBreaker]:
    """A snapshot of the live shared breakers by name."""
    with _lock:
        return dict(_breakers.items())


def _after_fork_in_child() -> None:
    # A fork taken while another thread held the lock must not leave the child waiting on it.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

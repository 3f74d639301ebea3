"""Components shared by name: ``@protected("payments")`` twice means one breaker.

Held weakly: a breaker lives as long as something protected with it does, so tests and
short-lived code do not accumulate breakers forever.
"""

from __future__ import annotations

import os
import threading
import weakref

from ._breaker import CircuitBreaker

__all__ = ["breaker_named", "breakers", "register_breaker"]

_lock = threading.Lock()
_breakers: weakref.WeakValueDictionary[str, CircuitBreaker] = weakref.WeakValueDictionary()


def breaker_named(name: str) -> CircuitBreaker:
    """The live breaker called ``name``, created with the seed's defaults if there is none."""
    with _lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name)
            _breakers[name] = breaker
        return breaker


def register_breaker(breaker: CircuitBreaker) -> CircuitBreaker:
    """Make ``breaker`` the shared one for its name, unless a live one is already there.

    Returns the breaker now registered under that name.
    """
    with _lock:
        return _breakers.setdefault(breaker.name, breaker)


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

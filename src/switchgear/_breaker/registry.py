"""Components shared by name: ``@protected("payments")`` twice means one breaker.

One name, one breaker per metrics registry: a breaker reports through the ``Metrics`` of its
name, and two breakers reporting under one name would export the state of only one of them.
``@protected`` and the HTTP middleware on prometheus_client's default registry share the
process-wide table; a middleware given its own ``registry`` shares a table with the other
middleware on that registry only.

Held weakly: a breaker lives as long as something protected with it does, so tests and
short-lived code do not accumulate breakers forever.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

from .breaker import CircuitBreaker

__all__ = [
    "breaker_named",
    "breakers",
    "configuration",
    "configuration_mismatch",
    "peek",
    "register_breaker",
    "shared_breaker",
    "unregister_breaker",
]

_lock = threading.Lock()
_breakers: weakref.WeakValueDictionary[str, CircuitBreaker] = weakref.WeakValueDictionary()
# Tables of the middleware given a registry of its own, by that registry.
_by_registry: weakref.WeakKeyDictionary[object, weakref.WeakValueDictionary[str, CircuitBreaker]]
_by_registry = weakref.WeakKeyDictionary()

#: The breaker options that decide when a breaker opens and closes, as public attributes.
_COMPARED = (
    "failure_threshold",
    "success_threshold",
    "open_timeout",
    "backoff_factor",
    "max_open_timeout",
    "backoff_jitter",
    "half_open_max_calls",
    "failure_rate_threshold",
    "slow_call_duration",
    "slow_call_rate_threshold",
    "window",
    "minimum_calls",
)


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


def breakers(registry: object = None) -> dict[str, CircuitBreaker]:
    """A snapshot of the live shared breakers by name (of ``registry``'s table)."""
    with _lock:
        return dict(_table(registry).items())


def _table(registry: object) -> weakref.WeakValueDictionary[str, CircuitBreaker]:
    """The name table for ``registry`` (None: the default one). Caller holds the lock."""
    if registry is None:
        return _breakers
    from prometheus_client import REGISTRY

    if registry is REGISTRY:
        return _breakers
    table = _by_registry.get(registry)
    if table is None:
        table = _by_registry[registry] = weakref.WeakValueDictionary()
    return table


def shared_breaker(
    name: str, make: Callable[[], CircuitBreaker], registry: object = None
) -> CircuitBreaker:
    """The live breaker called ``name`` among those exported in ``registry``, else ``make()``.

    ``make()`` is called with the table's lock held, at most once, and its breaker becomes
    the shared one for that name.
    """
    with _lock:
        table = _table(registry)
        breaker = table.get(name)
        if breaker is None:
            breaker = make()
            table[name] = breaker
        return breaker


def peek(name: str, registry: object = None) -> CircuitBreaker | None:
    """The live breaker called ``name`` in ``registry``'s table, if any (nothing is created)."""
    with _lock:
        return _table(registry).get(name)


def configuration(breaker: CircuitBreaker) -> dict[str, object]:
    """What decides when ``breaker`` opens and closes, as far as it is public."""
    config: dict[str, object] = {key: getattr(breaker, key, None) for key in _COMPARED}
    config["storage"] = type(breaker).__name__  # a shared (Redis) breaker is a subclass
    return config


def configuration_mismatch(existing: CircuitBreaker, wanted: CircuitBreaker) -> str | None:
    """``"option (a != b)"`` for the first option where the two breakers differ, else None."""
    have, want = configuration(existing), configuration(wanted)
    for key, value in want.items():
        if have[key] != value:
            return f"{key} ({have[key]!r} there, {value!r} here)"
    return None


def _after_fork_in_child() -> None:
    # A fork taken while another thread held the lock must not leave the child waiting on it.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""Failures of a metrics backend stay inside the metrics: logged once, counted, never raised.

An OpenTelemetry SDK whose instrument raises, or a multiprocess directory removed under a
running worker, must not turn a call that has already run into an exception for its caller
(the side effects are done; the result would be lost). Every per-event consumer of a
recorded call (the OpenTelemetry histograms, the multiprocess files) is wrapped here when it
is wired in, which costs nothing on the path without such consumers.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["contained", "counts", "report"]

logger = logging.getLogger("switchgear")

_F = TypeVar("_F", bound=Callable[..., Any])

_lock = threading.Lock()
_counts: dict[str, int] = {}
_logged: set[tuple[str, type[BaseException]]] = set()


def report(backend: str, error: Exception) -> None:
    """Count one failure of ``backend``; log it the first time it fails this way."""
    key = (backend, type(error))
    with _lock:
        _counts[backend] = _counts.get(backend, 0) + 1
        first = key not in _logged
        _logged.add(key)
    if first:
        logger.error(
            "switchgear: the %s metrics backend failed (%s); the call was not affected, "
            "and further failures of this kind are counted, not logged",
            backend,
            type(error).__name__,
            exc_info=error,
        )


def counts() -> dict[str, int]:
    """Failures so far by backend (``opentelemetry``, ``multiprocess``), for the status page."""
    with _lock:
        return dict(_counts)


def contained(backend: str) -> Callable[[_F], _F]:
    """Decorate a consumer of metrics events so that its failures are reported, not raised."""

    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as error:
                report(backend, error)
                return None

        return guarded  # type: ignore[return-value]

    return decorate


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

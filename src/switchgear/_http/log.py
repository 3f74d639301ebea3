"""Errors the middleware contains: logged once per kind, never raised into a request."""

from __future__ import annotations

import logging
import sys

__all__ = ["log_once"]

logger = logging.getLogger("switchgear")

_logged: set[str] = set()


def log_once(key: str, message: str, *args: object) -> None:
    """Log ``message`` (with the current exception, if any) the first time ``key`` is seen."""
    if key in _logged:
        return
    _logged.add(key)
    logger.error(message, *args, exc_info=sys.exc_info()[0] is not None)

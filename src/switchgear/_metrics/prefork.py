"""Startup checks for pre-fork servers: several workers need ``PROMETHEUS_MULTIPROC_DIR``.

Without the directory each worker counts on its own and ``/metrics`` answers with whichever
worker the scrape reached, so counts jump between scrapes. With a directory that does not
exist, every metric write fails. Both are configuration mistakes a server makes at startup,
so they are caught there: the missing directory as an error naming the variable, the
missing variable as one warning per server.

The worker count is read from the server that is loading the application (gunicorn's
arbiter or worker, uvicorn's server), found on the call stack when the middleware is built;
servers not recognised there are caught at the first scrape by the WSGI environ's
``wsgi.multiprocess`` flag.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from types import FrameType

from .prometheus import multiprocess_mode

__all__ = ["check_directory", "check_scrape", "check_server", "forked_unwarned"]

logger = logging.getLogger("switchgear")

_warned = False  # inherited by forked workers: a master that warned speaks for them all

MESSAGE = (
    "switchgear: %s and PROMETHEUS_MULTIPROC_DIR is not set: each worker counts on its own, "
    "so /metrics jumps between workers. Set it to an empty directory before the server "
    "starts (see the pre-fork section of docs/deployment.md)."
)


def check_directory() -> None:
    """Refuse a ``PROMETHEUS_MULTIPROC_DIR`` that cannot hold the files, naming the variable."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and not (os.path.isdir(path) and os.access(path, os.W_OK)):
        raise ValueError(
            f"PROMETHEUS_MULTIPROC_DIR={path!r} is not a writable directory; create it "
            "(empty) before the workers start, or unset the variable"
        )


def _server_workers(frame: FrameType | None) -> tuple[int, bool] | None:
    """``(workers, speaks)`` of the pre-fork server whose code is on the stack, if any.

    ``speaks`` elects one process of the server to warn: gunicorn's arbiter (the app is
    preloaded there), else its first worker (``age`` 1; a restarted worker is not), or
    uvicorn's first worker process.
    """
    workers: int | None = None
    speaks: bool | None = None
    while frame is not None:
        owner = frame.f_locals.get("self")
        frame = frame.f_back
        if owner is None:
            continue
        cfg = getattr(owner, "cfg", None)  # gunicorn: arbiter, worker, application
        count = getattr(cfg, "workers", None)
        if "gunicorn" in sys.modules and isinstance(count, int):
            workers = count if workers is None else workers
            age = getattr(owner, "age", None)
            if speaks is not None:
                pass  # the innermost server object decides (a worker runs inside the arbiter)
            elif isinstance(age, int) and hasattr(owner, "ppid"):
                speaks = age == 1
            elif hasattr(owner, "num_workers"):
                speaks = True
            continue
        config = getattr(owner, "config", None)  # uvicorn's Server
        count = getattr(config, "workers", None)
        if "uvicorn" in sys.modules and isinstance(count, int) and hasattr(owner, "serve"):
            workers = count if workers is None else workers
            first = multiprocessing.current_process().name.endswith("-1")
            speaks = first if speaks is None else speaks
    if workers is None:
        return None
    return workers, True if speaks is None else speaks


def _warn(what: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(MESSAGE, what)


def check_server() -> None:
    """At startup: fail on a bad directory; warn once if a multi-worker server lacks one."""
    check_directory()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or _warned:
        return
    found = _server_workers(sys._getframe(1))
    if found is not None and found[0] > 1 and found[1]:
        _warn(f"the server runs {found[0]} worker processes")


def check_scrape(multiprocess: object) -> None:
    """At a scrape: the server says other processes serve this app (``wsgi.multiprocess``)."""
    if multiprocess is True and not _warned and not multiprocess_mode():
        _warn("the server runs several worker processes")


def forked_unwarned() -> bool:
    """In a forked child: whether no warning was given for this server yet (then claim it)."""
    global _warned
    if _warned:
        return False
    _warned = True
    return True

"""Dead workers' multiprocess files, folded into one archive file per metric type.

In multiprocess mode every worker writes its counters and histograms to files of its own
(``counter_<pid>.db``, ``histogram_<pid>.db``), and a scrape reads every file in the
directory. A server that recycles workers (gunicorn ``max_requests``) would leave two files
per dead worker forever, and scrapes would slow down with them. :func:`mark_process_dead`
adds a dead worker's values into ``counter_archive.db`` / ``histogram_archive.db`` and
removes its files, so the directory holds the live workers' files and one archive per type,
with exactly the same totals.

Scrapes and compaction exclude each other through an advisory lock on a file in the same
directory (shared for scrapes, exclusive for a compaction): a scrape never sees a dead
worker's values twice (archive and own file) or not at all, which would look to Prometheus
like a counter jump or a counter reset.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

__all__ = ["ARCHIVED_TYPES", "mark_process_dead", "scrape_guard"]

#: The file types whose values are summed over workers (gauges have modes of their own).
ARCHIVED_TYPES = ("counter", "histogram", "summary")
_LOCK_NAME = ".switchgear-archive.lock"


@contextlib.contextmanager
def _locked(path: str, mode: int) -> Iterator[None]:
    fd = os.open(os.path.join(path, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # releases the lock


def scrape_guard(path: str) -> contextlib.AbstractContextManager[None]:
    """Hold while reading the directory's files: no compaction runs meanwhile."""
    return _locked(path, fcntl.LOCK_SH)


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Tell the metrics that worker ``pid`` has exited; call it from ``child_exit``.

    Does what ``prometheus_client.multiprocess.mark_process_dead`` does (the dead worker's
    live gauges stop counting) and folds its counters and histograms into the archive
    files. ``path`` defaults to ``PROMETHEUS_MULTIPROC_DIR``.

    Example (``gunicorn.conf.py``)::

        import switchgear

        def child_exit(server, worker):
            switchgear.mark_process_dead(worker.pid)
    """
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if pid <= 0:
        raise ValueError(f"pid must be > 0, got {pid!r}")
    if path is None:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            raise ValueError("path: PROMETHEUS_MULTIPROC_DIR is not set and no path was given")
    if pid == os.getpid():
        raise ValueError(f"pid {pid} is this process, which is not dead")
    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    with _locked(path, fcntl.LOCK_EX):
        for kind in ARCHIVED_TYPES:
            dead = os.path.join(path, f"{kind}_{pid}.db")
            if os.path.exists(dead):
                _fold(os.path.join(path, f"{kind}_archive.db"), dead)


def _fold(archive: str, dead: str) -> None:
    totals: dict[str, float] = {}
    for source in (archive, dead):
        if not os.path.exists(source):
            continue
        for key, value, _, _ in MmapedDict.read_all_values_from_file(source):  # type: ignore[no-untyped-call]
            totals[key] = totals.get(key, 0.0) + value
    # Written aside under a name scrapes do not read (not *.db), then swapped in at once.
    partial = archive + ".partial"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)
    written = MmapedDict(partial)  # type: ignore[no-untyped-call]
    try:
        for key, value in totals.items():
            written.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
    finally:
        written.close()  # type: ignore[no-untyped-call]
    os.replace(partial, archive)
    # A crash between the replace above and this unlink would leave the dead worker's
    # values counted twice; both are single system calls, one after the other.
    os.unlink(dead)

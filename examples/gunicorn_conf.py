"""gunicorn settings for switchgear apps: ``gunicorn -c examples/gunicorn_conf.py ...``.

With ``PROMETHEUS_MULTIPROC_DIR`` set (to an empty directory, before gunicorn starts), every
worker writes its metrics there and ``/metrics`` reports the sum over all workers. A worker
that exits must be marked dead, so that its live gauges stop counting.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

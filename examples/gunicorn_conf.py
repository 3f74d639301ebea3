"""gunicorn settings for switchgear apps: ``gunicorn -c examples/gunicorn_conf.py ...``.

With ``PROMETHEUS_MULTIPROC_DIR`` set (to an empty directory, before gunicorn starts), every
worker writes its metrics there and ``/metrics`` reports the sum over all workers. A worker
that exits must be marked dead, so that its live gauges stop counting and its counters are
folded into the archive file.
"""

from __future__ import annotations

from typing import Any

import switchgear


def child_exit(server: Any, worker: Any) -> None:
    switchgear.mark_process_dead(worker.pid)

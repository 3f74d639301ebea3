"""gunicorn settings for pre-fork tests: what docs/middleware.md tells users to add.

With ``PROMETHEUS_MULTIPROC_DIR`` set, each worker writes its metrics to files there and
``/metrics`` sums them; a worker that exits must be marked dead so its live gauges go away.
"""

from __future__ import annotations

from typing import Any

import switchgear


def child_exit(server: Any, worker: Any) -> None:
    switchgear.mark_process_dead(worker.pid)

"""The ``/metrics`` response: this process's registry, or every worker's files merged.

Kept apart from the collector so that the multiprocess mirror (which this module refreshes
before a merge) and the collector never need each other.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from .archive import scrape_guard
from .multiprocess import refresh_local
from .prometheus import multiprocess_mode

__all__ = ["render_latest"]


def render_latest(
    registry: CollectorRegistry | None = None, accept: str | None = None
) -> tuple[bytes, str]:
    """The body and content type for a ``/metrics`` response.

    ``accept`` is the request's ``Accept`` header: OpenMetrics when it asks for it, else the
    Prometheus text format. With ``PROMETHEUS_MULTIPROC_DIR`` set, every process's files are
    merged by a fresh ``MultiProcessCollector`` (``registry`` is then ignored: file-backed
    metrics are not registered anywhere); otherwise ``registry`` (default: the global one)
    is rendered.
    """
    encoder, content_type = choose_encoder(accept or "")
    if multiprocess_mode():
        refresh_local()  # this worker's gauges are current even if it was idle
        target = CollectorRegistry()
        MultiProcessCollector(target)  # type: ignore[no-untyped-call]
        # No dead worker's files are folded into the archive while they are read.
        with scrape_guard(os.environ["PROMETHEUS_MULTIPROC_DIR"]):
            return encoder(target), content_type
    target = REGISTRY if registry is None else registry
    return encoder(target), content_type

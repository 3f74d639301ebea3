"""Metrics: family table, series, store, Prometheus, multiprocess, OpenTelemetry.

``render_latest`` is re-exported here, where the documentation points advanced users (a
``/metrics`` view of their own); it is not public API (see docs/versioning.md).
"""

from .exposition import render_latest

__all__ = ["render_latest"]

"""Metrics: family table, series, store, Prometheus, multiprocess, OpenTelemetry."""

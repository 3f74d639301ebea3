"""Adaptive concurrency: pure limit policies (``policy``) and the limiter (``limiter``)."""

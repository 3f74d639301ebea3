"""Placeholder: replaced by the DynamicPool implementation (issue 3)."""

from __future__ import annotations


class PoolStats:
    """Placeholder."""


class DynamicPool:
    """Placeholder."""

"""The status endpoint's answer: every name, pool and adaptive limit this registry knows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from .._limit.limiter import AdaptiveLimit
from .._metrics.facade import live_limits, live_metrics, live_pools
from .endpoints import Response, as_dict, error_response, json_response, status_document
from .log import log_once

__all__ = ["limit_figures", "pool_figures", "status_answer"]


def pool_figures(pool: Any) -> dict[str, Any]:
    """A pool's stats and its bounds, for the status document."""
    return {**as_dict(pool.stats()), "min_size": pool.min_size, "max_size": pool.max_size}


def limit_figures(limit: AdaptiveLimit) -> dict[str, object]:
    """An adaptive limit's figures, for the status document (round trips in seconds)."""
    return {
        "algorithm": limit.algorithm,
        "limit": limit.limit,
        "in_flight": limit.in_flight,
        "min_limit": limit.min_limit,
        "max_limit": limit.max_limit,
        "baseline": limit.baseline,
        "recent": limit.recent,
        "probing": limit.probing,
    }


def status_answer(
    routes: Mapping[str, Any], registry: CollectorRegistry | None, pool: Any | None
) -> Response:
    """The status document of ``routes`` (the middleware's, first) and of everything else
    recorded in ``registry``: names protected inside handlers (``@protected``), pools and
    limits attached to metrics. One page for what this process protects; never raises.
    """
    try:
        names: dict[str, tuple[object, ...]] = {}
        memory: tuple[int, int] | None = None
        for key, route in sorted(routes.items()):
            stats = route.metrics.stats()
            if memory is None:
                memory = (
                    int(getattr(stats, "memory_used", 0)),
                    int(getattr(stats, "memory_limit", 0)),
                )
            series = route.metrics.series
            names[key] = (
                stats,
                route.metrics.window_stats(),
                route.breaker,
                series.snapshot(),
                series.bounds,
            )
        for metrics in live_metrics(registry):
            if metrics.name not in names:
                series = metrics.series
                names[metrics.name] = (
                    metrics.stats(),
                    metrics.window_stats(),
                    series.breaker(),
                    series.snapshot(),
                    series.bounds,
                )
        if memory is None:
            from .._metrics.memory import read_memory

            memory = read_memory()
        pools: dict[str, object] = {p.name: pool_figures(p) for p in live_pools(registry)}
        if pool is not None:
            pools[pool.name] = pool_figures(pool)
        limits = {limit.name: limit_figures(limit) for limit in live_limits(registry)}
        return json_response(200, status_document(names, pools, memory, limits))
    except Exception:
        log_once("status", "switchgear: rendering the status document failed")
        return error_response(500, "internal_error")

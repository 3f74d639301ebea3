"""Every threshold, window and duration of the shipped alerts, in one place.

Change a value here, run ``python -m tools.observability`` and commit the regenerated
files: the rules, their promtool tests and ``docs/runbooks.md`` all follow. Durations are
whole seconds; :func:`tools.observability.promql.duration` renders them for Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from switchgear import LATENCY_BUCKETS as _LIBRARY_BUCKETS

#: The library's histogram bucket bounds: the ``le`` values rules and panels may use.
LATENCY_BUCKETS: tuple[float, ...] = _LIBRARY_BUCKETS

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass(frozen=True)
class BurnWindow:
    """One row of the SRE workbook's multi-window, multi-burn-rate table.

    The alert condition holds when the ratio over both windows exceeds
    ``factor * (1 - target)``: the long window proves the budget is really burning, the
    short one (1/12 of it) makes the alert stop soon after the burn stops.
    """

    long: int
    short: int
    factor: float
    budget_share: str  # what one such burn consumes, for the docs


#: Page: 2 % of a 30-day budget in 1 h, or 5 % in 6 h.
FAST_BURN: tuple[BurnWindow, ...] = (
    BurnWindow(long=HOUR, short=5 * MINUTE, factor=14.4, budget_share="2 % in 1 h"),
    BurnWindow(long=6 * HOUR, short=30 * MINUTE, factor=6.0, budget_share="5 % in 6 h"),
)
#: Ticket: 10 % of a 30-day budget in 1 d, or 10 % in 3 d.
SLOW_BURN: tuple[BurnWindow, ...] = (
    BurnWindow(long=DAY, short=2 * HOUR, factor=3.0, budget_share="10 % in 1 d"),
    BurnWindow(long=3 * DAY, short=6 * HOUR, factor=1.0, budget_share="10 % in 3 d"),
)


@dataclass(frozen=True)
class Config:
    """Thresholds and windows. ``Config()`` is what the committed files are made from."""

    #: Scrape job name used where a selector must name the job (target down, absent).
    job: str = "switchgear"
    #: Where ``runbook_url`` points; each alert appends ``#<anchor>``. Relative to the
    #: repository root by default: set it to the URL of your hosted copy.
    runbook_base_url: str = "docs/runbooks.md"

    # --- SLOs (30-day period) -----------------------------------------------------------
    #: Share of executed calls that must succeed (``outcome="success"``).
    error_slo_target: float = 0.999
    #: Share of executed calls that must finish within ``latency_slo_threshold``.
    latency_slo_target: float = 0.99
    #: Seconds; must be one of ``LATENCY_BUCKETS`` (the rule reads that ``le`` bucket).
    latency_slo_threshold: float = 0.5
    slo_period_days: int = 30
    fast_burn: tuple[BurnWindow, ...] = field(default=FAST_BURN)
    slow_burn: tuple[BurnWindow, ...] = field(default=SLOW_BURN)
    fast_burn_for: int = 2 * MINUTE
    fast_burn_keep_firing_for: int = 5 * MINUTE
    slow_burn_for: int = 30 * MINUTE
    slow_burn_keep_firing_for: int = 30 * MINUTE

    #: Calls per second (executed + rejected, over the ratio's window) below which the
    #: rejection and pool-wait alerts stay silent: a handful of calls proves nothing.
    min_call_rate: float = 0.1

    # --- breakers -----------------------------------------------------------------------
    breaker_open_for: int = 5 * MINUTE
    breaker_open_keep_firing_for: int = 2 * MINUTE
    breaker_not_recovering_window: int = 30 * MINUTE
    breaker_flap_window: int = 30 * MINUTE
    breaker_flap_trips: int = 3
    breaker_flap_keep_firing_for: int = 10 * MINUTE

    # --- rejections ---------------------------------------------------------------------
    rejection_window: int = 5 * MINUTE
    rejection_ratio: float = 0.05
    rejection_for: int = 5 * MINUTE
    rejection_keep_firing_for: int = 5 * MINUTE

    # --- pools --------------------------------------------------------------------------
    pool_waiting_window: int = 2 * MINUTE
    pool_saturated_for: int = 5 * MINUTE
    pool_saturated_keep_firing_for: int = 5 * MINUTE
    pool_wait_quantile: float = 0.99
    pool_wait_threshold: float = 0.5
    pool_wait_window: int = 5 * MINUTE
    pool_wait_for: int = 10 * MINUTE
    pool_wait_keep_firing_for: int = 5 * MINUTE
    pool_thrash_window: int = 30 * MINUTE
    pool_thrash_events: int = 6
    pool_thrash_keep_firing_for: int = 15 * MINUTE
    limit_floor_window: int = 10 * MINUTE
    limit_floor_for: int = 5 * MINUTE
    limit_floor_keep_firing_for: int = 5 * MINUTE

    # --- runtime ------------------------------------------------------------------------
    memory_ratio: float = 0.9
    memory_for: int = 10 * MINUTE
    memory_keep_firing_for: int = 5 * MINUTE
    cold_start_window: int = 15 * MINUTE
    cold_start_count: int = 20
    cold_start_ratio: float = 0.1
    cold_start_for: int = 5 * MINUTE
    cold_start_keep_firing_for: int = 10 * MINUTE
    target_down_for: int = 5 * MINUTE
    metrics_absent_for: int = 10 * MINUTE

    def __post_init__(self) -> None:
        if self.latency_slo_threshold not in LATENCY_BUCKETS:
            raise ValueError(
                f"latency_slo_threshold must be one of LATENCY_BUCKETS {LATENCY_BUCKETS}, "
                f"got {self.latency_slo_threshold!r}"
            )
        for name in ("error_slo_target", "latency_slo_target"):
            target = getattr(self, name)
            if not 0 < target < 1:
                raise ValueError(f"{name} must be in (0, 1), got {target!r}")

    @property
    def error_budget(self) -> float:
        """Allowed share of failed calls, ``1 - error_slo_target``, rounded (0.001)."""
        return round(1 - self.error_slo_target, 12)

    @property
    def latency_budget(self) -> float:
        """Allowed share of calls slower than the threshold."""
        return round(1 - self.latency_slo_target, 12)

    @property
    def burn_windows(self) -> tuple[int, ...]:
        """Every window a ratio recording rule is needed for, shortest first."""
        seconds = {w.long for w in self.fast_burn + self.slow_burn}
        seconds |= {w.short for w in self.fast_burn + self.slow_burn}
        return tuple(sorted(seconds))


DEFAULT = Config()

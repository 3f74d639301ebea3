"""Runbook prose: one Markdown template per alert in ``runbooks/``, its numbers filled in
from the :class:`Config` the rules are made from, so a threshold in the prose can never
disagree with the rule.

A template is ``<alert without Switchgear, snake_case>.md``: a first paragraph
``**Fires when:** ...``, then the sections ``### Meaning``, ``### Impact``, ``### Diagnosis``
(a caption ending in ``:`` before each ``promql`` block), ``### Mitigation`` and
``### Thresholds and flapping``. Placeholders are ``${name}`` (``$$`` is a literal ``$``),
with the names of :func:`values`: every field of the :class:`Config` (windows and
durations as ``5m``, the rest as numbers), ``<field>_pct`` for a share in per cent, and a
few derived phrases.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from .config import BurnWindow, Config
from .promql import duration, number

TEMPLATES = Path(__file__).resolve().parent / "runbooks"
_DIAGNOSIS = re.compile(r"^(.+):\n\n```promql\n(.*?)\n```$", re.MULTILINE | re.DOTALL)


def template_path(alert: str) -> Path:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", alert.removeprefix("Switchgear")).lower()
    return TEMPLATES / f"{snake}.md"


@dataclass(frozen=True)
class Runbook:
    """One alert's rendered runbook section (below its heading and rule)."""

    text: str

    @property
    def condition(self) -> str:
        """The firing condition in words: the first paragraph, without its label."""
        first = self.text.split("\n\n", 1)[0]
        return first.removeprefix("**Fires when:** ").removesuffix(".")

    @property
    def body(self) -> str:
        return self.text.split("\n\n", 1)[1]

    @property
    def diagnosis(self) -> list[tuple[str, str]]:
        """(caption, PromQL) of every diagnosis query."""
        section = self.text.split("### Diagnosis", 1)[1].split("\n### ", 1)[0]
        return [(m.group(1), m.group(2)) for m in _DIAGNOSIS.finditer(section)]


def _burn(windows: tuple[BurnWindow, ...], budget: float, what: str) -> str:
    return "; or ".join(
        f"{what} over {duration(w.long)} and over {duration(w.short)} both above "
        f"{number(w.factor)} × {number(budget)} = {number(w.factor * budget)} "
        f"(burn rate {number(w.factor)}, {w.budget_share})"
        for w in windows
    )


def _budget_gone(windows: tuple[BurnWindow, ...], days: int) -> str:
    fastest = max(w.factor for w in windows)
    slowest = min(w.factor for w in windows)
    return (
        f"at {number(fastest)}× the budget of {days} days lasts {days / fastest:.1f} days; "
        f"at {number(slowest)}× it lasts {days / slowest:.1f} days"
    )


def values(c: Config) -> dict[str, str]:
    """Every placeholder a runbook template may use."""
    out: dict[str, str] = {"job": c.job, "job_matcher": f'job="{c.job}"'}
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            timed = f.name.endswith(("_for", "_window"))
            out[f.name] = duration(int(value)) if timed else number(value)
            if isinstance(value, float):
                out[f"{f.name}_pct"] = number(value * 100)
    lat_ms = f"{c.latency_slo_threshold * 1000:g} ms"
    slow = f"share of calls over {lat_ms}"
    return out | {
        "error_budget": number(c.error_budget),
        "error_budget_pct": number(c.error_budget * 100),
        "page_error_ratio": number(max(w.factor for w in c.fast_burn) * c.error_budget),
        "err_pct": f"{c.error_slo_target * 100:g} %",
        "lat_pct": f"{c.latency_slo_target * 100:g} %",
        "lat_ms": lat_ms,
        "latency_le": repr(c.latency_slo_threshold),
        "rejected_ratio": f"job_name:switchgear_rejected:ratio_rate{duration(c.rejection_window)}",
        "fast_budget_gone": _budget_gone(c.fast_burn, c.slo_period_days),
        "slow_budget_gone": _budget_gone(c.slow_burn, c.slo_period_days),
        "err_fast_burn": _burn(c.fast_burn, c.error_budget, "error ratio"),
        "err_slow_burn": _burn(c.slow_burn, c.error_budget, "error ratio"),
        "lat_fast_burn": _burn(c.fast_burn, c.latency_budget, slow),
        "lat_slow_burn": _burn(c.slow_burn, c.latency_budget, slow),
    }


def render(alert: str, config: Config) -> Runbook:
    """The runbook of ``alert``; a placeholder with no value raises ``KeyError``."""
    text = template_path(alert).read_text(encoding="utf-8")
    return Runbook(Template(text).substitute(values(config)).strip("\n"))

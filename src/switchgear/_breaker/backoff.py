"""How long a breaker stays OPEN: ``open_timeout``, growing while its trials keep failing.

One rule, used by the in-process machine and mirrored by the shared store's script
(``switchgear/_redis/exchange.lua``, checked against this one by the tests): after ``k``
failed or hung trial episodes in a row the open interval is
``min(open_timeout * backoff_factor ** k, max_open_timeout)``, shortened by up to
``backoff_jitter`` of itself at random so that the processes of a fleet do not all probe at
the same instant. Closing the breaker (or a reset) returns it to ``k = 0``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """The open-interval rule of one breaker (options already validated)."""

    open_timeout: float
    factor: float = 1.0
    maximum: float = math.inf
    jitter: float = 0.0

    @property
    def active(self) -> bool:
        """Whether the interval can ever differ from ``open_timeout``."""
        return self.factor > 1.0 or self.jitter > 0.0

    @property
    def longest(self) -> float:
        """The longest open interval this rule can give."""
        return self.maximum if self.factor > 1.0 else self.open_timeout

    def grown(self, backoffs: int) -> float:
        """The interval after ``backoffs`` failed trial episodes, before jitter."""
        if self.factor <= 1.0 or backoffs <= 0:
            return self.open_timeout
        # Compared in logarithms: factor ** backoffs overflows long before a year of backoff.
        if backoffs * math.log(self.factor) >= math.log(self.maximum / self.open_timeout):
            return self.maximum
        return min(self.open_timeout * self.factor**backoffs, self.maximum)

    def draw(self) -> float:
        """The fraction to take off the next interval: uniform in [0, jitter)."""
        return self.jitter * random.random() if self.jitter else 0.0

    def interval(self, backoffs: int, draw: float = 0.0) -> float:
        """The open interval after ``backoffs`` failed episodes, less ``draw`` of itself."""
        return self.grown(backoffs) * (1.0 - draw)

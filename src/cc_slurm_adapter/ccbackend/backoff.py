"""Capped exponential backoff with full jitter (pure; the random source is injected).

For attempt ``n`` (0 for the first retry) the delay is drawn uniformly from
``[0, min(cap, base * 2**n)]`` ("full jitter"): after an outage, thousands of queued
submissions do not come back in lockstep. The caller uses it for RETRY and AUTH outcomes
and resets the attempt count after a DONE.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 1.0
    """Ceiling of the first delay, in seconds."""
    cap: float = 60.0
    """No delay is ever longer than this."""

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap >= self.base):
            raise ValueError("Backoff needs base > 0 and cap >= base")

    def ceiling(self, attempt: int) -> float:
        """The longest delay for ``attempt`` (0-based): ``min(cap, base * 2**attempt)``."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        if attempt >= 1024:  # 2**1024 overflows a float; far past any cap anyway
            return self.cap
        return min(self.cap, self.base * 2.0 ** attempt)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """A delay in ``[0, ceiling(attempt)]``; ``rand`` returns a float in [0, 1)."""
        return rand() * self.ceiling(attempt)

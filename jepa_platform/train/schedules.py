"""Learning-rate, weight-decay and EMA-momentum schedules as pure functions of the step.

All three are defined over `round(scale * steps)` steps and evaluated only up to `steps`: with the
default scale of 1.25 they are truncated before reaching their end values, as in V-JEPA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def stretched_length(steps: int, scale: float) -> int:
    return max(1, int(round(scale * steps)))


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup from `start` to `peak`, then cosine from `peak` to `final` over the stretched length."""

    start: float
    peak: float
    final: float
    warmup: int
    total: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start + (self.peak - self.start) * step / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.final + (self.peak - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Cosine:
    """Cosine from `start` to `end` (e.g. weight decay 0.04 -> 0.4) over `total` steps."""

    start: float
    end: float
    total: int

    def __call__(self, step: int) -> float:
        progress = min(1.0, step / max(1, self.total))
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Linear:
    """Linear from `start` to `end` over `total` steps (EMA momentum 0.998 -> 1.0)."""

    start: float
    end: float
    total: int

    def __call__(self, step: int) -> float:
        return self.start + (self.end - self.start) * min(1.0, step / max(1, self.total))

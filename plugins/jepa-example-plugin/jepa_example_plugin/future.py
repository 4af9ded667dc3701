"""Future prediction masking: the student sees the first time steps of a clip and predicts the rest.

Multi-block masks ask "what is hidden here, given what surrounds it"; a future mask asks "what comes
next, given the past", the objective of world-model style pretraining. Mixing the two in one job
(`masks: [future, multiblock]`) gives the predictor one mask token per task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jepa_platform.errors import ConfigError
from jepa_platform.masks.base import Masks, masks_from_masked


@dataclass(frozen=True)
class FuturePredictionMasker:
    """Context = every token of the first ``c`` time steps; targets = every token from ``c + gap`` on.

    ``c`` is ``round(f * T')`` for a fraction ``f`` drawn once per batch from ``context_fraction``
    (min, max), kept within [1, T' - 1 - gap] so both sets are non-empty. The ``gap`` time steps
    between them are in neither set (they show up in ``Masks.dropped()``), so the model must predict
    further ahead than the next tubelet. Counts are equal across the batch: nothing is truncated,
    and no randomness is drawn when ``context_fraction`` is a single value.
    """

    context_fraction: tuple[float, float] = (0.5, 0.5)
    gap: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.context_fraction
        if not 0.0 < lo <= hi < 1.0:
            raise ConfigError(f"context_fraction: need 0 < min <= max < 1, got {(lo, hi)}")
        if self.gap < 0:
            raise ConfigError(f"gap: must be >= 0, got {self.gap}")

    def context_steps(self, duration: int, generator: torch.Generator) -> int:
        """How many of the ``duration`` time steps the context gets for this batch."""
        most = duration - 1 - self.gap
        if most < 1:
            raise ConfigError(
                f"gap: {self.gap} time step(s) leave no room for context and targets in a clip of "
                f"{duration} token time steps; use a smaller gap or more frames"
            )
        lo, hi = (min(max(round(f * duration), 1), most) for f in self.context_fraction)
        if lo == hi:
            return lo
        return int(torch.randint(lo, hi + 1, (1,), generator=generator))

    def __call__(self, batch_size: int, grid: tuple[int, int, int], generator: torch.Generator) -> Masks:
        duration, height, width = grid
        per_step = height * width
        steps = self.context_steps(duration, generator)
        time_of_token = torch.arange(duration * per_step) // per_step
        masked = (time_of_token >= steps).expand(batch_size, -1).clone()
        masks = masks_from_masked(masked, "prefix", generator)  # equal counts: nothing is cut
        # Targets are sorted time-major, so the gap's tokens are the first gap * H' * W' of them.
        return Masks(context=masks.context, targets=masks.targets[:, self.gap * per_step :], masked=masked)

"""VideoMAE tube masking: the same spatial positions masked in every frame.

Masking whole tubes stops the model from copying a patch from the next frame, so even a high
ratio still demands spatial reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from jepa_platform.masks import _checks
from jepa_platform.masks.base import Masks, masks_from_masked


@dataclass(frozen=True)
class TubeMasker:
    """Masks exactly ``int(ratio * H' * W')`` spatial positions per sample, across all T' frames.

    Counts are equal across the batch, so nothing is truncated.
    """

    ratio: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratio", _checks.open_unit("ratio", self.ratio))

    def __call__(self, batch_size: int, grid: tuple[int, int, int], generator: torch.Generator) -> Masks:
        duration, height, width = _checks.check_grid(grid)
        positions = height * width
        count = _checks.exact_count("ratio", self.ratio, positions, f"positions of a {height}x{width} frame")
        chosen = torch.rand(batch_size, positions, generator=generator).argsort(dim=1)[:, :count]
        spatial = torch.zeros(batch_size, positions, dtype=torch.bool).scatter_(1, chosen, True)
        masked = spatial[:, None, :].expand(batch_size, duration, positions).reshape(batch_size, -1)
        return masks_from_masked(masked, "prefix", generator)

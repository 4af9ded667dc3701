"""Uniformly random token masking: the unstructured baseline the block maskers are measured against."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from jepa_platform.masks import _checks
from jepa_platform.masks.base import Masks, masks_from_masked


@dataclass(frozen=True)
class RandomMasker:
    """Masks exactly ``int(ratio * T' * H' * W')`` tokens per sample, chosen uniformly; no truncation."""

    ratio: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratio", _checks.open_unit("ratio", self.ratio))

    def __call__(self, batch_size: int, grid: tuple[int, int, int], generator: torch.Generator) -> Masks:
        duration, height, width = _checks.check_grid(grid)
        total = duration * height * width
        what = f"tokens of a {duration}x{height}x{width} grid"
        count = _checks.exact_count("ratio", self.ratio, total, what)
        chosen = torch.rand(batch_size, total, generator=generator).argsort(dim=1)[:, :count]
        masked = torch.zeros(batch_size, total, dtype=torch.bool).scatter_(1, chosen, True)
        return masks_from_masked(masked, "prefix", generator)

"""V-JEPA's 3D multi-block mask: a union of a few large spatio-temporal blocks per clip.

Large contiguous blocks (rather than scattered tokens) keep the prediction task from being
solved by interpolating from neighbouring patches, which is what makes the learnt features semantic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from jepa_platform.errors import ConfigError
from jepa_platform.masks import _checks
from jepa_platform.masks.base import TRUNCATIONS, Masks, Truncation, masks_from_masked


@dataclass(frozen=True)
class MultiBlockMasker:
    """Masks the union of ``num_blocks`` equal-sized blocks placed uniformly at random.

    The block size (t, h, w) is drawn once per batch, as in the official code, so all samples
    of a batch see the same kind of task; positions are drawn per sample and block. Context =
    unmasked tokens, targets = all masked tokens. A sample left with no context is redrawn, up to
    ``max_attempts`` times, then a ConfigError says the mask is too large for the grid.
    """

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    truncate: Truncation = "random"
    max_attempts: int = 100

    def __post_init__(self) -> None:
        # Normalise YAML lists to tuples while validating; frozen, hence object.__setattr__.
        checked = {
            "num_blocks": _checks.positive_int("num_blocks", self.num_blocks),
            "spatial_scale": _checks.unit_range("spatial_scale", self.spatial_scale),
            "temporal_scale": _checks.unit_range("temporal_scale", self.temporal_scale),
            "aspect_ratio": _checks.positive_range("aspect_ratio", self.aspect_ratio),
            "truncate": _checks.one_of("truncate", self.truncate, TRUNCATIONS),
            "max_attempts": _checks.positive_int("max_attempts", self.max_attempts),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def block_size(self, grid: tuple[int, int, int], generator: torch.Generator) -> tuple[int, int, int]:
        """(t, h, w) of one block: the spatial scale sets tokens per frame, the aspect ratio their shape."""
        duration, height, width = grid
        u_t, u_s, u_ar = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        t_scale = _lerp(self.temporal_scale, u_t)
        num_tokens = int(height * width * _lerp(self.spatial_scale, u_s))
        ratio = _lerp(self.aspect_ratio, u_ar)
        t = max(1, int(duration * t_scale))
        h = min(max(round(math.sqrt(num_tokens * ratio)), 1), height)
        w = min(max(round(math.sqrt(num_tokens / ratio)), 1), width)
        return t, h, w

    def __call__(self, batch_size: int, grid: tuple[int, int, int], generator: torch.Generator) -> Masks:
        grid = _checks.check_grid(grid)
        size = self.block_size(grid, generator)
        masked = _place_blocks(batch_size, grid, size, self.num_blocks, generator)
        for _ in range(self.max_attempts):
            empty = masked.all(dim=1).nonzero()[:, 0]
            if empty.numel() == 0:
                return masks_from_masked(masked, self.truncate, generator)
            masked[empty] = _place_blocks(empty.numel(), grid, size, self.num_blocks, generator)
        t, h, w = size
        raise ConfigError(
            f"num_blocks/spatial_scale/temporal_scale: {self.num_blocks} block(s) of {t}x{h}x{w} tokens "
            f"still covered the whole {'x'.join(map(str, grid))} grid after {self.max_attempts} attempts, "
            "leaving no context; use fewer or smaller blocks"
        )


def _lerp(bounds: tuple[float, float], u: float) -> float:
    return bounds[0] + u * (bounds[1] - bounds[0])


def _place_blocks(
    batch_size: int,
    grid: tuple[int, int, int],
    size: tuple[int, int, int],
    num_blocks: int,
    generator: torch.Generator,
) -> Tensor:
    """[B, T'*H'*W'] bool: the union of ``num_blocks`` blocks at uniform positions, per sample."""
    shape = (batch_size, num_blocks)
    spans = []  # per axis, [B, blocks, axis length] bool: is this coordinate inside the block?
    for length, extent in zip(grid, size, strict=True):
        start = torch.randint(0, length - extent + 1, shape, generator=generator)
        coord = torch.arange(length)
        spans.append((coord >= start[..., None]) & (coord < start[..., None] + extent))
    in_t, in_h, in_w = spans
    blocks = in_t[..., :, None, None] & in_h[..., None, :, None] & in_w[..., None, None, :]
    return blocks.any(dim=1).flatten(1)

"""Clip-level augmentation: every frame of a clip gets the same crop and flip.

Sharing one box across time matters for video SSL: per-frame crops would add motion that is
not in the video and that a latent predictor could learn to explain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from jepa_platform.errors import ConfigError

__all__ = ["ClipTransform"]


class ClipTransform:
    """uint8 ``[T, H, W, 3]`` frames -> normalised float ``[C, T, H, W]`` at ``resolution``².

    Train: one random-resized-crop box (``scale`` of the area, aspect ``ratio``) for the whole
    clip, horizontal flip with p=0.5, all drawn from the ``generator`` passed to ``__call__``
    (the global RNG only if it is ``None``). Eval: resize the shorter side, centre crop.
    """

    def __init__(
        self,
        resolution: int,
        train: bool = True,
        scale: tuple[float, float] = (0.3, 1.0),
        ratio: tuple[float, float] = (0.75, 1.35),
        hflip: bool = True,
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
    ) -> None:
        if resolution < 1:
            raise ConfigError(f"resolution must be >= 1, got {resolution}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
        self.resolution = resolution
        self.train = train
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.hflip = hflip
        self.mean = list(mean)
        self.std = list(std)

    def __repr__(self) -> str:
        return (
            f"ClipTransform(resolution={self.resolution}, train={self.train}, scale={self.scale}, "
            f"ratio={self.ratio}, hflip={self.hflip})"
        )

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
        clip = frames.permute(0, 3, 1, 2)  # [T, C, H, W] view; resizing keeps uint8 (fast path)
        size = [self.resolution, self.resolution]
        if self.train:
            top, left, height, width = self.crop_box(clip.shape[-2], clip.shape[-1], generator)
            clip = F.resized_crop(clip, top, left, height, width, size=size, antialias=True)
            if self.hflip and float(torch.rand((), generator=generator)) < 0.5:
                clip = F.horizontal_flip(clip)
        else:  # = resize the shorter side, centre crop; cropping first spares resizing discarded pixels
            height, width = clip.shape[-2:]
            side = min(height, width)
            clip = F.resized_crop(
                clip, (height - side) // 2, (width - side) // 2, side, side, size, antialias=True
            )
        return self._normalise(clip)

    def _normalise(self, clip: torch.Tensor) -> torch.Tensor:
        """uint8 ``[T, C, H, W]`` -> float ``[C, T, H, W]``, ``(x / 255 - mean) / std``.

        Reordering the uint8 pixels and then scaling in place takes half the time of
        ``to_dtype`` + ``normalize`` on the channels-last frames that resizing leaves.
        """
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1, 1)
        out = clip.permute(1, 0, 2, 3).contiguous().to(torch.float32)
        return out.mul_(1.0 / (255.0 * std)).sub_(mean / std)

    def crop_box(
        self, height: int, width: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of a random-resized-crop box, as torchvision samples it."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * _uniform(*self.scale, generator)
            aspect = math.exp(_uniform(*log_ratio, generator))
            w = round(math.sqrt(target_area * aspect))
            h = round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(height - h + 1, (1,), generator=generator))
                left = int(torch.randint(width - w + 1, (1,), generator=generator))
                return top, left, h, w
        # Fallback: the largest centred box whose aspect ratio is inside the range.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return float(torch.empty(()).uniform_(low, high, generator=generator))

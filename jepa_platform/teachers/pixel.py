"""SALT stage 1: targets are the clip's own pixels, predicted by a light VideoMAE-style decoder.

The encoder trained this way becomes the frozen teacher of stage 2. The decoder is the predictor
architecture (context tokens + one mask token with positions, a few blocks, norm, linear head) with a
head of tubelet x patch x patch x 3 values, so the training loop needs nothing new.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from jepa_platform.masks.base import Masks
from jepa_platform.models.predictor import Predictor
from jepa_platform.models.tokens import gather_tokens


def patchify(clips: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, N, tubelet*patch*patch, C], tokens in the encoder's (t, h, w) order."""
    b, c, t, h, w = clips.shape
    x = clips.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # b, t', h', w', tubelet, p, p, c
    return x.reshape(b, (t // tubelet) * (h // patch) * (w // patch), tubelet * patch * patch, c)


def pixel_targets(
    clips: torch.Tensor,
    tubelet: int,
    patch: int,
    norm_pix: bool = True,
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
) -> torch.Tensor:
    """Per-token pixel targets [B, N, tubelet*patch*patch*C].

    Pixels are un-normalised back to [0, 1]; with `norm_pix` each token is then normalised per
    channel by the mean and (unbiased) standard deviation of its own pixels, as VideoMAE does.
    """
    shape = (1, -1, 1, 1, 1)
    pixels = clips.float() * torch.tensor(std, device=clips.device).view(shape)
    pixels = pixels + torch.tensor(mean, device=clips.device).view(shape)
    tokens = patchify(pixels, tubelet, patch)
    if norm_pix:
        tokens = (tokens - tokens.mean(dim=2, keepdim=True)) / (tokens.var(dim=2, keepdim=True).sqrt() + 1e-6)
    return tokens.flatten(2)


class PixelTeacher(nn.Module):
    """Masked pixel reconstruction: predict the (normalised) pixels of every target token."""

    def __init__(
        self,
        tubelet_size: int,
        patch_size: int,
        norm_pix: bool = True,
        loss: Literal["mse", "l1"] = "mse",
        decoder_dim: int = 384,
        decoder_depth: int = 4,
        decoder_heads: int = 6,
    ):
        super().__init__()
        self.tubelet_size, self.patch_size, self.norm_pix = tubelet_size, patch_size, norm_pix
        self.loss_kind = loss
        self.decoder_dim, self.decoder_depth, self.decoder_heads = decoder_dim, decoder_depth, decoder_heads
        self.target_dim = tubelet_size * patch_size * patch_size * 3

    def make_predictor(self, encoder: nn.Module, num_mask_tokens: int) -> Predictor:
        """The pixel decoder, which the loop trains in the predictor's place."""
        return Predictor(
            encoder.embed_dim, encoder.grid, predictor_embed_dim=self.decoder_dim, depth=self.decoder_depth,
            num_heads=self.decoder_heads, target_dim=self.target_dim, num_mask_tokens=1,
        )

    @torch.no_grad()
    def targets(self, clips: torch.Tensor, masks: list[Masks]) -> list[torch.Tensor]:
        tokens = pixel_targets(clips, self.tubelet_size, self.patch_size, self.norm_pix)
        return [gather_tokens(tokens, m.targets) for m in masks]

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss_kind == "l1":
            return F.l1_loss(prediction, target)
        return F.mse_loss(prediction, target)

    def after_step(self, step: int) -> None:
        """Nothing to update: the targets are the data."""

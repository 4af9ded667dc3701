"""What the EMA and frozen teachers share: targets are an encoder's features of the full clip."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepa_platform.masks.base import Masks
from jepa_platform.models.tokens import gather_tokens


def layer_normed_targets(features: torch.Tensor, masks: list[Masks]) -> list[torch.Tensor]:
    """LayerNorm without affine over channels, then the target tokens of each mask."""
    features = F.layer_norm(features, (features.shape[-1],))
    return [gather_tokens(features, m.targets.to(features.device)) for m in masks]


class LatentTeacher(nn.Module):
    """A teacher whose `encoder` runs once per clip on the full, unmasked clip, without gradients; its
    LayerNorm'd features at each mask's targets are regressed with an L1 loss. Subclasses decide how
    (and whether) the encoder changes."""

    encoder: nn.Module

    def train(self, mode: bool = True):  # the teacher itself never trains (no dropout, no drop-path)
        return super().train(False)

    @torch.no_grad()
    def targets(self, clips: torch.Tensor, masks: list[Masks]) -> list[torch.Tensor]:
        return layer_normed_targets(self.encoder(clips), masks)

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(prediction, target)

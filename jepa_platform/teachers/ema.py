"""V-JEPA's teacher: an exponential moving average of the student encoder."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepa_platform.errors import ConfigError
from jepa_platform.masks.base import Masks
from jepa_platform.models.tokens import gather_tokens
from jepa_platform.train.schedules import Linear, stretched_length


def layer_normed_targets(features: torch.Tensor, masks: list[Masks]) -> list[torch.Tensor]:
    """LayerNorm without affine over channels, then the target tokens of each mask."""
    features = F.layer_norm(features, (features.shape[-1],))
    return [gather_tokens(features, m.targets.to(features.device)) for m in masks]


class EmaTeacher(nn.Module):
    """Targets from a momentum copy of the student, run once per clip on the full unmasked clip.

    Momentum rises linearly from `momentum[0]` to `momentum[1]` over the stretched schedule.
    """

    def __init__(
        self,
        student: nn.Module,
        steps: int,
        momentum: tuple[float, float] = (0.998, 1.0),
        schedule_scale: float = 1.25,
    ):
        super().__init__()
        if not all(0.0 <= m <= 1.0 for m in momentum):
            raise ConfigError(f"momentum: values must be in [0, 1], got {momentum}")
        self.encoder = copy.deepcopy(student).requires_grad_(False).eval()
        self.student = [student]  # a list, so the student is not registered (or saved) twice
        self.momentum = Linear(momentum[0], momentum[1], stretched_length(steps, schedule_scale))
        self.target_dim = student.embed_dim

    def train(self, mode: bool = True):  # the teacher itself never trains (no dropout, no drop-path)
        return super().train(False)

    @torch.no_grad()
    def targets(self, clips: torch.Tensor, masks: list[Masks]) -> list[torch.Tensor]:
        return layer_normed_targets(self.encoder(clips), masks)

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(prediction, target)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        m = self.momentum(step)
        teacher = list(self.encoder.parameters())
        student = [p.detach() for p in self.student[0].parameters()]
        torch._foreach_mul_(teacher, m)
        torch._foreach_add_(teacher, student, alpha=1.0 - m)

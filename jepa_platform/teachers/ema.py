"""V-JEPA's teacher: an exponential moving average of the student encoder."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from jepa_platform.errors import ConfigError
from jepa_platform.teachers.latent import LatentTeacher
from jepa_platform.train.schedules import Linear, stretched_length


class EmaTeacher(LatentTeacher):
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

    def metrics(self, step: int) -> dict[str, float]:
        """The momentum of the update at `step` (`ReportsMetrics`)."""
        return {"momentum": self.momentum(step)}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        m = self.momentum(step)
        teacher = list(self.encoder.parameters())
        student = [p.detach() for p in self.student[0].parameters()]
        torch._foreach_lerp_(teacher, student, 1.0 - m)  # m * teacher + (1 - m) * student, in one pass

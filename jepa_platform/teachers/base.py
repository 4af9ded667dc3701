"""The interface through which a teacher gives the loop its targets.

The loop knows nothing of where targets come from: an EMA of the student, a frozen encoder or the
clip's own pixels all answer `targets`, may update themselves in `after_step`, and say what must be
saved in `state_dict`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from jepa_platform.masks.base import Masks


@runtime_checkable
class TeacherStrategy(Protocol):
    target_dim: int
    """Width of each target token; the predictor projects to it."""

    def targets(self, clips: torch.Tensor, masks: list[Masks]) -> list[torch.Tensor]:
        """One [B, Nt, target_dim] tensor per mask, for the target indices of that mask; no gradients."""

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss between one mask's predictions and targets (mean over tokens and channels)."""

    def after_step(self, step: int) -> None:
        """Called after each optimiser step, with the number of steps done."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

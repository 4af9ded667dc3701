"""Optimisation settings: the single source of their defaults, shared by the library and the job spec."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OptimConfig(BaseModel):
    """How a run optimises: steps, batch, AdamW, schedules (stretched by `schedule_scale`), precision."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int = Field(300, ge=1, description="Optimiser steps of the run.")
    batch_size: int = Field(8, ge=1, description="Clips per worker per step.")
    lr: float = Field(6.25e-4, gt=0, description="Peak learning rate, reached at the end of warmup.")
    start_lr: float = Field(2e-4, ge=0, description="Learning rate at step 0.")
    final_lr: float = Field(1e-6, ge=0, description="Learning rate at the end of the stretched schedule.")
    warmup_steps: int = Field(40, ge=0)
    weight_decay: tuple[float, float] = Field((0.04, 0.4), description="Cosine schedule start, end.")
    schedule_scale: float = Field(
        1.25, ge=1.0, description="Schedules span scale*steps and are cut at `steps` (V-JEPA uses 1.25)."
    )
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    clip_grad: float | None = Field(10.0, gt=0, description="Max global grad norm; null disables clipping.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto = bf16 autocast on CUDA, fp32 on CPU."
    )
    seed: int = 0
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> OptimConfig:
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must not exceed steps ({self.steps})")
        if any(w < 0 for w in self.weight_decay):
            raise ValueError(f"weight_decay values must be >= 0, got {self.weight_decay}")
        return self

"""Components assembled from the registry in one place: encoder, teacher, student, maskers, trainer.

What a job trains (`train.job`) and what its FLOPs are counted on (`train.flops`) are built here, so
both see the same model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from jepa_platform.masks import MaskCollator
from jepa_platform.plugins.contracts import OwnsPredictor
from jepa_platform.plugins.manager import registry
from jepa_platform.spec import JobSpec
from jepa_platform.train.checkpoint import CheckpointStore, join
from jepa_platform.train.layout import CHECKPOINTS
from jepa_platform.train.loop import JepaStudent, Report, Trainer


def build_encoder(spec: JobSpec) -> nn.Module:
    return registry("backbones").get(spec.backbone.kind).build(
        spec.backbone.params, img_size=spec.data.resolution, num_frames=spec.data.frames
    )


def build_teacher(spec: JobSpec, encoder: nn.Module) -> Any:
    return registry("teachers").get(spec.teacher.kind).build(
        spec.teacher.params, student=encoder, steps=spec.optim.steps, schedule_scale=spec.optim.schedule_scale
    )


def build_student(spec: JobSpec, encoder: nn.Module, teacher: Any) -> JepaStudent:
    """Encoder + predictor; the predictor projects to the teacher's width (or is the teacher's own head)."""
    if isinstance(teacher, OwnsPredictor):  # a teacher with its own head (the pixel decoder)
        predictor = teacher.make_predictor(encoder, num_mask_tokens=len(spec.masks))
    else:
        predictor = registry("predictors").get(spec.predictor.kind).build(
            spec.predictor.params, embed_dim=encoder.embed_dim, grid=encoder.grid,
            target_dim=teacher.target_dim, num_mask_tokens=len(spec.masks),
        )
    return JepaStudent(encoder, predictor)


def build_maskers(spec: JobSpec) -> list[Any]:
    return [registry("maskers").get(m.kind).build(m.params) for m in spec.masks]


def build_trainer(
    spec: JobSpec,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    report: Report | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> Trainer:
    torch.manual_seed(spec.optim.seed)  # identical initial weights on every worker
    data = spec.data
    encoder = build_encoder(spec)
    teacher = build_teacher(spec, encoder)
    student = build_student(spec, encoder, teacher)
    dataset = registry("datasets").get(data.dataset).build(data.params, data=data, source=data.train, train=True)
    store = CheckpointStore(join(spec.job_dir, CHECKPOINTS), keep=spec.optim.keep_checkpoints)
    return Trainer(
        student, teacher, MaskCollator(build_maskers(spec), seed=spec.optim.seed), dataset, spec.optim,
        num_workers=data.loader_workers, store=store, device=device, rank=rank, world_size=world_size,
        wrap=wrap, report=report, on_step=on_step,
    )

"""Components assembled from the registry in one place: encoder, teacher, student, maskers, trainer.

What a job trains (`train.job`) and what its FLOPs are counted on (`train.flops`) are built here, so
both see the same model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from jepa_platform.events import Event
from jepa_platform.masks import MaskCollator
from jepa_platform.plugins.contracts import OwnsPredictor
from jepa_platform.plugins.manager import registry
from jepa_platform.spec import JobSpec
from jepa_platform.train.checkpoint import CheckpointStore
from jepa_platform.train.knn import KnnEvaluator
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


def build_components(
    spec: JobSpec, teacher_for: Callable[[JobSpec, nn.Module], Any] | None = None
) -> tuple[JepaStudent, Any, list[Any]]:
    """(student, teacher, maskers): the one assembly of a job's model, for training and for counting its
    FLOPs. `teacher_for` replaces `build_teacher` (a FLOP count's stand-in for a teacher not yet trained)."""
    encoder = build_encoder(spec)
    teacher = (teacher_for or build_teacher)(spec, encoder)
    return build_student(spec, encoder, teacher), teacher, build_maskers(spec)


def build_trainer(
    spec: JobSpec,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    report: Report | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> Trainer:
    torch.manual_seed(spec.optim.seed)  # identical initial weights on every worker
    data = spec.data
    student, teacher, maskers = build_components(spec)
    dataset = registry("datasets").get(data.dataset).build(data.params, data=data, source=data.train, train=True)
    store = CheckpointStore(spec.layout.checkpoints, keep=spec.optim.keep_checkpoints)
    evaluator = None
    if data.val and spec.monitor.eval_every and rank == 0:
        evaluator = KnnEvaluator(data.val, frames=data.frames, stride=data.stride, resolution=data.resolution,
                                 k=spec.monitor.knn_k, max_clips=spec.monitor.eval_clips, seed=data.seed)
    return Trainer(
        student, teacher, MaskCollator(maskers, seed=spec.optim.seed), dataset, spec.optim,
        num_workers=data.loader_workers, store=store, device=device, rank=rank, world_size=world_size,
        wrap=wrap, report=report, on_step=on_step, on_event=on_event, monitor=spec.monitor, job_dir=spec.job_dir,
        evaluator=evaluator,
    )


def spec_mask_picture(
    spec: JobSpec, out: str | Path, samples: int = 3, seed: int | None = None
) -> list[Any]:
    """`masks.picture.mask_picture` for a job spec: its maskers, token grid, batch size and (unless given) seed."""
    from jepa_platform.masks.picture import key_params, mask_picture  # matplotlib: only when drawing

    backbone = spec.backbone.params
    tubelet, patch = backbone.get("tubelet_size", 2), backbone.get("patch_size", 16)
    grid = (spec.data.frames // tubelet, spec.data.resolution // patch, spec.data.resolution // patch)
    components = [registry("maskers").get(comp.kind) for comp in spec.masks]
    params = [c.config.model_validate(comp.params) for c, comp in zip(components, spec.masks, strict=True)]
    dumped = [p.model_dump(mode="json") for p in params]
    maskers = []
    for i, (comp, component) in enumerate(zip(spec.masks, components, strict=True)):
        siblings = [d for d, other in zip(dumped, spec.masks, strict=True) if other.kind == comp.kind]
        key = key_params(dumped[i], component.config, siblings)
        maskers.append((f"masks[{i}] {comp.kind}" + (f" ({key})" if key else ""), component.build(params[i])))
    seed = spec.optim.seed if seed is None else seed
    return mask_picture(maskers, grid, out, samples=samples, batch_size=spec.optim.batch_size, seed=seed)

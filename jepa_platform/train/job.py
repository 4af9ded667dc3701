"""From a validated JobSpec to a running Trainer: the one place components are built from the registry.

Plain PyTorch: a test or a notebook calls `run_training(spec)` directly; the runners call the same
function on each Ray Train worker with its rank, device and a DDP wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from jepa_platform.masks import MaskCollator
from jepa_platform.plugins.manager import registry
from jepa_platform.spec import JobSpec
from jepa_platform.train.checkpoint import CheckpointStore, join, write_bytes_atomic
from jepa_platform.train.loop import JepaStudent, Report, Trainer
from jepa_platform.train.metrics import MetricsLog

SPEC_FILE = "spec.resolved.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"


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
    encoder = registry("backbones").get(spec.backbone.kind).build(
        spec.backbone.params, img_size=data.resolution, num_frames=data.frames
    )
    teacher = registry("teachers").get(spec.teacher.kind).build(
        spec.teacher.params, student=encoder, steps=spec.optim.steps, schedule_scale=spec.optim.schedule_scale
    )
    if hasattr(teacher, "make_predictor"):  # a teacher with its own head (the pixel decoder)
        predictor = teacher.make_predictor(encoder, num_mask_tokens=len(spec.masks))
    else:
        predictor = registry("predictors").get(spec.predictor.kind).build(
            spec.predictor.params, embed_dim=encoder.embed_dim, grid=encoder.grid,
            target_dim=teacher.target_dim, num_mask_tokens=len(spec.masks),
        )
    maskers = [registry("maskers").get(m.kind).build(m.params) for m in spec.masks]
    dataset = registry("datasets").get(data.dataset).build(data.params, data=data, source=data.train, train=True)
    store = CheckpointStore(join(spec.job_dir, CHECKPOINTS), keep=spec.optim.keep_checkpoints)
    return Trainer(
        JepaStudent(encoder, predictor), teacher, MaskCollator(maskers, seed=spec.optim.seed), dataset, spec.optim,
        num_workers=data.loader_workers, store=store, device=device, rank=rank, world_size=world_size,
        wrap=wrap, report=report, on_step=on_step,
    )


def run_training(spec: JobSpec, **kwargs: Any) -> dict[str, Any]:
    """Train (resuming from the job's last checkpoint if there is one); returns the last metrics row.

    The resolved spec and metrics.jsonl are written beside the checkpoints under `spec.job_dir`.
    """
    trainer = build_trainer(spec, **kwargs)
    resumed = trainer.resume()
    if trainer.rank == 0:
        write_bytes_atomic(join(spec.job_dir, SPEC_FILE), spec.to_yaml().encode())
        trainer.metrics = MetricsLog(join(spec.job_dir, METRICS_FILE), resume_step=resumed or 0,
                                     tensorboard_dir=join(spec.job_dir, TENSORBOARD))
    row = trainer.fit()
    return {"resumed_from": resumed, **row, "step": trainer.progress.step}

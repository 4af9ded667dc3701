"""From a validated JobSpec to a running Trainer: the one place components are built from the registry.

Plain PyTorch: a test or a notebook calls `run_training(spec)` directly; the runners call the same
function on each Ray Train worker with its rank, device and a DDP wrapper.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import fsspec
import torch
import torch.nn as nn

from jepa_platform.masks import MaskCollator
from jepa_platform.plugins.manager import registry
from jepa_platform.spec import JobSpec
from jepa_platform.train.checkpoint import CheckpointStore, join, write_bytes_atomic
from jepa_platform.train.flops import estimate_step_flops
from jepa_platform.train.layout import CHECKPOINTS, FLOPS_FILE, METRICS_FILE, SPEC_FILE, TENSORBOARD
from jepa_platform.train.loop import JepaStudent, Report, Trainer
from jepa_platform.train.metrics import MetricsLog
from jepa_platform.train.resume import pin_teacher


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
    if hasattr(teacher, "make_predictor"):  # a teacher with its own head (the pixel decoder)
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


def upstream_flops(spec: JobSpec) -> float:
    """Training FLOPs of the run whose checkpoints this job's teacher loads (SALT's stage 1), from the
    flops.json that run wrote beside them; 0 when there is none."""
    ckpt = spec.teacher.params.get("checkpoint")
    if not isinstance(ckpt, str) or not ckpt.rstrip("/").endswith(CHECKPOINTS):
        return 0.0
    url = join(ckpt.rstrip("/")[: -len(CHECKPOINTS)], FLOPS_FILE)
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        return 0.0
    return float(json.loads(fs.cat_file(path))["pipeline_flops"])


def record_flops(spec: JobSpec, trainer: Trainer) -> None:
    """Counts one global step's FLOPs at the run's shapes (on the meta device: no compute) and writes
    flops.json; the loop then logs cumulative `flops` and `pipeline_flops` (earlier stages included)."""
    step = estimate_step_flops(spec)
    trainer.flops_per_step = step.total()
    trainer.upstream_flops = upstream_flops(spec)
    if trainer.rank == 0:
        own = step.total() * spec.optim.steps
        info = {"per_step": step.as_dict(), "steps": spec.optim.steps, "global_batch":
                spec.optim.batch_size * spec.resources.workers, "run_flops": own,
                "upstream_flops": trainer.upstream_flops, "pipeline_flops": trainer.upstream_flops + own,
                "notes": list(step.notes)}
        write_bytes_atomic(join(spec.job_dir, FLOPS_FILE), json.dumps(info, indent=1).encode())


def run_training(spec: JobSpec, **kwargs: Any) -> dict[str, Any]:
    """Train (resuming from the job's last checkpoint if there is one); returns the last metrics row.

    The resolved spec, metrics.jsonl and flops.json are written beside the checkpoints under `spec.job_dir`.
    """
    trainer = build_trainer(spec, **kwargs)
    resumed = trainer.resume()
    record_flops(spec, trainer)
    if trainer.rank == 0:
        pin_teacher(spec, resumed=resumed is not None)  # a SALT student stays on the teacher it started with
        write_bytes_atomic(join(spec.job_dir, SPEC_FILE), spec.to_yaml().encode())
        trainer.metrics = MetricsLog(join(spec.job_dir, METRICS_FILE), resume_step=resumed or 0,
                                     tensorboard_dir=join(spec.job_dir, TENSORBOARD))
    row = trainer.fit()
    return {"resumed_from": resumed, **row, "step": trainer.progress.step}

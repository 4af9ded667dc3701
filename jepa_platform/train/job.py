"""A training job from a validated JobSpec: build (`train.build`), resume, train, write its outputs.

Plain PyTorch: a test or a notebook calls `run_training(spec)` directly; the runners call the same
function on each Ray Train worker with its rank, device and a DDP wrapper.
"""

from __future__ import annotations

import json
from typing import Any

import fsspec

from jepa_platform.events import Notice, Row
from jepa_platform.layout import CHECKPOINTS, FLOPS_FILE
from jepa_platform.plugins.manager import registry
from jepa_platform.spec import JobSpec
from jepa_platform.storage import join, write_bytes_atomic
from jepa_platform.train.build import build_trainer
from jepa_platform.train.flops import count_step_flops
from jepa_platform.train.init import initialise
from jepa_platform.train.loop import Trainer
from jepa_platform.train.metrics import MetricsLog
from jepa_platform.train.resume import pin_teacher


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
    """Counts one global step's FLOPs on the components the trainer built (rank 0, which logs them: the
    same count as `jepa flops`, `count_step_flops`), hands them to the loop, which logs cumulative `flops`
    and `pipeline_flops` (earlier stages included), and writes flops.json."""
    if trainer.rank != 0:
        return
    step = count_step_flops(spec, trainer.student, trainer.teacher, trainer.collator.maskers, trainer.device)
    trainer.flops_per_step = step.total()
    trainer.upstream_flops = upstream_flops(spec)
    own = step.total() * spec.optim.steps
    info = {"per_step": step.as_dict(), "steps": spec.optim.steps, "global_batch":
            spec.optim.batch_size * spec.resources.workers, "run_flops": own,
            "upstream_flops": trainer.upstream_flops, "pipeline_flops": trainer.upstream_flops + own,
            "notes": list(step.notes)}
    write_bytes_atomic(spec.layout.flops, json.dumps(info, indent=1).encode())


def run_training(spec: JobSpec, **kwargs: Any) -> dict[str, Any]:
    """Train (resuming from the job's last checkpoint if there is one); returns the last metrics row.

    The resolved spec, metrics.jsonl and flops.json are written beside the checkpoints under `spec.job_dir`.
    """
    spec.storage.configure()
    on_event = kwargs.get("on_event") if kwargs.get("rank", 0) == 0 else None

    def phase(name: str) -> None:  # named while it runs; the first step's row ends the start-up
        if on_event:
            on_event(Row({"phase": name}))

    phase("building the model" + (" and reading data.val" if spec.data.val else ""))
    trainer = build_trainer(spec, **kwargs)
    phase("reading the last checkpoint")
    resumed = trainer.resume()
    if resumed is None and spec.init is not None:
        phase(f"initialising from {spec.init.checkpoint}")
        for note in initialise(trainer, spec.init):
            if on_event:
                on_event(Notice(note))
    phase("counting FLOPs")
    record_flops(spec, trainer)
    phase("waiting for the first batch")
    if trainer.rank == 0:
        pin_teacher(spec, resumed=resumed is not None)  # a SALT student stays on the teacher it started with
        write_bytes_atomic(spec.layout.spec_file, spec.to_yaml().encode())
        tensorboard = registry("loggers").get("tensorboard").build(
            {}, url=spec.layout.tensorboard, resume_step=resumed or 0)
        trainer.metrics = MetricsLog(spec.layout.metrics, resume_step=resumed or 0,
                                     loggers=[tensorboard])
    row = trainer.fit()
    return {"resumed_from": resumed, **row, "step": trainer.progress.step}

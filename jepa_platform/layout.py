"""What a job writes in its folder (`JobSpec.job_dir`), named in one place for every reader and writer.

`JobLayout(job_dir)` gives each file's URL (any fsspec filesystem); the names alone are the constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from jepa_platform.storage import join

SPEC_FILE = "spec.resolved.yaml"  # the spec the run was last started with
METRICS_FILE = "metrics.jsonl"  # one row per logged step
CHECKPOINTS = "checkpoints"  # the CheckpointStore: step_N/state.pt and a `latest` pointer
FLOPS_FILE = "flops.json"  # FLOPs of one step and of the whole run
TENSORBOARD = "tensorboard"  # event files of the metrics
TEACHER_PIN = "teacher.pin.json"  # the teacher file a student run started with (file, step, sha256)
COLLAPSE_FILE = "collapse.json"  # the collapse alarm, once it fired (train.health)
RAY_TRAIN_DIR = "ray-train"  # Ray Train's own run folder; it registers no checkpoint


@dataclass(frozen=True)
class JobLayout:
    """The files of one job (or pipeline stage) folder."""

    root: str

    @property
    def spec_file(self) -> str:
        return join(self.root, SPEC_FILE)

    @property
    def metrics(self) -> str:
        return join(self.root, METRICS_FILE)

    @property
    def checkpoints(self) -> str:
        return join(self.root, CHECKPOINTS)

    @property
    def flops(self) -> str:
        return join(self.root, FLOPS_FILE)

    @property
    def tensorboard(self) -> str:
        return join(self.root, TENSORBOARD)

    @property
    def teacher_pin(self) -> str:
        return join(self.root, TEACHER_PIN)

    @property
    def collapse(self) -> str:
        return join(self.root, COLLAPSE_FILE)

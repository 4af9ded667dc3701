"""What a training stage needs before it is sent anywhere, checked on this machine in seconds: its local data
is there, its labelled set has labels, and each masker leaves context and targets on the token grid of its
clips. (The spec's own validation stays free of torch and of the filesystem; this is the step after it.)"""

from __future__ import annotations

from pathlib import Path

import torch

from jepa_platform.data.manifest import check_labelled
from jepa_platform.errors import ConfigError
from jepa_platform.plugins.manager import registry
from jepa_platform.spec import JobSpec
from jepa_platform.spec.model import SpecError

__all__ = ["preflight"]

MASK_DRAWS = 4  # batches of masks drawn per masker: a configuration that can leave no context fails in these


def preflight(job: JobSpec, source: str) -> None:
    """Refuses (SpecError, every problem with its path) a job whose stages would fail at their first batch."""
    stages = job.pipeline()
    problems = []
    for i, stage in enumerate(stages):
        where = f"stages[{i}]." if job.stages else ""
        problems += [where + p for p in stage_problems(stage)]
    if problems:
        raise SpecError.listing(source, problems)


def stage_problems(spec: JobSpec) -> list[str]:
    if not spec.trains:
        return []
    problems = []
    train = spec.data.train
    if spec.data.dataset == "video" and train and "://" not in train and not Path(train).exists():
        problems.append(f"data.train: no such file or folder: {train}")
    if spec.data.val:
        try:
            check_labelled(spec.data.val, "data.val")
        except ConfigError as e:
            problems.append(str(e))
    return problems + mask_problems(spec)


def mask_problems(spec: JobSpec) -> list[str]:
    """Each masker drawn a few times on the token grid of the spec's clips: a mask that leaves no context
    is found here, not at the first batch on a cluster."""
    p = spec.backbone.params
    if not {"patch_size", "tubelet_size"} <= p.keys():
        return []  # a backbone that does not state its patching: its grid is known once built
    side = spec.data.resolution // p["patch_size"]
    grid = (spec.data.frames // p["tubelet_size"], side, side)
    problems = []
    for i, m in enumerate(spec.masks):
        try:
            masker = registry("maskers").get(m.kind).build(m.params)
            for seed in range(MASK_DRAWS):
                masker(2, grid, torch.Generator().manual_seed(seed))
        except ConfigError as e:
            problems.append(f"masks[{i}].params: {e}")
    return problems

"""Running a job's stages in order, the same on every target: what `submit` runs here and what the
in-cluster drivers (Ray Jobs, a KubeRay RayJob) run there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fsspec

from jepa_platform.embed.shards import read_index
from jepa_platform.errors import ConfigError
from jepa_platform.spec import JobSpec
from jepa_platform.storage import join
from jepa_platform.train.checkpoint import CheckpointStore, step_of
from jepa_platform.train.resume import check_stages


@dataclass
class RunResult:
    name: str
    job_dir: str
    status: str  # SUCCEEDED | FAILED
    step: int
    metrics: dict[str, Any]
    checkpoint: str | None
    resumed_from: int | None = None
    error: str | None = None


def probe_settings(spec: JobSpec):
    """A probe stage's settings, writing into the stage's own folder unless told otherwise."""
    return spec.probe.model_copy(update={"output": spec.probe.output or spec.job_dir})


def probe_results(spec: JobSpec) -> dict[str, Any] | None:
    """results.json of a finished probe stage, or None."""
    import json

    fs, path = fsspec.core.url_to_fs(join(probe_settings(spec).output, "results.json"))
    return json.loads(fs.cat_file(path)) if fs.exists(path) else None


def latest_step(spec: JobSpec) -> tuple[int | None, str | None]:
    """(step, checkpoint URL) of the job's newest checkpoint, or (None, None); a probe stage counts its
    epochs, all of them once its results are written (probes are short: they rerun, not resume); an
    embedding stage counts its shards once complete (its `length` is 1: done or not)."""
    if spec.probe is not None:
        return (spec.probe.epochs, None) if probe_results(spec) else (None, None)
    if spec.embed is not None:  # finished, or not: an unfinished one keeps its shards and does the rest
        index = read_index(spec.embed.output)
        return (index["shards"], None) if index and index["complete"] else (None, None)
    store = CheckpointStore(spec.layout.checkpoints)
    url = store.latest()
    if url is None:
        return None, None
    return step_of(url), url


StageEvent = Callable[[JobSpec, str, "int | None"], None]


def select_stages(spec: JobSpec, stage: str | None) -> list[JobSpec]:
    stages = spec.pipeline()
    if stage is None:
        return stages
    chosen = [s for s in stages if s.name == stage]
    if not chosen or not spec.stages:
        names = ", ".join(s.name for s in stages) if spec.stages else "none: the spec has no stages"
        raise ConfigError(f"--stage: no stage {stage!r} in {spec.name} (stages: {names})")
    return chosen


def run_stages(
    spec: JobSpec,
    runner: Any,
    *,
    stage: str | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_stage: StageEvent | None = None,
) -> list[RunResult]:
    """Runs the job's stages in order: a completed stage is skipped, a started one resumes, a failure stops.

    Every stage is checked against the run already in its folder first (`check_resume`), so a spec that
    would resume into a different run is refused before any stage starts."""
    stages = select_stages(spec, stage)
    for check in check_stages(spec, stages):
        check.raise_if_refused()
    results = []
    for s in stages:
        step, ckpt = latest_step(s)
        if step is not None and step >= s.length:
            if on_stage:
                on_stage(s, "skipped", step)
            results.append(RunResult(s.name, s.job_dir, "SUCCEEDED", step, {}, ckpt, step))
            continue
        if on_stage:
            on_stage(s, "resuming" if step else "starting", step)
        result = runner.submit(s, on_row=on_row)
        results.append(result)
        if result.status != "SUCCEEDED":
            break
    return results

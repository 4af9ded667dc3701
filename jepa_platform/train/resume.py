"""Whether a resubmitted spec continues the run in its job folder, or would mix two different runs.

A job is resumed by name: the same folder, its newest checkpoint. That is only sound while the model,
its masks, its teacher and the clips it sees keep their shape. `check_resume` compares the spec with
the `spec.resolved.yaml` the run wrote and refuses, naming each changed field, before anything runs;
lengthening the run or changing its optimiser is allowed, and said (with what it does to the schedules).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import yaml

from jepa_platform.embed.listing import Unreadable
from jepa_platform.embed.shards import check_embed, done_shards, read_index
from jepa_platform.errors import ConfigError, TrainingError
from jepa_platform.layout import JobLayout
from jepa_platform.spec import JobSpec
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.storage import write_bytes_atomic
from jepa_platform.train.checkpoint import CheckpointStore, step_of
from jepa_platform.train.metrics import parse_lines
from jepa_platform.train.optim import Schedules
from jepa_platform.train.schedules import stretched_length
from jepa_platform.weights.load import weights_file

# What a checkpoint's tensors and a run's meaning depend on: a change here makes it another run.
IDENTITY = ("backbone", "predictor", "masks", "teacher", "data.dataset", "data.frames", "data.stride",
            "data.resolution")
# Where a job runs and how it reports: free to change between attempts.
OPERATIONAL = ("name", "storage", "target", "cluster", "kubernetes", "stages", "resources.cpus_per_worker",
               "resources.schedule_timeout_s",
               "resources.gpus_per_worker", "resources.accelerator_type", "resources.max_failures",
               "data.loader_workers", "optim.log_every", "optim.checkpoint_every",
               "optim.keep_checkpoints", "optim.precision", "teacher.params.follow_checkpoint", "monitor",
               "init")  # init: only a fresh run reads it; a resumed one continues from its own checkpoint
SCHEDULES = ("optim.steps", "optim.schedule_scale", "optim.warmup_steps", "optim.start_lr", "optim.lr",
             "optim.final_lr", "optim.weight_decay")


@dataclass
class ResumeCheck:
    """What resubmitting `spec` into its job folder does: start, resume from `step`, or be refused."""

    job_dir: str
    step: int | None  # newest checkpoint's step; None: nothing to resume, the run starts fresh
    refused: list[str] = field(default_factory=list)  # `path: old -> new` of each identity change
    notes: list[str] = field(default_factory=list)  # allowed changes, and what they do
    unread: str | None = None  # why the previous spec could not be read (a remote store out of reach)
    name: str = ""  # the job's name, for the suggested new one (a pipeline's, not its stage's)
    length: int | None = None  # steps, where the data decides them: an embedding's shards

    def raise_if_refused(self) -> None:
        if self.refused:
            name = self.name or self.job_dir.rstrip("/").rsplit("/", 1)[-1]
            raise ConfigError(
                f"{self.job_dir} holds a different run (checkpointed at step {self.step}); resuming it with "
                f"this spec would mix two runs. Changed:\n  " + "\n  ".join(self.refused)
                + f"\nSubmit under a new name (e.g. name={name}-2) to start afresh, or restore these fields "
                f"to continue the run."
            )


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b[0].c': leaf}; lists of scalars stay whole (a momentum pair is one value)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(node, list) and any(isinstance(v, dict | list) for v in node):
        out = {f"{prefix}.length": len(node)}
        for i, v in enumerate(node):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: node}


def under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith((f"{r}.", f"{r}[")) for r in roots)


def previous_spec(job_dir: str) -> dict[str, Any] | None:
    fs, path = fsspec.core.url_to_fs(JobLayout(job_dir).spec_file)
    if not fs.exists(path):
        return None
    loaded = yaml.safe_load(fs.cat_file(path))
    return loaded if isinstance(loaded, dict) else None


def check_stages(job: JobSpec, stages: list[JobSpec], *, tolerate_unreachable: bool = False) -> list[ResumeCheck]:
    """`check_resume` of each stage that is to run, and what running them in order does across stages: a
    stage that trains on moves the checkpoint that a later stage's student is pinned to, so that later
    stage is refused now rather than after the earlier one has trained."""
    where = {s.name: f"stages[{i}]." for i, s in enumerate(job.pipeline())} if job.stages else {}
    folders = [s.job_dir.rstrip("/") + "/" for s in job.pipeline()] if job.stages else []
    checks = [check_resume(s, tolerate_unreachable=tolerate_unreachable, where=where.get(s.name, ""),
                           earlier=folders[:folders.index(s.job_dir.rstrip("/") + "/")] if job.stages else ())
              for s in stages]
    for check in checks:
        check.name = job.name
    for i, (earlier, before) in enumerate(zip(stages, checks, strict=True)):
        if not earlier.trains or (before.step is not None and before.step >= earlier.length):
            continue  # complete: it will be skipped, and its checkpoint stays where it is
        folders = {earlier.job_dir.rstrip("/"), earlier.layout.checkpoints}
        for later, after in zip(stages[i + 1:], checks[i + 1:], strict=True):
            if later.embed is not None:
                after.refused += moved_embedding(earlier, before, later, folders, where.get(later.name, ""))
                continue
            source = later.teacher.params.get("checkpoint")
            if (isinstance(source, str) and source.rstrip("/") in folders and after.step is not None
                    and not later.teacher.params.get("follow_checkpoint") and not after.refused
                    and read_pin(later) is not None):
                after.refused.append(
                    f"{where.get(later.name, '')}teacher.params.checkpoint: stage {earlier.name} trains on from "
                    f"step {before.step or 0} to {earlier.length}, but stage {later.name} started with its "
                    f"step-{read_pin(later)['step']} checkpoint; resuming would change the targets mid-run: set "
                    f"{where.get(later.name, '')}teacher.params.follow_checkpoint=true to continue with the new "
                    f"teacher"
                )
    return checks


def moved_embedding(earlier: JobSpec, before: ResumeCheck, later: JobSpec, folders: set[str], where: str
                    ) -> list[str]:
    """An embedding stage that holds features of `earlier`'s weights, which are about to train on."""
    source = later.embed.checkpoint
    if not isinstance(source, str) or source.rstrip("/") not in folders:
        return []
    index = read_index(later.embed.output)
    if not index:
        return []
    return [f"{where}embed.checkpoint: stage {earlier.name} trains on from step {before.step or 0} to "
            f"{earlier.length}, but stage {later.name} holds embeddings of {index.get('weights')}; give "
            f"{where}embed.output another folder to embed the new weights, or keep stage {earlier.name}'s length"]


def check_embedding(check: ResumeCheck, spec: JobSpec, tolerate_unreachable: bool, earlier: Sequence[str] = ()
                    ) -> ResumeCheck:
    """An embedding stage keeps the shards an earlier run finished; it is refused (ConfigError) when its
    output holds anything else (other settings, other videos, other files)."""
    source = spec.embed.checkpoint or ""
    try:  # weights an earlier stage of the pipeline writes may not be there yet
        videos, _ = check_embed(spec.embed, pending_weights=any(source.startswith(folder) for folder in earlier))
        check.length = videos.num_shards(spec.embed.shard_size)
        check.step = len(done_shards(spec.embed.output)) or None
    except Unreadable as e:
        if not tolerate_unreachable:
            raise
        check.unread = str(e)
    return check


def check_resume(spec: JobSpec, *, tolerate_unreachable: bool = False, where: str = "",
                 earlier: Sequence[str] = ()) -> ResumeCheck:
    """Compares `spec` with the run already in its folder. A probe stage reruns rather than resumes, so
    it is never refused. With `tolerate_unreachable`, a store that cannot be read (a cluster's bucket
    seen from a laptop without credentials) gives an unchecked result rather than an error; the driver
    in the cluster checks again before it trains. `where` prefixes field paths (a pipeline's `stages[i].`);
    `earlier` are the folders (with a trailing `/`) of the pipeline's stages that run before this one."""
    check = ResumeCheck(spec.job_dir, None)
    if spec.probe is not None:
        return check
    if spec.embed is not None:
        return check_embedding(check, spec, tolerate_unreachable, earlier)
    try:
        latest = CheckpointStore(spec.layout.checkpoints).latest()
        before = previous_spec(spec.job_dir) if latest else None
    except Exception as e:  # noqa: BLE001 - any filesystem's failure to reach the store
        if not tolerate_unreachable:
            raise ConfigError(f"{spec.job_dir}: the job folder cannot be read ({type(e).__name__}: {e})") from None
        check.unread = f"{type(e).__name__}: {e}"
        return check
    if latest is None:
        return check
    check.step = step_of(latest)
    check.notes += torn_metrics_notes(spec.job_dir)
    try:
        moved = teacher_moved(spec, where=where)
    except Exception as e:  # noqa: BLE001 - the teacher's store out of reach: the worker checks again
        if not tolerate_unreachable:
            raise
        check.unread = f"{type(e).__name__}: {e}"
        moved = None
    if moved:
        check.refused.append(moved)
    if before is not None:
        compare_specs(before, spec, check, where)
    return check


def torn_metrics_notes(job_dir: str) -> list[str]:
    metrics = JobLayout(job_dir).metrics
    fs, path = fsspec.core.url_to_fs(metrics)
    torn = parse_lines(fs.cat_file(path).decode(errors="replace"))[1] if fs.exists(path) else []
    if not torn:
        return []
    return [f"{metrics}: {len(torn)} unreadable line(s), what a kill during an append leaves, are dropped"]


def compare_specs(before: dict[str, Any], spec: JobSpec, check: ResumeCheck, where: str) -> None:
    """Sorts each field that differs from the run's spec into `check`: refused, a note, or ignored."""
    old, new = flatten(before), flatten(spec.resolved())
    changed = sorted(p for p in old.keys() & new.keys() if old[p] != new[p] and not under(p, OPERATIONAL))
    schedule = []
    for path in changed:
        line = f"{where}{path}: {old.get(path)!r} -> {new.get(path)!r}"
        if under(path, IDENTITY):
            check.refused.append(line)
        elif under(path, SCHEDULES):
            schedule.append(line)
        else:
            check.notes.append(f"{line} (from step {check.step} on)")
    if schedule:
        momentum = "momentum" in spec.teacher.params
        try:
            then = OptimConfig(**before["optim"])
        except (TypeError, ValueError):  # written by a version with other optim fields
            then = spec.optim
        check.notes.append(f"{', '.join(schedule)}: " + schedule_note(then, spec.optim, check.step, momentum))


def schedule_note(old: OptimConfig, new: OptimConfig, step: int, momentum: bool = False) -> str:
    """What a changed length or schedule does from the resumed step on, with the lr and weight decay there."""
    if step >= new.steps:
        return f"the run has reached step {step} already; nothing is trained"
    then, now = Schedules(old), Schedules(new)
    span_old = stretched_length(old.steps, old.schedule_scale)
    span_new = stretched_length(new.steps, new.schedule_scale)
    return (
        f"the learning-rate{', weight-decay and EMA-momentum' if momentum else ' and weight-decay'} schedules are "
        f"recomputed over {span_new} steps (were {span_old}) and followed from step {step} on: there, lr "
        f"{then.lr(step):.3g} -> {now.lr(step):.3g} and weight decay {then.wd(step):.3g} -> {now.wd(step):.3g}"
    )


# -- a student pinned to its teacher's checkpoint ---------------------------------------------------------


def teacher_file(spec: JobSpec) -> tuple[str, int | None] | None:
    """(state file URL, step) that a checkpoint-loading teacher (`teacher.params.checkpoint`) reads now,
    resolved as its loader resolves it; None for a teacher without a checkpoint."""
    source = spec.teacher.params.get("checkpoint")
    if not isinstance(source, str):
        return None
    file = weights_file(source)
    return file, step_of(file)


def sha256(url: str) -> str:
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def read_pin(spec: JobSpec) -> dict[str, Any] | None:
    fs, path = fsspec.core.url_to_fs(spec.layout.teacher_pin)
    return json.loads(fs.cat_file(path)) if fs.exists(path) else None


def teacher_moved(spec: JobSpec, *, where: str = "") -> str | None:
    """Why resuming would change the teacher's weights under the student, or None. Compares the file the
    teacher reads now with the pinned one (cheap, for the client); `pin_teacher` compares content too."""
    pin = read_pin(spec)
    current = teacher_file(spec) if pin is not None and not spec.teacher.params.get("follow_checkpoint") else None
    if current is None or current[0] == pin["checkpoint"]:
        return None
    return moved_message(pin, *current, where=where, fix="set")


def moved_message(pin: dict[str, Any], url: str, step: int | None, *, where: str = "", fix: str) -> str:
    what = f"moved on to step {step} ({url})" if url != pin["checkpoint"] else "been rewritten (other content)"
    return (
        f"{where}teacher.params.checkpoint: this run started with the teacher at step {pin['step']} "
        f"({pin['checkpoint']}, sha256 {pin['sha256'][:12]}); that checkpoint has {what}. Resuming would change "
        f"the targets mid-run: {fix} {where}teacher.params.follow_checkpoint=true to continue with the new teacher"
    )


def pin_teacher(spec: JobSpec, resumed: bool) -> None:
    """Records (a fresh run) or checks (a resumed one) the teacher file the student learns from, by file,
    step and content; called by the job on rank 0 before it trains. Raises when the teacher moved and the
    user did not accept it (`follow_checkpoint`), which then re-pins."""
    current = teacher_file(spec)
    if current is None:
        return
    url, step = current
    pinned = {"checkpoint": url, "step": step, "sha256": sha256(url)}
    pin = read_pin(spec)
    if resumed and pin is not None and not spec.teacher.params.get("follow_checkpoint") and (
            (pin["checkpoint"], pin["sha256"]) != (url, pinned["sha256"])):
        raise TrainingError(moved_message(pin, url, step, fix="submit with"))
    if pin != pinned:
        write_bytes_atomic(spec.layout.teacher_pin, json.dumps(pinned, indent=1).encode())

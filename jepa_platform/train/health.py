"""Is the run learning? Representation-health metrics, measured on the step's own batch and masks, and the
collapse alarm that watches them.

A falling loss does not say the features are any good: a teacher whose targets collapse to one vector is
easy to predict. The checks here are the usual signs, each cheap enough to stay on by default:

- `rankme_*`: RankMe (Garrido et al., 2023), the effective rank exp(entropy of the normalised singular
  values) of a set of token features. It falls towards 1 as features collapse onto a few directions;
- `std_*`: the per-channel standard deviation over tokens, averaged over channels (0: every token the same);
- `cos_*`: the mean cosine similarity of distinct tokens (1: every token points the same way);
- `teacher_distance`: for an EMA teacher, the relative L2 distance between its weights and the student's
  (0: the teacher is the student, so nothing anchors the targets).

They are taken on `targets` (the teacher's), `context` (the student encoder's features of the context
tokens) and `predictions` (the predictor's, of the first mask), without gradients and without drawing
random numbers, so a run with checks resumes to the same weights as one without. A value that cannot be
computed (a NaN, a degenerate batch) is recorded as missing (None), never an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import fsspec
import torch
import torch.nn as nn

from jepa_platform.layout import JobLayout
from jepa_platform.plugins.contracts import Masks
from jepa_platform.spec.monitor import CollapseRules, MonitorConfig
from jepa_platform.storage import write_bytes_atomic
from jepa_platform.teachers.ema import EmaTeacher

Value = float | None


def spaced_tokens(x: torch.Tensor, count: int) -> torch.Tensor:
    """Up to `count` evenly spaced rows of x's tokens flattened to [N, D], in float32 (no random draws)."""
    flat = x.detach().reshape(-1, x.shape[-1]).float()
    if flat.shape[0] <= count:
        return flat
    index = torch.linspace(0, flat.shape[0] - 1, count, device=flat.device).round().long()
    return flat[index]


def finite(value: torch.Tensor | float) -> Value:
    value = float(value)
    return value if math.isfinite(value) else None


def effective_rank(x: torch.Tensor) -> Value:
    """RankMe of the rows of x [N, D]: exp of the entropy of its singular values, normalised to sum 1."""
    if x.shape[0] < 2 or not torch.isfinite(x).all():
        return None
    s = torch.linalg.svdvals(x.double())
    if s.sum() <= 0:
        return None
    p = s / s.sum() + 1e-12
    return finite(torch.exp(-(p * p.log()).sum()))


def channel_std(x: torch.Tensor) -> Value:
    return finite(x.std(dim=0).mean()) if x.shape[0] > 1 else None


def mean_cosine(x: torch.Tensor) -> Value:
    """Mean cosine similarity over the pairs of distinct rows of x [N, D]."""
    n = x.shape[0]
    if n < 2:
        return None
    unit = torch.nn.functional.normalize(x.double(), dim=-1)
    total = unit.sum(dim=0).square().sum() - unit.square().sum()
    return finite(total / (n * (n - 1)))


def weight_distance(teacher: nn.Module, student: nn.Module) -> Value:
    """||teacher - student|| / ||student|| over the parameters they share by name."""
    theirs = dict(teacher.named_parameters())
    diff = norm = 0.0
    for name, p in student.named_parameters():
        if name in theirs and theirs[name].shape == p.shape:
            diff += float((theirs[name].detach().double() - p.detach().double()).square().sum())
            norm += float(p.detach().double().square().sum())
    return finite(math.sqrt(diff / norm)) if norm > 0 else None


def describe(prefix: str, x: torch.Tensor, tokens: int) -> dict[str, Value]:
    sample = spaced_tokens(x, tokens)
    out = {f"rankme_{prefix}": effective_rank(sample), f"std_{prefix}": channel_std(sample)}
    if prefix != "predictions":
        out[f"cos_{prefix}"] = mean_cosine(sample)
    return out


def safely(compute: Callable[[], dict[str, Value]], keys: tuple[str, ...]) -> dict[str, Value]:
    try:
        return compute()
    except (RuntimeError, ValueError):  # e.g. an SVD that does not converge: recorded as missing
        return dict.fromkeys(keys)


@torch.no_grad()
def measure(student: nn.Module, teacher: Any, clips: torch.Tensor, masks: list[Masks], cfg: MonitorConfig
            ) -> dict[str, Value]:
    """The health metrics of `student` (a JepaStudent) and `teacher` on the first `cfg.clips` clips of the
    batch, with the first masker's masks; the student is run in eval mode and left as it was."""
    count = min(cfg.clips, clips.shape[0])
    clips = clips[:count]
    mask = dataclasses.replace(masks[0], **{f.name: getattr(masks[0], f.name)[:count]
                                            for f in dataclasses.fields(masks[0])})
    was_training = student.training
    student.eval()
    try:
        targets = teacher.targets(clips, [mask])[0]
        context = student.encoder(clips, keep=mask.context)
        grid = student.encoder.token_grid(clips.shape)
        predictions = student.predictor(context, mask.context, mask.targets, mask_index=0, grid=grid)
    finally:
        student.train(was_training)
    row: dict[str, Value] = {}
    for prefix, x in (("targets", targets), ("context", context), ("predictions", predictions)):
        keys = (f"rankme_{prefix}", f"std_{prefix}") + ((f"cos_{prefix}",) if prefix != "predictions" else ())
        row.update(safely(lambda p=prefix, t=x: describe(p, t, cfg.tokens), keys))
    if isinstance(teacher, EmaTeacher):
        row["teacher_distance"] = weight_distance(teacher.encoder, student.encoder)
    return row


@dataclasses.dataclass
class Alarm:
    """A collapse rule that fired: since which step it has held, and why."""

    since: int
    step: int
    rule: str
    reason: str

    def message(self) -> str:
        return f"collapse suspected since step {self.since}: {self.reason}"


class CollapseAlarm:
    """Applies `CollapseRules` to each health check; `check` returns an `Alarm` the first time a rule has
    held for `patience` checks in a row. Its state (first values, streaks, what fired) is checkpointed, so
    a resumed run keeps its baseline."""

    def __init__(self, rules: CollapseRules, warmup: int = 0):
        self.rules = rules
        self.first: dict[str, tuple[int, float]] = {}  # metric -> (step, value) at its first check
        self.streak: dict[str, tuple[int, int]] = {}  # rule -> (since step, checks in a row)
        self.fired: list[dict[str, Any]] = []
        self.warmup = warmup  # steps before the k-NN rule applies (the run's warmup)

    def holding(self, step: int, health: dict[str, Value]) -> dict[str, str]:
        """The rules that hold on this check, with their reasons."""
        held = {}
        for key in (f"rankme_{whose}" for whose in self.rules.rank_of):
            value = health.get(key)
            if value is None:
                continue
            self.first.setdefault(key, (step, value))
            start, base = self.first[key]
            if self.rules.rank_fraction and value < self.rules.rank_fraction * base:
                held[key] = (f"{key} {value:.3g} is below {self.rules.rank_fraction:g} x its value at step {start} "
                             f"({base:.3g})")
        std = health.get("std_targets")
        if self.rules.std_floor and std is not None and std < self.rules.std_floor:
            held["std_targets"] = f"std_targets {std:.3g} is below the floor {self.rules.std_floor:g}"
        knn, random = health.get("knn_top1"), health.get("knn_top1_random")
        if self.rules.below_random and knn is not None and random is not None and step > self.warmup \
                and knn <= random:
            held["knn_top1"] = (f"k-NN accuracy on data.val {knn:.3f} is no better than the randomly initialised "
                                f"encoder's {random:.3f}")
        return held

    def check(self, step: int, health: dict[str, Value]) -> Alarm | None:
        """Counts each rule this check could test (its figures are in `health`); a rule it could not test
        keeps its streak (a k-NN rule is tested at evaluations only)."""
        held = self.holding(step, health)
        for rule in ("rankme_targets", "rankme_context", "std_targets", "knn_top1"):
            if rule in held:
                since, count = self.streak.get(rule, (step, 0))
                self.streak[rule] = (since, count + 1)
            elif health.get(rule) is not None:  # tested and not holding: the streak ends
                self.streak.pop(rule, None)
        fired = {f["rule"] for f in self.fired}
        for rule, reason in held.items():
            since, count = self.streak[rule]
            if count >= self.rules.patience and rule not in fired:
                alarm = Alarm(since, step, rule, f"{reason}, for {count} checks in a row")
                self.fired.append(dataclasses.asdict(alarm))
                return alarm
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"first": {k: list(v) for k, v in self.first.items()},
                "streak": {k: list(v) for k, v in self.streak.items()}, "fired": list(self.fired)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first = {k: (int(s), float(v)) for k, (s, v) in state.get("first", {}).items()}
        self.streak = {k: (int(s), int(c)) for k, (s, c) in state.get("streak", {}).items()}
        self.fired = list(state.get("fired", []))


def write_alarm(job_dir: str, alarm: Alarm) -> None:
    """Records the alarm in the job folder (`collapse.json`), where `jepa status` reads it on any target."""
    write_bytes_atomic(JobLayout(job_dir).collapse, json.dumps(dataclasses.asdict(alarm), indent=1).encode())


def read_alarm(job_dir: str) -> dict[str, Any] | None:
    """The alarm a run in `job_dir` recorded, or None; also None when the folder cannot be read from here
    (no credentials for its bucket, say): the alarm is an addition to a status, never a reason for it to fail."""
    try:
        fs, path = fsspec.core.url_to_fs(JobLayout(job_dir).collapse)
        return json.loads(fs.cat_file(path)) if fs.exists(path) else None
    except Exception:  # noqa: BLE001 - any storage backend's error means "cannot tell"
        return None

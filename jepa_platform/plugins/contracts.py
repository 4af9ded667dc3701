"""What a component must be: one typed protocol per family, the whole API a plugin author implements.

A plugin registers factories (see `hookspecs`); each factory returns an object that follows its
family's protocol below. Members listed under a protocol are required; optional capabilities are
protocols of their own (`OwnsPredictor`, `ReportsMetrics`, `EpochAware`), and the platform uses them
only when an object declares them by having their members. `plugins.testing` checks a component
against exactly these protocols, on CPU, in seconds.

Tensors: clips are [B, C, T, H, W]; tokens are numbered row-major over the token grid (T', H', W')
(`t*H'*W' + h*W' + w`), the order a video ViT flattens its patch embeddings in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn
from torch import Tensor

# The job spec and a stage's result are the spec's and the runners' types; the plugin mechanism imports
# neither (they import it), so here they are named, not imported.
JobSpec = Any  # jepa_platform.spec.JobSpec
RunResult = Any  # jepa_platform.runners.stages.RunResult

Grid = tuple[int, int, int]  # tokens along time, height, width


@dataclass
class Masks:
    """One batch's masks from one masker.

    `context` [B, Nc] and `targets` [B, Nt] are token indices, each row sorted ascending, with Nc and
    Nt equal across the batch (see `masks.base.truncate_to_batch_min`). `masked` [B, N] is each
    sample's full masked set before truncation (True = masked), so the tokens truncation dropped are
    those in neither `context` nor `targets`.
    """

    context: Tensor
    targets: Tensor
    masked: Tensor

    def dropped(self) -> Tensor:
        """[B, N] bool: tokens that truncation removed from both the context and the targets."""
        kept = torch.zeros_like(self.masked)
        kept.scatter_(1, self.context, True)
        kept.scatter_(1, self.targets, True)
        return ~kept

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Masks:
        return Masks(
            context=self.context.to(device, non_blocking=non_blocking),
            targets=self.targets.to(device, non_blocking=non_blocking),
            masked=self.masked.to(device, non_blocking=non_blocking),
        )


# -- backbones: factory(params, img_size=, num_frames=) -> Backbone ----------------------------------------
@runtime_checkable
class Backbone(Protocol):
    """A video encoder (an nn.Module) that can drop tokens before its blocks, as V-JEPA's context encoder does."""

    embed_dim: int
    """Width of each output token."""
    num_heads: int
    """Attention heads of its blocks (probes default to it)."""
    grid: Grid
    """Token grid of the clip size it was built for."""
    patch_size: int
    """Pixels per token along height and width."""
    tubelet_size: int
    """Frames per token."""

    def token_grid(self, clip_shape: Sequence[int]) -> Grid:
        """Token grid of clips of this shape ([B, C, T, H, W])."""

    def __call__(self, clips: Tensor, keep: Tensor | list[Tensor] | None = None,
                 return_layers: Sequence[int] | None = None) -> Tensor | list[Tensor]:
        """[B, N, embed_dim]; with `keep` ([B, K] indices, or a list of them) only those tokens, which
        never see the dropped ones; with `return_layers`, those blocks' outputs."""


# -- predictors: factory(params, embed_dim=, grid=, target_dim=, num_mask_tokens=) -> Predictor -----------
@runtime_checkable
class Predictor(Protocol):
    """Predicts the target tokens' features from the context tokens' (an nn.Module)."""

    def __call__(self, context: Tensor, context_index: Tensor, target_index: Tensor, *, mask_index: int,
                 grid: Grid) -> Tensor:
        """[B, Nt, target_dim] from context features [B, Nc, embed_dim] and both index sets."""


# -- maskers: factory(params) -> Masker --------------------------------------------------------------------
@runtime_checkable
class Masker(Protocol):
    """Draws a batch of masks over a token grid; all randomness comes from `generator`."""

    def __call__(self, batch_size: int, grid: Grid, generator: torch.Generator) -> Masks:
        """Masks for `batch_size` clips; the same generator state gives the same masks."""


# -- teachers: factory(params, student=, steps=, schedule_scale=) -> Teacher -------------------------------
@runtime_checkable
class Teacher(Protocol):
    """Where targets come from: an EMA of the student, a frozen encoder, the clip's own pixels."""

    target_dim: int
    """Width of each target token; the predictor projects to it."""

    def targets(self, clips: Tensor, masks: list[Masks]) -> list[Tensor]:
        """One [B, Nt, target_dim] tensor per mask, for the target indices of that mask; no gradients."""

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Scalar loss between one mask's predictions and targets."""

    def after_step(self, step: int) -> None:
        """Called after each optimiser step with the number of steps done (an EMA update goes here)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this teacher."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` gave."""


@runtime_checkable
class OwnsPredictor(Protocol):
    """Teacher capability: it brings the head that predicts its targets (the pixel decoder), used instead
    of the spec's predictor."""

    def make_predictor(self, encoder: nn.Module, num_mask_tokens: int) -> nn.Module:
        """A Predictor for `encoder`'s tokens."""


@runtime_checkable
class ReportsMetrics(Protocol):
    """Teacher capability: values logged with each metrics row (e.g. the EMA momentum)."""

    def metrics(self, step: int) -> dict[str, float]:
        """Named values at `step`."""


# -- probes: factory(params, embed_dim=, num_classes=) -> Probe ---------------------------------------------
@runtime_checkable
class Probe(Protocol):
    """A classifier trained on a frozen encoder's tokens (an nn.Module)."""

    def __call__(self, features: Tensor) -> Tensor:
        """Logits [B, num_classes] from tokens [B, N, embed_dim]."""


# -- datasets: factory(params, data=DataSpec, source=str, train=bool) -> Dataset ------------------------------
@runtime_checkable
class Dataset(Protocol):
    """Clips for training or probing (a torch map-style Dataset)."""

    def __len__(self) -> int:
        """Number of samples."""

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        """{"clip": [C, T, H, W] tensor of `data.frames` frames at `data.resolution`, "label": int}."""


@runtime_checkable
class EpochAware(Protocol):
    """Dataset capability: told each epoch before it starts (e.g. to draw that epoch's clip offsets)."""

    def set_epoch(self, epoch: int) -> None:
        """Called with the epoch about to start."""


# -- runners: factory(params) -> Runner ----------------------------------------------------------------------
@runtime_checkable
class Runner(Protocol):
    """Where a job runs. `submit` runs one stage to its end (what the job driver calls, here or in a
    cluster); the rest work on the job store's record of a submitted job (`runners.jobstore.JobRecord`).
    `runners.host.HostJobs` gives all but `submit` to a runner whose stages run from this machine;
    `runners.cluster.ClusterJobs` gives all of them to one that sends each job to a cluster, given how to
    start, watch, read and stop a job there. Either way the job's log carries `jepa_platform.events`, and a
    failure ends `jepa submit` with the exit code of its kind (`jepa_platform.errors`)."""

    def submit(self, spec: JobSpec, on_row: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
        """Trains `spec` (resuming from its job folder), handing each metrics row to `on_row`."""

    def run_record(self, spec: JobSpec, record: Any, store: Any, *, wait: bool = True,
                   on_row: Callable[[dict[str, Any]], None] | None = None,
                   on_stage: Callable[..., None] | None = None,
                   on_line: Callable[[str], None] | None = None) -> Any:
        """Starts the recorded job (all its stages, or `record.stage`); with wait, follows it to its end."""

    def refresh(self, record: Any, store: Any, strict: bool = False) -> Any:
        """The record with the job's current status and step (with strict, unreachable is an error)."""

    def stop(self, record: Any, store: Any, delete: bool = False) -> Any:
        """Stops the job (its checkpoints stay); with delete, also removes what the target made for it."""

    def read_log(self, record: Any, store: Any, follow: bool = False) -> Iterator[str]:
        """The job's log lines; with follow, until it ends."""


@runtime_checkable
class Prepares(Protocol):
    """Runner capability: checks made before a job is recorded (a cluster's address, reachability, token)."""

    def prepare(self, spec: JobSpec) -> None:
        """Raises a JepaError naming what is wrong."""


@runtime_checkable
class ListsJobs(Protocol):
    """Runner capability: the jobs its target holds, whoever submitted them (`jepa list --target`)."""

    def list_jobs(self, namespace: str | None = None, context: str | None = None) -> list[dict[str, Any]]:
        """One mapping per job, with the same keys each (a table's columns)."""


@runtime_checkable
class Renders(Protocol):
    """Runner capability: what it would send, without sending it (`jepa render`, `submit --dry-run`)."""

    def render(self, spec: JobSpec, *, stage: str | None = None, server: bool = False) -> tuple[dict[str, Any], str]:
        """(the manifest, one line saying what it is); with server, the target's API admits it first,
        creating nothing."""


# -- run loggers: factory(params, url=, resume_step=) -> RunLogger ----------------------------------------------
@runtime_checkable
class RunLogger(Protocol):
    """Where metrics rows go besides metrics.jsonl (TensorBoard; experiment trackers)."""

    def log(self, row: dict[str, Any]) -> None:
        """One metrics row: `step` and named numbers."""

    def flush(self) -> None:
        """Makes what was logged durable (called with each checkpoint)."""


def members(protocol: type) -> list[str]:
    """The names a protocol requires, in the order it declares them."""
    names = list(getattr(protocol, "__annotations__", {}))
    names += [n for n, v in vars(protocol).items() if callable(v) and (not n.startswith("_") or n in DUNDERS)]
    return names


def missing(obj: Any, protocol: type) -> list[str]:
    """The members of `protocol` that `obj` lacks."""
    return [name for name in members(protocol) if not hasattr(obj, name)]


DUNDERS = ("__call__", "__len__", "__getitem__")

# The context each family's factory is called with, beside its params (hookspecs name the same).
FACTORY_CONTEXT: dict[str, str] = {
    "backbones": "img_size: int, num_frames: int",
    "predictors": "embed_dim: int, grid: Grid, target_dim: int, num_mask_tokens: int",
    "maskers": "",
    "teachers": "student: Backbone, steps: int, schedule_scale: float",
    "probes": "embed_dim: int, num_classes: int",
    "datasets": "data: DataSpec, source: str | None, train: bool",
    "runners": "",
    "loggers": "url: str, resume_step: int | None",
}
PROTOCOLS: dict[str, type] = {
    "backbones": Backbone, "predictors": Predictor, "maskers": Masker, "teachers": Teacher, "probes": Probe,
    "datasets": Dataset, "runners": Runner, "loggers": RunLogger,
}

__all__ = [
    "Backbone", "Dataset", "EpochAware", "Grid", "ListsJobs", "Masker", "Masks", "OwnsPredictor", "Predictor",
    "Prepares", "Probe", "Renders", "ReportsMetrics", "RunLogger", "Runner", "Teacher", "members", "missing",
]

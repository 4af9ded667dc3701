"""A frozen evaluation from `ProbeSettings` to a `ProbeReport`: the function `jepa probe`, the `probe`
stage and Ray Train workers (`probe_worker`) all call."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from jepa_platform.eval.data import LabelledSet, ProbeDataset, directional, read_labelled
from jepa_platform.eval.features import FrozenEncoder, build_encoder
from jepa_platform.eval.grid import build_grid
from jepa_platform.eval.probing import ProbeTrainer
from jepa_platform.eval.report import ProbeReport, class_groups, make_report, write_metrics, write_outputs
from jepa_platform.eval.settings import ProbeSettings, resolve_settings
from jepa_platform.plugins.manager import registry
from jepa_platform.spec.model import StorageSpec
from jepa_platform.weights.load import encoder_source

__all__ = ["build_encoder", "probe_worker", "run_probe"]


def label_names(settings: ProbeSettings, *sets: LabelledSet) -> list[str]:
    """A name per class: the settings' list, else names the sources carry, else the label number."""
    count = max(max(s.num_classes for s in sets), len(settings.label_names or []))
    given = dict(enumerate(settings.label_names or []))
    found = {k: v for s in sets for k, v in s.names.items()}
    return [given.get(i) or found.get(i) or str(i) for i in range(count)]


def run_probe(
    settings: ProbeSettings,
    encoder: nn.Module | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
) -> ProbeReport:
    """Train the grid of probes on the frozen encoder and validate them; rank 0 writes `settings.output`.

    `encoder` (already holding its weights) replaces building one from `settings.backbone` and
    `settings.checkpoint`. The encoder is verified unchanged at the end. Several workers: pass each one's
    `rank`, `world_size`, device and a DDP `wrap` for the probes (see `probe_worker`).
    """
    start = time.perf_counter()
    source = None if encoder is not None or settings.random_init else encoder_source(settings.checkpoint, settings.key)
    settings = resolve_settings(settings, need_backbone=encoder is None, source=source)  # the file is read once
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train, val = read_labelled(settings.train), read_labelled(settings.val)
    names = label_names(settings, train, val)
    groups = class_groups(names, settings.class_groups)
    frozen = FrozenEncoder(encoder if encoder is not None else build_encoder(settings, source), settings.layers)
    clip = {
        "frames": settings.frames, "stride": settings.stride, "resolution": settings.resolution,
        "num_segments": settings.num_segments, "seed": settings.seed, "video_timeout_s": settings.video_timeout_s,
        "image_frames": settings.image_frames or getattr(frozen.encoder, "tubelet_size", 2),
    }
    hflip = settings.hflip if settings.hflip is not None else not directional(names)
    train_set = ProbeDataset(train, train=True, augment=settings.augment, hflip=hflip, **clip)
    val_set = ProbeDataset(val, num_views=settings.num_views, **clip)
    probe = registry("probes").get(settings.probe.kind)
    grid = build_grid(
        lambda: probe.build(settings.probe.params, embed_dim=frozen.embed_dim, num_classes=len(names)),
        settings.grid(), settings.seed,
    )
    trainer = ProbeTrainer(
        frozen, grid, train_set, val_set, len(names), epochs=settings.epochs, batch_size=settings.batch_size,
        workers=settings.workers, seed=settings.seed, eval_every=settings.eval_every,
        cache_train=settings.cache_features and not settings.augment, cache_val=settings.cache_features,
        precision=settings.precision, device=device, rank=rank, world_size=world_size, wrap=wrap,
    )
    rows: list[dict[str, Any]] = []
    writes = rank == 0 and settings.output is not None

    def log(epoch_rows: list[dict[str, Any]]) -> None:
        rows.extend(epoch_rows)
        if writes:
            write_metrics(settings.output, rows)
        if on_epoch:
            on_epoch(epoch_rows)

    metrics = trainer.fit(log)
    losses = [r["train_loss"] for r in rows[-len(grid.probes):]]
    report = make_report(metrics, grid.hparams, losses, names, groups, time.perf_counter() - start, settings.output,
                         rows)
    if writes:
        write_outputs(report, settings.output, probe_state(settings, grid, report, frozen.embed_dim))
    return report


def probe_state(settings: ProbeSettings, grid, report: ProbeReport, embed_dim: int) -> dict[str, Any]:
    """The best probe's weights and what rebuilding and using it needs."""
    best = report.best_result
    state = {k: v.detach().cpu() for k, v in grid.probes[report.best].state_dict().items()}
    return {
        "state_dict": state, "kind": settings.probe.kind, "params": settings.probe.params,
        "embed_dim": embed_dim, "num_classes": len(report.label_names), "label_names": report.label_names,
        "lr": best.lr, "wd": best.wd, "top1": best.top1, "settings": settings.model_dump(mode="json"),
    }


# -- several workers ----------------------------------------------------------------------------------
def _ray_train_context():
    """The Ray Train context when this process is a Ray Train worker, else None (Ray is never imported here)."""
    if "ray.train" not in sys.modules:
        return None
    try:
        import ray.train

        ctx = ray.train.get_context()
        ctx.get_world_size()
        return ctx
    except Exception:  # not inside a training worker
        return None


def worker_context() -> tuple[int, int, torch.device]:
    """(rank, world size, device) under Ray Train, a torch.distributed process group, or alone."""
    ctx = _ray_train_context()
    if ctx is not None:
        import ray.train.torch

        return ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        if torch.cuda.is_available():
            return rank, world, torch.device("cuda", rank % torch.cuda.device_count())
        return rank, world, torch.device("cpu")
    return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")


def probe_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train `train_loop_per_worker`: `config = {"settings": ProbeSettings as a dict}`.

    Also runs under a plain torch.distributed process group (torchrun) or alone. The probes are wrapped
    in DDP when there are several workers; each worker reports the summary (identical on all of them)
    to Ray Train and returns the whole report as a dict.
    """
    from torch.nn.parallel import DistributedDataParallel

    settings = ProbeSettings.model_validate(config["settings"])
    StorageSpec.model_validate(config.get("storage") or {}).configure()  # how it reaches its object stores
    rank, world_size, device = worker_context()

    def wrap(model: nn.Module) -> nn.Module:
        if world_size == 1:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    report = run_probe(settings, rank=rank, world_size=world_size, device=device, wrap=wrap)
    if _ray_train_context() is not None:
        import ray.train

        best = report.best_result
        ray.train.report({"top1": best.top1, "top5": best.top5, "best_probe": best.name, **report.groups})
    return report.to_dict()

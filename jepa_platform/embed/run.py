"""An embedding job from `EmbedSettings` to an embeddings folder: what `jepa embed` and the `embed` stage run,
alone or on several workers (each takes every `world_size`-th shard).

A video that cannot be read is skipped, named with its reason in its shard's marker and counted in the
progress rows; the job goes on. A rerun with the same settings keeps the finished shards and does the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from jepa_platform.embed.listing import VideoList
from jepa_platform.embed.shards import (
    ShardWriter,
    check_embed,
    done_shards,
    read_index,
    read_marker,
    write_index,
)
from jepa_platform.errors import JepaError
from jepa_platform.eval.data import LabelledItem, LabelledSet, ProbeDataset
from jepa_platform.eval.features import FrozenEncoder, build_encoder
from jepa_platform.eval.settings import resolve_settings
from jepa_platform.spec.embed import EmbedSettings
from jepa_platform.train.loop import autocast_for
from jepa_platform.weights.load import encoder_source

__all__ = ["EmbedReport", "run_embed"]


@dataclass
class EmbedReport:
    output: str
    videos: int  # listed
    written: int  # embedded, this run and earlier ones
    skipped: list[dict[str, str]]  # {"path", "reason"} of each video that could not be read
    shards: int
    resumed_shards: int  # finished by an earlier run and kept
    dim: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Tolerant(Dataset):
    """The probe dataset's clips of the listed items; an item that cannot be read becomes its error."""

    def __init__(self, dataset: ProbeDataset, indices: list[int]):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.indices[i]
        try:
            return self.dataset[index]
        except JepaError as e:
            return {"index": index, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - a decoder's own failure is the video's, not the job's
            return {"index": index, "error": f"{type(e).__name__}: {e}"}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    good = [it for it in items if "error" not in it]
    return {
        "clip": torch.stack([it["clip"] for it in good]) if good else None,
        "index": [it["index"] for it in good],
        "failed": [(it["index"], it["error"]) for it in items if "error" in it],
    }


def run_embed(
    settings: EmbedSettings,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> EmbedReport:
    """Embeds every listed video into `settings.output` (required here), skipping finished shards.

    Rank 0 writes the index and calls `on_progress` after each round of shards with `{"step": shards done,
    "of": shards, "videos": videos done, "videos_of": videos listed, "skipped_videos" (this round's),
    "skipped_total", "clips_per_s"}` and, when the round skipped videos, `"skipped"`: each one's path and why.
    Several workers need a torch.distributed process group (Ray Train makes one).
    """
    start = time.perf_counter()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fingerprint = settings.fingerprint()  # as given: a rerun is recognised before the checkpoint is read
    videos, weights = check_embed(settings)
    shards = videos.num_shards(settings.shard_size)
    if rank == 0:
        index = read_index(settings.output)
        write_index(settings.output, fingerprint, videos, settings.shard_size, settings.format, weights,
                    **{k: index[k] for k in ("dim", "token_shape") if index and k in index})
    done = done_shards(settings.output)
    todo = [k for k in range(shards) if k not in done]  # dealt out evenly, whichever are left
    if world_size > 1:
        dist.barrier()  # every worker has read what is done before any writes more
    source = None if settings.random_init else encoder_source(settings.checkpoint, settings.key)
    settings = resolve_settings(settings, source=source)
    encoder = FrozenEncoder(build_encoder(settings, source), settings.layers).to(device)
    labels = videos.labels or [-1] * len(videos.paths)  # unlabelled: the dataset's items need a number
    labelled = LabelledSet(videos.source, [LabelledItem(p, y) for p, y in zip(videos.paths, labels, strict=True)])
    dataset = ProbeDataset(
        labelled, frames=settings.frames, stride=settings.stride, resolution=settings.resolution,
        num_segments=settings.num_segments, seed=settings.seed, video_timeout_s=settings.video_timeout_s,
        image_frames=settings.image_frames or getattr(encoder.encoder, "tubelet_size", 2),
    )
    counts = torch.zeros(2, dtype=torch.long)  # this worker's videos embedded and skipped in this run
    finished = dict(done)  # rank 0's view of the complete shards, grown by each round's markers
    began = time.perf_counter()  # the rate counts encoding, not building the model
    for first in range(0, len(todo), world_size):
        shard = todo[first + rank] if first + rank < len(todo) else None
        tick = time.perf_counter()
        if shard is not None:
            marker = embed_shard(settings, videos, shard, dataset, encoder, device)
            counts += torch.tensor([len(marker["paths"]), len(marker["skipped"])])
        totals = counts.clone()
        if world_size > 1:
            dist.all_reduce(totals)  # also: every shard of the round is written by now
        if rank == 0 and on_progress:
            round_done = {k: read_marker(settings.output, k) for k in todo[first:first + world_size]}
            finished.update(round_done)  # this round's markers only, not every marker again
            on_progress(progress_row(finished, round_done, shards, len(videos.paths),
                                     float(totals.sum()) / max(time.perf_counter() - began, 1e-9),
                                     time.perf_counter() - tick))
    if world_size > 1:
        dist.barrier()
    finished = done_shards(settings.output)
    markers = [finished[k] for k in sorted(finished)]
    skipped = [s for m in markers for s in m["skipped"]]
    written = sum(len(m["paths"]) for m in markers)
    token_shape = next((m["token_shape"] for m in markers if m["token_shape"]), None)
    if rank == 0:
        write_index(settings.output, fingerprint, videos, settings.shard_size, settings.format, weights,
                    complete=len(finished) == shards, dim=encoder.embed_dim, token_shape=token_shape,
                    written=written, skipped=len(skipped))
    encoder.verify_unchanged()
    return EmbedReport(settings.output, len(videos.paths), written, skipped, shards, len(done), encoder.embed_dim,
                       time.perf_counter() - start)


def progress_row(finished: dict[int, dict[str, Any]], round_done: dict[int, dict[str, Any]], shards: int,
                 listed: int, rate: float, round_s: float) -> dict[str, Any]:
    """The row said after a round of shards (see `run_embed`); the videos it skipped are named."""
    new = [s for k in sorted(round_done) for s in round_done[k]["skipped"]]
    row = {"step": len(finished), "of": shards,
           "videos": sum(len(m["paths"]) + len(m["skipped"]) for m in finished.values()), "videos_of": listed,
           "skipped_videos": len(new), "skipped_total": sum(len(m["skipped"]) for m in finished.values()),
           "clips_per_s": rate, "round_s": round_s}
    if new:
        row["skipped"] = "; ".join(f"{s['path']} ({s['reason']})" for s in new)
    return row


def embed_shard(settings: EmbedSettings, videos: VideoList, shard: int, dataset: ProbeDataset,
                encoder: FrozenEncoder, device: torch.device) -> dict[str, Any]:
    """Encodes one shard's videos and writes the shard; returns its marker."""
    indices = list(videos.shard(shard, settings.shard_size))
    loader = DataLoader(Tolerant(dataset, indices), batch_size=settings.batch_size, num_workers=settings.workers,
                        collate_fn=collate, persistent_workers=False)
    writer = ShardWriter(settings.output, shard, settings.format, settings.dtype, videos.labels is not None)
    try:
        for batch in loader:
            for index, reason in batch["failed"]:
                writer.skip(videos.paths[index], reason)
            if batch["clip"] is None:
                continue
            with autocast_for(device, settings.precision):
                tokens = encoder(batch["clip"].to(device, non_blocking=True))[:, 0].float()  # one view
            pooled = tokens.mean(dim=1)
            writer.add([videos.paths[i] for i in batch["index"]],
                       [videos.labels[i] for i in batch["index"]] if videos.labels else [],
                       pooled.cpu().numpy(), tokens.cpu().numpy() if settings.tokens else None)
        return writer.close()
    except BaseException:
        writer.abort()
        raise

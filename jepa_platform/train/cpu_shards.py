"""CPU sharding: a batch cut into shards that run side by side, one core each, as one training step.

On a few cores, intra-op threading of a ViT step scales poorly (every op forks and joins both cores; many
are small); a batch cut into one shard per core keeps each core busy between two joins per step. The
shards' gradients are summed in shard order, so a step is deterministic, and it equals the whole batch's
up to float rounding. `Trainer.shard_count` says when a step may run so.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import torch
import torch.nn as nn

from jepa_platform.masks.base import Masks

Shard = tuple[torch.Tensor, list[Masks]]


def split_batch(clips: torch.Tensor, masks: list[Masks], parts: int) -> list[Shard]:
    """Cuts clips [B, ...] and their masks (every field batch-first) into `parts` contiguous shards whose
    sizes differ by at most one."""
    bounds = [clips.shape[0] * i // parts for i in range(parts + 1)]
    return [(clips[lo:hi], [_batch_rows(m, lo, hi) for m in masks]) for lo, hi in itertools.pairwise(bounds)]


def _batch_rows(masks: Masks, lo: int, hi: int) -> Masks:
    return dataclasses.replace(masks, **{f.name: getattr(masks, f.name)[lo:hi] for f in dataclasses.fields(masks)})


class CpuShards:
    """The executor: runs per-shard work side by side on CPU threads, splitting torch's intra-op threads
    between them."""

    def __init__(self, count: int):
        self.count = count
        self.pool = ThreadPoolExecutor(count, thread_name_prefix="jepa-shard")

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        threads = torch.get_num_threads()
        per_shard = max(1, threads // len(items))

        def run(item):
            torch.set_num_threads(per_shard)
            return fn(item)

        futures = [self.pool.submit(run, item) for item in items]
        wait(futures)  # all of them, also when one fails, before the threads are given back
        torch.set_num_threads(threads)
        return [f.result() for f in futures]

    def losses(self, mask_losses: Callable[[Shard], list[torch.Tensor]], shards: list[Shard],
               params: list[nn.Parameter]) -> tuple[list[torch.Tensor], torch.Tensor, Callable[[], None]]:
        """Each shard's forward on its own core; returns the batch's per-mask losses, its loss and a
        backward that sets each parameter's `.grad` to the sum of the shards' gradients."""
        shard_losses = self.map(mask_losses, shards)
        # every clip has the same number of target tokens per mask, so clip-weighted means are batch means
        weights = [len(clips) / sum(len(c) for c, _ in shards) for clips, _ in shards]
        objectives = [w * torch.stack(losses).mean() for w, losses in zip(weights, shard_losses, strict=True)]
        with torch.no_grad():
            losses = [sum(w * ls[i] for w, ls in zip(weights, shard_losses, strict=True))
                      for i in range(len(shard_losses[0]))]
            loss = sum(objectives)

        def backward() -> None:
            grads = self.map(lambda o: torch.autograd.grad(o, params, allow_unused=True), objectives)
            for p, g in zip(params, sum_in_order(grads), strict=True):
                p.grad = g

        return losses, loss, backward


def sum_in_order(grads_per_shard: Sequence[Sequence[torch.Tensor | None]]) -> list[torch.Tensor | None]:
    """Per parameter, the sum of its shards' gradients in shard order (so a step is deterministic)."""
    total = list(grads_per_shard[0])
    for grads in grads_per_shard[1:]:
        both = [i for i, g in enumerate(grads) if g is not None and total[i] is not None]
        if both:
            torch._foreach_add_([total[i] for i in both], [grads[i] for i in both])
        total = [g if t is None else t for t, g in zip(total, grads, strict=True)]
    return total

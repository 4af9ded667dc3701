"""Training a grid of probes on a frozen encoder: one encoder forward per batch feeds every probe.

Runs in plain PyTorch; with `rank`/`world_size` and a `wrap` (DDP) it runs as one worker of several
(Ray Train or torchrun): training data is sharded like DistributedSampler, the probes' gradients are
averaged by the wrapper, and validation counts are summed over workers, so every worker ends with the
same metrics. Nothing here imports Ray.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from jepa_platform.data.sampler import ResumableSampler
from jepa_platform.errors import ConfigError, TrainingError
from jepa_platform.eval.features import FeatureCache, FrozenEncoder, TokenBatch, encode_batches
from jepa_platform.eval.grid import ProbeGrid, cosine_lr, probe_optimizer
from jepa_platform.plugins.contracts import EpochAware
from jepa_platform.train.loop import autocast_for

__all__ = ["ProbeTrainer", "SplitMetrics"]

TOP_K = 5


@dataclasses.dataclass
class SplitMetrics:
    """Counts of every probe of a grid over one data split; `reduce()` sums them over workers."""

    confusion: Tensor  # [P, C, C] int64: rows = true class, columns = predicted class
    top5_correct: Tensor  # [P] int64
    loss_sum: Tensor  # [P] float64, negative log of the (view-averaged) probability of the true class

    @classmethod
    def zeros(cls, probes: int, classes: int, device: torch.device) -> SplitMetrics:
        return cls(torch.zeros(probes, classes, classes, dtype=torch.long, device=device),
                   torch.zeros(probes, dtype=torch.long, device=device),
                   torch.zeros(probes, dtype=torch.float64, device=device))

    def add(self, probs: Tensor, labels: Tensor) -> None:
        """`probs` [P, B, C] (probabilities), `labels` [B]."""
        p, _, c = probs.shape
        pairs = labels.unsqueeze(0) * c + probs.argmax(-1)  # [P, B]
        offsets = torch.arange(p, device=probs.device).unsqueeze(1) * c * c
        self.confusion += torch.bincount((pairs + offsets).flatten(), minlength=p * c * c).view(p, c, c)
        top = probs.topk(min(TOP_K, c), dim=-1).indices
        self.top5_correct += (top == labels.view(1, -1, 1)).any(-1).sum(-1)
        true = probs.gather(-1, labels.view(1, -1, 1).expand(p, -1, 1)).squeeze(-1)
        self.loss_sum -= true.clamp_min(1e-12).log().double().sum(-1)

    def reduce(self) -> SplitMetrics:
        if dist.is_available() and dist.is_initialized():
            for t in (self.confusion, self.top5_correct, self.loss_sum):
                dist.all_reduce(t)
        return self

    @property
    def count(self) -> int:
        return int(self.confusion[0].sum())

    def top1(self) -> list[float]:
        return (self.confusion.diagonal(dim1=1, dim2=2).sum(-1).double() / max(self.count, 1)).tolist()

    def top5(self) -> list[float]:
        return (self.top5_correct.double() / max(self.count, 1)).tolist()

    def loss(self) -> list[float]:
        return (self.loss_sum / max(self.count, 1)).tolist()


class ProbeTrainer:
    """Trains every probe of `grid` on `encoder`'s tokens of `train_set`, validating on `val_set`.

    Datasets give `{"clip": [V, S, ...], "label", "index"}` (see `ProbeDataset`); training items have
    V = 1. AdamW per probe, cosine from each probe's lr to 0 over all steps, no warmup. Training batches
    drop the last incomplete batch. `cache_train` / `cache_val` encode a split once and reuse its
    tokens; only valid when its items are the same every epoch (no augmentation).
    """

    def __init__(
        self,
        encoder: FrozenEncoder,
        grid: ProbeGrid,
        train_set: Dataset,
        val_set: Dataset,
        num_classes: int,
        *,
        epochs: int,
        batch_size: int,
        workers: int = 0,
        seed: int = 0,
        eval_every: int = 1,
        cache_train: bool = False,
        cache_val: bool = False,
        precision: str = "auto",
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        wrap: Callable[[nn.Module], nn.Module] | None = None,
    ):
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device)
        self.grid = grid.to(self.device)
        self.model = wrap(self.grid) if wrap else self.grid
        self.train_set, self.val_set, self.num_classes = train_set, val_set, num_classes
        self.epochs, self.batch_size, self.workers, self.seed = epochs, batch_size, workers, seed
        self.eval_every, self.precision = eval_every, precision
        self.rank, self.world_size = rank, world_size
        self.sampler = ResumableSampler(len(train_set), seed=seed, rank=rank, world_size=world_size)
        self.steps_per_epoch = self.sampler.per_rank // batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"batch_size: {len(train_set)} training items give {self.sampler.per_rank} per worker on "
                f"{world_size} worker(s), less than one batch of {batch_size}"
            )
        self.optimizer = probe_optimizer(self.grid)
        self.train_cache = self._cache(train_set, self._train_shard()) if cache_train else None
        self.val_cache = self._cache(val_set, self._val_shard()) if cache_val else None

    # -- data ------------------------------------------------------------------------------------------
    def _autocast(self):
        return autocast_for(self.device, self.precision)

    def _loader(self, dataset: Dataset, sampler: Sequence[int] | ResumableSampler, drop_last: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.workers, pin_memory=self.device.type == "cuda")

    def _train_shard(self) -> list[int]:
        """This worker's training items for cached training: every world_size-th, padded to equal length."""
        n, per_rank = len(self.train_set), self.sampler.per_rank
        return [(self.rank + k * self.world_size) % n for k in range(per_rank)]

    def _val_shard(self) -> list[int]:
        return list(range(self.rank, len(self.val_set), self.world_size))

    def _cache(self, dataset: Dataset, shard: list[int]) -> FeatureCache:
        loader = self._loader(dataset, sorted(set(shard)), drop_last=False)
        return FeatureCache.fill(len(dataset), encode_batches(self.encoder, loader, self.device, self._autocast))

    def _encoded(self, loader: DataLoader) -> Iterator[TokenBatch]:
        return (batch for batch, _ in encode_batches(self.encoder, loader, self.device, self._autocast))

    def train_batches(self, epoch: int) -> Iterator[TokenBatch]:
        if self.train_cache is not None:
            shard = self._train_shard()
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)  # the order ResumableSampler draws
            order = [shard[i] for i in torch.randperm(len(shard), generator=g).tolist()]
            return self.train_cache.batches(order, self.batch_size, drop_last=True, device=self.device)
        self.sampler.set_epoch(epoch)
        if isinstance(self.train_set, EpochAware):
            self.train_set.set_epoch(epoch)
        return self._encoded(self._loader(self.train_set, self.sampler, drop_last=True))

    def val_batches(self) -> Iterator[TokenBatch]:
        if self.val_cache is not None:
            return self.val_cache.batches(self._val_shard(), self.batch_size, drop_last=False, device=self.device)
        return self._encoded(self._loader(self.val_set, self._val_shard(), drop_last=False))

    # -- training --------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> list[float]:
        """One pass over the training data; returns each probe's mean training loss (over all workers)."""
        self.model.train()
        total = self.epochs * self.steps_per_epoch
        losses = torch.zeros(len(self.grid.probes), dtype=torch.float64, device=self.device)
        steps = 0
        for step, (tokens, labels) in enumerate(self.train_batches(epoch)):
            cosine_lr(self.optimizer, epoch * self.steps_per_epoch + step, total)
            with self._autocast():
                logits = self.model(tokens[:, 0])
            per_probe = torch.stack([F.cross_entropy(z.float(), labels) for z in logits])
            if not torch.isfinite(per_probe).all():
                raise TrainingError(f"probe training diverged at epoch {epoch + 1}: losses {per_probe.tolist()}")
            self.optimizer.zero_grad(set_to_none=True)
            per_probe.sum().backward()
            self.optimizer.step()
            losses += per_probe.detach().double()
            steps += 1
        losses /= max(steps, 1)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(losses)
            losses /= self.world_size
        return losses.tolist()

    @torch.no_grad()
    def evaluate(self) -> SplitMetrics:
        """Every probe on the validation data, predictions averaged over views; summed over workers."""
        self.grid.eval()  # the unwrapped grid: workers may have different numbers of batches
        metrics = SplitMetrics.zeros(len(self.grid.probes), self.num_classes, self.device)
        for tokens, labels in self.val_batches():
            b, v = tokens.shape[:2]
            with self._autocast():
                logits = self.grid(tokens.flatten(0, 1))
            probs = logits.float().softmax(-1).view(len(self.grid.probes), b, v, -1).mean(2)
            metrics.add(probs, labels)
        return metrics.reduce()

    def fit(self, on_epoch: Callable[[list[dict[str, Any]]], None] | None = None) -> SplitMetrics:
        """Trains for all epochs; returns the last validation. `on_epoch(rows)` gets one row per probe."""
        metrics = None
        for epoch in range(self.epochs):
            start = time.perf_counter()
            losses = self.train_epoch(epoch)
            last = epoch == self.epochs - 1
            metrics = self.evaluate() if last or (epoch + 1) % self.eval_every == 0 else None
            seconds = time.perf_counter() - start
            if on_epoch:
                on_epoch(self.rows(epoch, losses, metrics, seconds))
        self.encoder.verify_unchanged()
        return metrics

    def rows(self, epoch: int, losses: list[float], metrics: SplitMetrics | None, seconds: float
             ) -> list[dict[str, Any]]:
        rows = []
        for i, (lr, wd) in enumerate(self.grid.hparams):
            row: dict[str, Any] = {"epoch": epoch + 1, "probe": i, "lr": lr, "wd": wd, "train_loss": losses[i],
                                   "epoch_s": seconds}
            if metrics is not None:
                row |= {"val_top1": metrics.top1()[i], "val_top5": metrics.top5()[i], "val_loss": metrics.loss()[i]}
            rows.append(row)
        return rows

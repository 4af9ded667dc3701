"""The frozen encoder's side of probing (and of embedding): the encoder built from its settings, tokens for a
batch of clips, and tokens stored for reuse."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from jepa_platform.errors import TrainingError
from jepa_platform.plugins.manager import registry
from jepa_platform.spec.probe import EncoderSettings
from jepa_platform.weights.checkpoints import fit_encoder
from jepa_platform.weights.load import EncoderSource, encoder_source

__all__ = ["FeatureCache", "FrozenEncoder", "TokenBatch", "build_encoder", "encode_batches", "fingerprint"]

TokenBatch = tuple[Tensor, Tensor]  # tokens [B, V, L, D] float32 and labels [B], on the device


def fingerprint(module: nn.Module) -> dict[str, Tensor]:
    """Per tensor (parameters and buffers): float64 sum and sum of squares, to tell later if any changed."""
    return {
        name: torch.stack([t.detach().double().sum(), t.detach().double().square().sum()]).cpu()
        for name, t in module.state_dict(keep_vars=True).items()
        if isinstance(t, Tensor) and (t.is_floating_point() or t.is_complex() or t.dtype in (torch.long, torch.int))
    }


def build_encoder(settings: EncoderSettings, source: EncoderSource | None = None) -> nn.Module:
    """The backbone of (resolved) `settings`, initialised from `settings.seed`, then given the checkpoint's
    encoder weights (`source`, when already read) unless the checkpoint is null / 'random'."""
    component = registry("backbones").get(settings.backbone.kind)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(settings.seed)
        encoder = component.build(settings.backbone.params, img_size=settings.resolution, num_frames=settings.frames)
    if not settings.random_init:
        source = source or encoder_source(settings.checkpoint, settings.key)
        fit_encoder(encoder, source.tensors, source.where)
    return encoder


class FrozenEncoder(nn.Module):
    """An encoder that is never trained: no gradients, always in eval mode (no dropout, drop-path or
    batch-statistics updates), called without autograd.

    `forward(clips)` takes [B, V, S, C, T, H, W] (views x segments per item) and returns tokens
    [B, V, S * N, D * len(layers)]: each segment's tokens concatenated in time order, each listed
    layer's tokens concatenated along channels. `verify_unchanged()` raises if any weight or buffer
    moved since it was wrapped.
    """

    def __init__(self, encoder: nn.Module, layers: Sequence[int] | None = None):
        super().__init__()
        self.encoder = encoder.requires_grad_(False).eval()
        self.layers = list(layers) if layers else None
        self.embed_dim = int(encoder.embed_dim) * (len(self.layers) if self.layers else 1)
        self._fingerprint = fingerprint(encoder)

    def train(self, mode: bool = True) -> FrozenEncoder:
        return super().train(False)

    @torch.no_grad()
    def forward(self, clips: Tensor) -> Tensor:
        b, v, s = clips.shape[:3]
        flat = clips.flatten(0, 2)
        if self.layers is None:
            tokens = self.encoder(flat)
        else:
            tokens = torch.cat(list(self.encoder(flat, return_layers=self.layers)), dim=-1)
        return tokens.float().reshape(b, v, s * tokens.shape[1], tokens.shape[2])

    def verify_unchanged(self) -> None:
        now = fingerprint(self.encoder)
        moved = [k for k, v in self._fingerprint.items() if k not in now or not torch.equal(now[k], v)]
        if moved or self.encoder.training:
            what = f"{len(moved)} tensors changed ({', '.join(moved[:5])})" if moved else "it was set to train mode"
            raise TrainingError(f"the frozen encoder did not stay frozen during probing: {what}")


def encode_batches(
    encoder: FrozenEncoder,
    loader: Iterable[dict[str, Tensor]],
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Iterator[tuple[TokenBatch, Tensor]]:
    """((tokens [B, V, L, D], labels [B]), item indices [B]) for each batch of clips the loader gives."""
    for batch in loader:
        clips = batch["clip"].to(device, non_blocking=True)
        with autocast():
            tokens = encoder(clips)
        yield (tokens.float(), batch["label"].to(device)), batch["index"]


class FeatureCache:
    """Tokens of a whole data split, kept on the CPU by item index, served in batches of any order."""

    def __init__(self, tokens: Tensor, labels: Tensor, present: Tensor):
        self.tokens, self.labels, self.present = tokens, labels, present

    @classmethod
    def fill(cls, size: int, batches: Iterable[tuple[TokenBatch, Tensor]]) -> FeatureCache:
        """Stores every batch of `encode_batches` (only the items it covers are `present`)."""
        tokens = labels = None
        present = torch.zeros(size, dtype=torch.bool)
        for (x, y), index in batches:
            if tokens is None:
                tokens = torch.empty(size, *x.shape[1:], dtype=x.dtype)
                labels = torch.zeros(size, dtype=torch.long)
            tokens[index], labels[index] = x.cpu(), y.cpu()
            present[index] = True
        if tokens is None:
            raise TrainingError("no data to cache: the split is empty on this worker")
        return cls(tokens, labels, present)

    def batches(self, order: Sequence[int], batch_size: int, drop_last: bool, device: torch.device
                ) -> Iterator[TokenBatch]:
        index = torch.as_tensor(list(order), dtype=torch.long)
        if not self.present[index].all():
            raise TrainingError("feature cache: asked for items that were not encoded")
        stop = len(index) - len(index) % batch_size if drop_last else len(index)
        for start in range(0, stop, batch_size):
            chunk = index[start : start + batch_size]
            yield self.tokens[chunk].to(device), self.labels[chunk].to(device)

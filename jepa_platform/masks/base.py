"""What every masker returns, the protocol it follows, and how a batch's masks are made to stack.

Token indices are flat over the grid (T', H', W') in row-major order, ``t*H'*W' + h*W' + w``,
the order in which a video ViT flattens its patch embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

Truncation = Literal["random", "prefix"]
TRUNCATIONS: tuple[str, ...] = ("random", "prefix")


@dataclass
class Masks:
    """One batch's masks from one masker.

    ``context`` [B, Nc] and ``targets`` [B, Nt] are token indices, each row sorted ascending,
    with Nc and Nt equal across the batch (see ``truncate_to_batch_min``). ``masked`` [B, N] is
    each sample's full masked set before truncation (True = masked), so the tokens truncation
    dropped are those in neither ``context`` nor ``targets``.
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


@runtime_checkable
class Masker(Protocol):
    """Draws a batch of masks over a token grid; all randomness comes from ``generator``."""

    def __call__(self, batch_size: int, grid: tuple[int, int, int], generator: torch.Generator) -> Masks: ...


def truncate_to_batch_min(selected: Tensor, truncate: Truncation, generator: torch.Generator) -> Tensor:
    """Indices [B, K] of each row's True entries, cut to the batch's smallest count K so rows stack.

    ``random`` keeps a uniformly random K-subset of each row, so no time step loses more than
    another. ``prefix`` keeps the first K, as the official V-JEPA code does; since indices run
    time-major, it takes tokens from the last frames only (kept for parity runs).
    Rows come back sorted ascending. No randomness is drawn when all counts already match.
    """
    rows, n = selected.shape
    counts = selected.sum(dim=1)
    keep = int(counts.min()) if rows else 0
    if rows == 0 or bool((counts == keep).all()):
        kept = selected
    elif truncate == "random":
        keys = torch.rand(rows, n, generator=generator).masked_fill_(~selected, 2.0)
        chosen = keys.topk(keep, dim=1, largest=False).indices
        kept = torch.zeros_like(selected).scatter_(1, chosen, True)
    elif truncate == "prefix":
        kept = selected & (selected.cumsum(dim=1) <= keep)
    else:
        raise ValueError(f"truncate: must be one of {TRUNCATIONS}, got {truncate!r}")
    # nonzero() walks row-major, so each row's indices come out sorted.
    return kept.nonzero()[:, 1].view(rows, keep)


def masks_from_masked(masked: Tensor, truncate: Truncation, generator: torch.Generator) -> Masks:
    """Context = unmasked tokens, targets = masked tokens, each truncated separately to stack."""
    return Masks(
        context=truncate_to_batch_min(~masked, truncate, generator),
        targets=truncate_to_batch_min(masked, truncate, generator),
        masked=masked,
    )

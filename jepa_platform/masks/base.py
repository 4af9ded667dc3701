"""How a batch's masks are made to stack; `Masks` and the `Masker` protocol live in `plugins.contracts`.

Token indices are flat over the grid (T', H', W') in row-major order, ``t*H'*W' + h*W' + w``,
the order in which a video ViT flattens its patch embeddings.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from jepa_platform.plugins.contracts import Masker, Masks

__all__ = ["TRUNCATIONS", "Masker", "Masks", "Truncation", "truncate_to_batch_min"]

Truncation = Literal["random", "prefix"]
TRUNCATIONS: tuple[str, ...] = ("random", "prefix")


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

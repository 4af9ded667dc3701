"""Selecting tokens by index: how context and target sets are cut out of a full token sequence."""

from __future__ import annotations

import torch


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, N, D] and index [B, K] -> [B, K, D]; either batch dimension may be 1 and is broadcast."""
    batch = max(x.shape[0], index.shape[0])
    x = x.expand(batch, -1, -1)
    index = index.expand(batch, -1)
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

"""3D rotary position embeddings (RoPE) as V-JEPA 2 (and 2.1, and SALT) apply them to queries and keys.

Each head's channels are split into a depth, a height and a width part of `rope_part_dim(head_dim)`
channels each (the rest, if any, is left as it is), and each part is rotated by angles taken from the
token's integer frame, row or column on the token grid. The positions come from the grid the clip
actually has, so other frame counts and resolutions than the configured ones work, and a masked subset
of tokens keeps its true positions (pass the kept tokens' indices).

The frequency layout is V-JEPA 2's, kept for its checkpoints: channels rotate in interleaved pairs
(2i, 2i+1), while the sines and cosines are laid out as the half-size frequency vector repeated twice
(not interleaved). Checked against the independent implementation in `transformers` (VJEPA2).
"""

from __future__ import annotations

import torch

THETA = 10000.0


def rope_part_dim(head_dim: int) -> int:
    """Channels of one axis' part: the largest even number not above a third of the head."""
    return 2 * ((head_dim // 3) // 2)


def rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`x` [..., N, D] (D even) rotated by `positions` [..., N] (broadcast against x's leading dims)."""
    dim = x.shape[-1]
    omega = 1.0 / THETA ** (torch.arange(dim // 2, dtype=x.dtype, device=x.device) / (dim / 2.0))
    angles = positions.to(x.dtype).unsqueeze(-1) * omega  # [..., N, D/2]
    sin, cos = torch.cat([angles.sin()] * 2, dim=-1), torch.cat([angles.cos()] * 2, dim=-1)  # not interleaved
    first, second = x.unflatten(-1, (-1, 2)).unbind(dim=-1)
    turned = torch.stack((-second, first), dim=-1).flatten(-2)
    return x * cos + turned * sin


def grid_positions(token_ids: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, ...]:
    """(frame, row, column) of each flat token index on a (T, H, W) grid, flattened row-major."""
    _, height, width = grid
    frame = torch.div(token_ids, height * width, rounding_mode="floor")
    rest = token_ids - frame * height * width
    row = torch.div(rest, width, rounding_mode="floor")
    return frame, row, rest - row * width


def rotate_3d(qk: torch.Tensor, positions: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Queries or keys [B, heads, N, head_dim] with each axis' part rotated by that axis' positions
    ([N] or [B, 1, N]: the same for every head)."""
    part = rope_part_dim(qk.shape[-1])
    pieces = [rotate(qk[..., i * part:(i + 1) * part], pos) for i, pos in enumerate(positions)]
    return torch.cat([*pieces, qk[..., 3 * part:]], dim=-1)

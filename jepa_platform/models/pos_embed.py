"""Fixed 3D sin-cos positional embeddings, and their resampling to another token grid."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[len(positions), dim] embedding: sin on the first half, cos on the second (MAE convention)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.double().reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def sincos_3d(dim: int, grid: tuple[int, int, int], uniform_power: bool = True) -> torch.Tensor:
    """[T*H*W, dim] embedding over a (T, H, W) token grid, flattened row-major as the patch embedding is.

    With `uniform_power` each axis gets the same share of the channels (V-JEPA's setting); otherwise
    time takes half and height/width a quarter each.
    """
    t, h, w = grid
    if uniform_power:
        d_t = d_h = d_w = int(math.ceil(dim / 6) * 2)
    else:
        d_t, d_h, d_w = dim // 2, dim // 4, dim // 4
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    emb = torch.cat([sincos_1d(d_t, tt), sincos_1d(d_h, hh), sincos_1d(d_w, ww)], dim=1)
    return emb[:, :dim].contiguous()


def resample_pos_embed(pos: torch.Tensor, src: tuple[int, int, int], dst: tuple[int, int, int]) -> torch.Tensor:
    """Trilinearly resample a [1, N, D] embedding from grid `src` to grid `dst`.

    Interpolating (rather than extending the sin-cos formula) keeps every position inside the range the
    model was trained on, which is what V-JEPA does for clips of another size.
    """
    if tuple(src) == tuple(dst):
        return pos
    d = pos.shape[-1]
    x = pos.reshape(1, *src, d).permute(0, 4, 1, 2, 3)
    x = F.interpolate(x.float(), size=tuple(dst), mode="trilinear", align_corners=False)
    return x.permute(0, 2, 3, 4, 1).reshape(1, -1, d).to(pos.dtype)

"""Video Vision Transformer: tubelet patch embedding, 3D positions (fixed sin-cos added to the tokens, as
V-JEPA; or rotary, as V-JEPA 2), timm blocks.

Parameter names match the official V-JEPA / V-JEPA 2 encoders (`patch_embed.proj`, `pos_embed`,
`blocks.{i}.attn.qkv`, ...) so their checkpoints load without renaming beyond the wrapper prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

from jepa_platform.errors import ConfigError
from jepa_platform.models.blocks import (
    Positions,
    build_blocks,
    init_transformer_weights,
    rescale_residual_branches,
    run_blocks,
)
from jepa_platform.models.pos_embed import resample_pos_embed, sincos_3d
from jepa_platform.models.rope import grid_positions
from jepa_platform.models.sizes import VIT_SIZES, VitSize
from jepa_platform.models.tokens import gather_tokens

PosEmbed = Literal["sincos", "rope"]
__all__ = ["VIT_SIZES", "PatchEmbed3D", "VideoViT", "VitSize", "video_vit"]


class PatchEmbed3D(nn.Module):
    """Cuts a clip into non-overlapping tubelet x patch x patch cubes and projects each to a token."""

    def __init__(self, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv3d(
            in_chans,
            embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VideoViT(nn.Module):
    """ViT over clips [B, C, T, H, W] (or images [B, C, H, W], taken as a still clip).

    `forward(clips, keep)` returns per-token features [B, N, D]; with `keep` ([B, K] token indices,
    the context) only those tokens enter the transformer. `keep` may be a list of index tensors (one
    per mask): the patch embedding is then computed once and the blocks run once per mask.
    """

    def __init__(
        self,
        img_size: int = 224,
        num_frames: int = 16,
        patch_size: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        uniform_power: bool = True,
        activation_checkpointing: bool = False,
        pos_embed: PosEmbed = "sincos",
        mlp: str = "gelu",
    ):
        super().__init__()
        if pos_embed not in ("sincos", "rope"):
            raise ConfigError(f"pos_embed: must be 'sincos' or 'rope', got {pos_embed!r}")
        if img_size % patch_size:
            raise ConfigError(f"resolution: must be divisible by patch_size ({patch_size}), got {img_size}")
        if num_frames % tubelet_size:
            raise ConfigError(f"frames: must be divisible by tubelet_size ({tubelet_size}), got {num_frames}")
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.activation_checkpointing = activation_checkpointing
        self.rope = pos_embed == "rope"
        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
        if not self.rope:
            self.register_buffer(
                "pos_embed", sincos_3d(embed_dim, self.grid, uniform_power).unsqueeze(0), persistent=True
            )
        self.blocks = build_blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path_rate, self.rope, mlp)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.apply(init_transformer_weights)
        rescale_residual_branches(self.blocks)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        """Token grid (T', H', W') for a clip of shape [..., C, T, H, W]."""
        t, h, w = clip_shape[-3:]
        if t % self.tubelet_size or h % self.patch_size or w % self.patch_size:
            raise ConfigError(
                f"clip of {t}x{h}x{w} (frames x height x width) does not divide into "
                f"{self.tubelet_size}x{self.patch_size}x{self.patch_size} tubelets"
            )
        return t // self.tubelet_size, h // self.patch_size, w // self.patch_size

    def embed(self, clips: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Patch tokens [B, N, D] (with sin-cos positions added unless the encoder is RoPE) and their grid."""
        if clips.ndim == 4:  # an image is a still clip of one tubelet
            clips = clips.unsqueeze(2).expand(-1, -1, self.tubelet_size, -1, -1)
        grid = self.token_grid(clips.shape)
        x = self.patch_embed(clips)
        if self.rope:
            return x, grid
        return x + resample_pos_embed(self.pos_embed, self.grid, grid).to(x.dtype), grid

    def positions(self, grid: tuple[int, int, int], keep: torch.Tensor | None, device) -> Positions | None:
        """RoPE positions of the tokens that enter the blocks (all, or `keep`'s); None for sin-cos."""
        if not self.rope:
            return None
        if keep is None:
            return grid_positions(torch.arange(grid[0] * grid[1] * grid[2], device=device), grid)
        return tuple(p.unsqueeze(1) for p in grid_positions(keep, grid))  # [B, 1, K]: one per head

    def encode(self, tokens: torch.Tensor, return_layers: Sequence[int] | None = None,
               positions: Positions | None = None):
        """Transformer + final norm over already-embedded tokens (at `positions`, for a RoPE encoder)."""
        layers = [i % self.depth for i in (return_layers or [])]
        x, kept = run_blocks(self.blocks, tokens, self.activation_checkpointing, set(layers), positions)
        if return_layers is None:
            return self.norm(x)
        return [self.norm(kept[i]) for i in layers]

    def forward(
        self,
        clips: torch.Tensor,
        keep: torch.Tensor | Sequence[torch.Tensor] | None = None,
        return_layers: Sequence[int] | None = None,
    ):
        """Features of the kept tokens; a list of layer outputs when `return_layers` names some (-1 = last)."""
        tokens, grid = self.embed(clips)
        if keep is None:
            return self.encode(tokens, return_layers, self.positions(grid, None, tokens.device))
        if isinstance(keep, torch.Tensor):
            return self.encode(gather_tokens(tokens, keep), return_layers, self.positions(grid, keep, tokens.device))
        return [self.encode(gather_tokens(tokens, k), return_layers, self.positions(grid, k, tokens.device))
                for k in keep]

    @torch.no_grad()
    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """Per-token features [B, N, D] of clips [B, C, T, H, W], N = (T/tubelet) * (H/patch) * (W/patch).

        Clips are float RGB, each channel scaled to [0, 1] and then normalised with the ImageNet mean
        (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), as in training and in V-JEPA / V-JEPA 2.
        T, H and W must divide by the tubelet and patch sizes; other sizes than the configured ones work
        (RoPE takes the clip's own grid, sin-cos positions are resampled). Tokens are in (frame, row,
        column) order; average them over N for one vector per clip.
        """
        return self(clips)


def video_vit(size: str = "base", **kwargs) -> VideoViT:
    """A `VideoViT` of a named size; `embed_dim`/`depth`/`num_heads` in kwargs override the size."""
    if size not in VIT_SIZES and size != "custom":
        raise ConfigError(f"size: must be one of {sorted(VIT_SIZES)} or 'custom', got {size!r}")
    dims = dict(VIT_SIZES[size].__dict__) if size in VIT_SIZES else {}
    dims.update({k: v for k, v in kwargs.items() if v is not None})
    missing = {"embed_dim", "depth", "num_heads"} - dims.keys()
    if missing:
        raise ConfigError(f"size 'custom' needs {sorted(missing)}")
    return VideoViT(**dims)

"""Video Vision Transformer: tubelet patch embedding, fixed 3D sin-cos positions, timm blocks.

Parameter names match the official V-JEPA encoder (`patch_embed.proj`, `pos_embed`, `blocks.{i}.attn.qkv`,
...) so its checkpoints load without renaming beyond the wrapper prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch.utils.checkpoint import checkpoint

from jepa_platform.errors import ConfigError
from jepa_platform.models.pos_embed import resample_pos_embed, sincos_3d
from jepa_platform.models.tokens import gather_tokens


@dataclass(frozen=True)
class VitSize:
    embed_dim: int
    depth: int
    num_heads: int


VIT_SIZES: dict[str, VitSize] = {
    "tiny": VitSize(192, 12, 3),
    "small": VitSize(384, 12, 6),
    "base": VitSize(768, 12, 12),
    "large": VitSize(1024, 24, 16),
    "huge": VitSize(1280, 32, 16),
    "giant": VitSize(1408, 40, 16),
}


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


def init_transformer_weights(module: nn.Module) -> None:
    """timm/V-JEPA init: truncated-normal linears (std 0.02), unit LayerNorms, zero biases."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv3d):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def rescale_residual_branches(blocks: Sequence[Block]) -> None:
    """Divide each block's output projections by sqrt(2 * depth index) so deep stacks start stable."""
    for layer_id, block in enumerate(blocks, start=1):
        block.attn.proj.weight.data.div_((2.0 * layer_id) ** 0.5)
        block.mlp.fc2.weight.data.div_((2.0 * layer_id) ** 0.5)


def build_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path_rate: float) -> nn.ModuleList:
    """Pre-norm timm blocks (SDPA attention, qkv bias, LayerNorm eps 1e-6) with a linear drop-path ramp."""
    if dim % num_heads:
        raise ConfigError(f"embed_dim: must be divisible by num_heads ({num_heads}), got {dim}")
    rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth else []
    return nn.ModuleList(
        Block(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            drop_path=rate,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
        )
        for rate in rates
    )


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, checkpointing: bool, keep_outputs: set[int]):
    """Runs the blocks in order; returns the final tokens and {layer index: tokens} for `keep_outputs`."""
    kept = {}
    for i, block in enumerate(blocks):
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
        if i in keep_outputs:
            kept[i] = x
    return x, kept


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
    ):
        super().__init__()
        if img_size % patch_size:
            raise ConfigError(f"resolution: must be divisible by patch_size ({patch_size}), got {img_size}")
        if num_frames % tubelet_size:
            raise ConfigError(f"frames: must be divisible by tubelet_size ({tubelet_size}), got {num_frames}")
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.activation_checkpointing = activation_checkpointing
        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
        self.register_buffer(
            "pos_embed", sincos_3d(embed_dim, self.grid, uniform_power).unsqueeze(0), persistent=True
        )
        self.blocks = build_blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path_rate)
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

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """Patch tokens with positions added: [B, N, D]."""
        if clips.ndim == 4:  # an image is a still clip of one tubelet
            clips = clips.unsqueeze(2).expand(-1, -1, self.tubelet_size, -1, -1)
        grid = self.token_grid(clips.shape)
        x = self.patch_embed(clips)
        return x + resample_pos_embed(self.pos_embed, self.grid, grid).to(x.dtype)

    def encode(self, tokens: torch.Tensor, return_layers: Sequence[int] | None = None):
        """Transformer + final norm over already-embedded tokens."""
        layers = [i % self.depth for i in (return_layers or [])]
        x, kept = run_blocks(self.blocks, tokens, self.activation_checkpointing, set(layers))
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
        tokens = self.embed(clips)
        if keep is None:
            return self.encode(tokens, return_layers)
        if isinstance(keep, torch.Tensor):
            return self.encode(gather_tokens(tokens, keep), return_layers)
        return [self.encode(gather_tokens(tokens, k), return_layers) for k in keep]


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

"""A video ViT with divided space-time attention (TimeSformer), usable as a JEPA context encoder.

Each block attends across time at each spatial position, then across space within each time
step, then applies its MLP. Attention is restricted by group masks built from each token's grid
position, so the same blocks work on the full grid and on any kept subset of it (a JEPA context
is an irregular set of tokens): a token only ever mixes with kept tokens that share its position
or its time step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from jepa_platform.models.blocks import init_transformer_weights
from jepa_platform.models.tokens import gather_tokens
from jepa_platform.models.vit import VideoViT
from timm.layers import DropPath, Mlp
from torch.utils.checkpoint import checkpoint


class GroupAttention(nn.Module):
    """Multi-head self-attention in which each token attends only to tokens of the same group."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """x [B, K, D], groups [B or 1, K] -> [B, K, D]."""
        b, k, d = x.shape
        q, key, v = self.qkv(x).view(b, k, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        same_group = (groups[:, :, None] == groups[:, None, :]).unsqueeze(1)  # [B, 1, K, K]
        out = F.scaled_dot_product_attention(q, key, v, attn_mask=same_group)
        return self.proj(out.transpose(1, 2).reshape(b, k, d))


class DividedSpaceTimeBlock(nn.Module):
    """Pre-norm block: temporal attention, spatial attention, MLP, each a residual branch."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm_time = nn.LayerNorm(dim, eps=1e-6)
        self.time_attn = GroupAttention(dim, num_heads)
        self.norm_space = nn.LayerNorm(dim, eps=1e-6)
        self.space_attn = GroupAttention(dim, num_heads)
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, time_id: torch.Tensor, space_id: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.time_attn(self.norm_time(x), groups=space_id))
        x = x + self.drop_path(self.space_attn(self.norm_space(x), groups=time_id))
        return x + self.drop_path(self.mlp(self.norm_mlp(x)))

    def residual_outputs(self) -> list[nn.Linear]:
        return [self.time_attn.proj, self.space_attn.proj, self.mlp.fc2]


class FactorizedVideoViT(VideoViT):
    """`VideoViT` (same patch embedding, positions, final norm and `forward` contract) with
    divided space-time blocks in place of joint-attention blocks."""

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
        super().__init__(
            img_size=img_size, num_frames=num_frames, patch_size=patch_size, tubelet_size=tubelet_size,
            in_chans=in_chans, embed_dim=embed_dim, depth=0, num_heads=num_heads,
            uniform_power=uniform_power, activation_checkpointing=activation_checkpointing,
        )
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(embed_dim, num_heads, mlp_ratio, r) for r in rates)
        self.blocks.apply(init_transformer_weights)
        for layer_id, block in enumerate(self.blocks, start=1):
            for linear in block.residual_outputs():
                linear.weight.data.div_((2.0 * layer_id) ** 0.5)

    def clip_grid(self, clips: torch.Tensor) -> tuple[int, int, int]:
        if clips.ndim == 4:  # an image: one tubelet
            return 1, clips.shape[-2] // self.patch_size, clips.shape[-1] // self.patch_size
        return self.token_grid(clips.shape)

    def encode_at(
        self,
        tokens: torch.Tensor,
        index: torch.Tensor,
        per_step: int,
        return_layers: Sequence[int] | None = None,
    ):
        """Blocks + final norm over tokens at flat grid positions `index` [B or 1, K]."""
        time_id, space_id = index // per_step, index % per_step
        layers = [i % self.depth for i in (return_layers or [])]
        kept = {}
        x = tokens
        for i, block in enumerate(self.blocks):
            if self.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, time_id, space_id, use_reentrant=False)
            else:
                x = block(x, time_id, space_id)
            if i in layers:
                kept[i] = x
        if return_layers is None:
            return self.norm(x)
        return [self.norm(kept[i]) for i in layers]

    def encode(self, tokens: torch.Tensor, return_layers: Sequence[int] | None = None):
        raise NotImplementedError("factorized attention needs token positions: call forward(clips, keep)")

    def forward(
        self,
        clips: torch.Tensor,
        keep: torch.Tensor | Sequence[torch.Tensor] | None = None,
        return_layers: Sequence[int] | None = None,
    ):
        """Features of the kept tokens; a list of layer outputs if `return_layers` names some (-1 = last)."""
        tokens, _ = self.embed(clips)
        duration, height, width = self.clip_grid(clips)
        per_step = height * width
        if keep is None:
            index = torch.arange(tokens.shape[1], device=tokens.device)[None]
            return self.encode_at(tokens, index, per_step, return_layers)
        if isinstance(keep, torch.Tensor):
            return self.encode_at(gather_tokens(tokens, keep), keep, per_step, return_layers)
        return [self.encode_at(gather_tokens(tokens, k), k, per_step, return_layers) for k in keep]

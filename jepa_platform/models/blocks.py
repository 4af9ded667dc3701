"""Transformer blocks shared by the encoder, the predictor and the attentive probe: timm's pre-norm block,
with V-JEPA 2's two options, rotary attention (RoPE) and a SwiGLU MLP.

Parameter names are timm's, which are also the official V-JEPA / V-JEPA 2 ones (`norm1`, `attn.qkv`,
`attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`, and `mlp.fc3` for SwiGLU), so official checkpoints load
without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention, Mlp, trunc_normal_
from timm.models.vision_transformer import Block as TimmBlock
from torch.utils.checkpoint import checkpoint

from jepa_platform.errors import ConfigError
from jepa_platform.models.rope import rotate_3d

Positions = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (frame, row, column) per token
MLPS = ("gelu", "swiglu")


class RopeAttention(Attention):
    """timm's attention with queries and keys rotated by each token's grid position (`models.rope`)."""

    def forward(self, x: torch.Tensor, positions: Positions) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = rotate_3d(self.q_norm(q), positions), rotate_3d(self.k_norm(k), positions)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        x = self.norm(x.transpose(1, 2).reshape(batch, tokens, self.attn_dim))
        return self.proj_drop(self.proj(x))


class SwiGLU(nn.Module):
    """V-JEPA 2's gated MLP: fc3(silu(fc1(x)) * fc2(x)).

    The hidden width is two thirds of `hidden_features` rounded up to a multiple of 8, so that a SwiGLU
    block costs what a GELU block of the same `mlp_ratio` does. Written out (rather than timm's SwiGLU)
    because V-JEPA 2's tensor names are fc1 (gate), fc2 (value) and fc3 (output).
    """

    def __init__(self, in_features: int, hidden_features: int, bias: bool = True, drop: float = 0.0, **_):
        super().__init__()
        hidden = (int(2 * hidden_features / 3) + 7) // 8 * 8
        self.fc1 = nn.Linear(in_features, hidden, bias=bias)
        self.fc2 = nn.Linear(in_features, hidden, bias=bias)
        self.fc3 = nn.Linear(hidden, in_features, bias=bias)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc3(F.silu(self.fc1(x)) * self.fc2(x)))


class Block(TimmBlock):
    """timm's pre-norm block; a RoPE block takes the tokens' grid positions, a plain one takes none."""

    def forward(self, x: torch.Tensor, positions: Positions | None = None) -> torch.Tensor:
        y = self.norm1(x)
        y = self.attn(y) if positions is None else self.attn(y, positions)
        x = x + self.drop_path1(self.ls1(y))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


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


def rescale_residual_branches(blocks: Sequence[nn.Module]) -> None:
    """Divide each block's attention output projection and its `mlp.fc2` by sqrt(2 * depth index) so deep
    stacks start stable. As in V-JEPA 2, a SwiGLU block's `fc2` is its value projection, not its output."""
    for layer_id, block in enumerate(blocks, start=1):
        block.attn.proj.weight.data.div_((2.0 * layer_id) ** 0.5)
        block.mlp.fc2.weight.data.div_((2.0 * layer_id) ** 0.5)


def build_blocks(
    dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float,
    drop_path_rate: float,
    rope: bool = False,
    mlp: str = "gelu",
    eps: float = 1e-6,
) -> nn.ModuleList:
    """Pre-norm blocks (SDPA attention, qkv bias, LayerNorm eps 1e-6 unless told) with a linear drop-path ramp."""
    if dim % num_heads:
        raise ConfigError(f"embed_dim: must be divisible by num_heads ({num_heads}), got {dim}")
    if mlp not in MLPS:
        raise ConfigError(f"mlp: must be one of {list(MLPS)}, got {mlp!r}")
    if rope and dim // num_heads < 6:
        raise ConfigError(f"pos_embed rope: needs heads of at least 6 channels, got {dim // num_heads}")
    rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist() if depth else []
    return nn.ModuleList(
        Block(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            drop_path=rate,
            norm_layer=partial(nn.LayerNorm, eps=eps),
            attn_layer=RopeAttention if rope else Attention,
            mlp_layer=SwiGLU if mlp == "swiglu" else Mlp,
        )
        for rate in rates
    )


def run_blocks(
    blocks: nn.ModuleList,
    x: torch.Tensor,
    checkpointing: bool,
    keep_outputs: set[int],
    positions: Positions | None = None,
):
    """Runs the blocks in order; returns the final tokens and {layer index: tokens} for `keep_outputs`."""
    kept = {}
    for i, block in enumerate(blocks):
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, positions, use_reentrant=False)
        else:
            x = block(x, positions)
        if i in keep_outputs:
            kept[i] = x
    return x, kept


def is_rope(blocks: nn.ModuleList) -> bool:
    return bool(len(blocks)) and isinstance(blocks[0].attn, RopeAttention)


"""Frozen-evaluation probes: token features [B, N, D] -> class logits [B, num_classes].

Both probes pool over the token set without positional information of their own, so their output does
not depend on the order of the tokens (only on what they hold): the encoder's position embeddings are
already in the features, and multi-clip inputs are plain concatenations of token sequences.

- `AttentiveProbe` (V-JEPA): learnable queries cross-attend to the LayerNorm'd tokens, then an MLP; optional
  self-attention blocks run over all tokens before pooling (V-JEPA 2) or over the queries after (V-JEPA);
  then a linear classifier. By default this is V-JEPA 2's probe layer for layer (its `AttentiveClassifier`),
  so accuracies compare with published ones; `out_proj` (a projection after the cross-attention) and
  `final_norm` (a LayerNorm before the classifier) are this platform's additions, off unless asked for.
- `LinearProbe` (MAE-style): mean over tokens, a normalisation without affine parameters, a linear layer.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_

from jepa_platform.errors import ConfigError
from jepa_platform.models.blocks import build_blocks, init_transformer_weights, rescale_residual_branches

__all__ = ["AttentiveProbe", "CrossAttention", "CrossAttentionBlock", "LinearProbe", "default_heads"]

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


def default_heads(dim: int) -> int:
    """12 heads, or where 12 does not divide the width the most heads up to 16 that do: 16 for ViT-L/H/g
    (1024/1280/1408 wide), the heads V-JEPA's probes use there."""
    return 12 if dim % 12 == 0 else max(h for h in range(1, 17) if dim % h == 0)


class CrossAttention(nn.Module):
    """Multi-head attention of queries [B, Q, D] over tokens [B, N, D]; returns [B, Q, D]."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_drop: float = 0.0,
                 out_proj: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"num_heads: must divide the probe's input width ({dim}), got {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim) if out_proj else nn.Identity()  # V-JEPA 2's has none
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, n, d = tokens.shape
        h = self.num_heads
        q = self.q(queries).reshape(b, -1, h, d // h).transpose(1, 2)
        k, v = self.kv(tokens).reshape(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, d)
        return self.proj_drop(self.proj(out))


class CrossAttentionBlock(nn.Module):
    """q + attn(q, LN(x)), then q + MLP(LN(q)): V-JEPA's pooling block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop: float = 0.0, out_proj: bool = True,
                 eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.xattn = CrossAttention(dim, num_heads, proj_drop=drop, out_proj=out_proj)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), drop=drop)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        queries = queries + self.xattn(queries, self.norm1(tokens))
        return queries + self.mlp(self.norm2(queries))


class AttentiveProbe(nn.Module):
    """Attentive pooling + linear classifier over frozen tokens.

    `num_heads` must divide `embed_dim`; by default 12, or 16 where 12 does not divide it (see `default_heads`).

    `depth` extra self-attention blocks run `placement="before"` the pooling over all tokens (V-JEPA 2;
    its "4 probe blocks" are depth 3 here) or `"after"` it over the queries (V-JEPA). With several
    queries, each is normalised and their concatenation is classified.
    """

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        num_queries: int = 1,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        depth: int = 0,
        placement: Literal["before", "after"] = "before",
        drop: float = 0.0,
        out_proj: bool = False,
        final_norm: bool = False,
    ):
        super().__init__()
        num_heads = num_heads or default_heads(embed_dim)
        if placement not in ("before", "after"):
            raise ConfigError(f"placement: must be 'before' or 'after', got {placement!r}")
        if embed_dim % num_heads:
            raise ConfigError(f"num_heads: must divide the probe's input width ({embed_dim}), got {num_heads}")
        self.placement = placement
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        eps = 1e-6 if out_proj or final_norm else 1e-5  # V-JEPA 2's probe: torch's default LayerNorm
        self.blocks = build_blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path_rate=0.0, eps=eps)
        for block in self.blocks:  # build_blocks has no dropout argument; the probe's `drop` applies to all
            block.attn.proj_drop.p = block.mlp.drop1.p = block.mlp.drop2.p = drop
        self.pool = CrossAttentionBlock(embed_dim, num_heads, mlp_ratio, drop, out_proj=out_proj, eps=eps)
        self.norm = LayerNorm(embed_dim) if final_norm else nn.Identity()
        self.head = nn.Linear(num_queries * embed_dim, num_classes)
        self.apply(init_transformer_weights)
        trunc_normal_(self.query_tokens, std=0.02)
        rescale_residual_branches(self.blocks)
        self.pool.mlp.fc2.weight.data.div_((2.0 * max(len(self.blocks), 1)) ** 0.5)  # as V-JEPA 2's pooler

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.placement == "before":
            for block in self.blocks:
                tokens = block(tokens)
        queries = self.pool(self.query_tokens.expand(tokens.shape[0], -1, -1), tokens)
        if self.placement == "after":
            for block in self.blocks:
                queries = block(queries)
        return self.head(self.norm(queries).flatten(1))


NORMS = ("batchnorm", "layernorm", "none")


class LinearProbe(nn.Module):
    """Mean over tokens -> BatchNorm or LayerNorm without affine parameters (or none) -> linear.

    Intermediate layers are probed by handing it their tokens concatenated along the channels, which
    pools each layer separately and concatenates the results.
    """

    def __init__(self, embed_dim: int, num_classes: int, norm: Literal["batchnorm", "layernorm", "none"] = "batchnorm"):
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"norm: must be one of {list(NORMS)}, got {norm!r}")
        if norm == "batchnorm":
            self.norm: nn.Module = nn.BatchNorm1d(embed_dim, affine=False, eps=1e-6)
        elif norm == "layernorm":
            self.norm = nn.LayerNorm(embed_dim, eps=1e-6, elementwise_affine=False)
        else:
            self.norm = nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes)
        trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(tokens.mean(dim=1)))

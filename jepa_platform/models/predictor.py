"""The narrow ViT that predicts target-token features from context-token features."""

from __future__ import annotations

import torch
import torch.nn as nn

from jepa_platform.errors import ConfigError
from jepa_platform.models.blocks import (
    build_blocks,
    init_transformer_weights,
    rescale_residual_branches,
    run_blocks,
)
from jepa_platform.models.pos_embed import resample_pos_embed, sincos_3d
from jepa_platform.models.rope import grid_positions
from jepa_platform.models.tokens import gather_tokens


class Predictor(nn.Module):
    """Context features -> predicted features at the target positions.

    Context tokens are projected to the predictor width and get their positions; each target position
    gets the mask token of its mask type (zero-initialised) plus its position. Both run through the
    blocks together and the target outputs are projected to `target_dim`, the *teacher's* width, which
    may differ from the student's (SALT pairs a small teacher with a larger student).

    Positions are sin-cos embeddings added to the tokens, or (`pos_embed="rope"`, V-JEPA 2) rotary ones
    applied in every attention from each token's true place on the grid. V-JEPA 2's predictor sorts its
    tokens by position first; attention without a mask does not depend on token order, so this one
    does not.
    """

    def __init__(
        self,
        embed_dim: int,
        grid: tuple[int, int, int],
        predictor_embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 12,
        target_dim: int | None = None,
        num_mask_tokens: int = 2,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        uniform_power: bool = True,
        activation_checkpointing: bool = False,
        pos_embed: str = "sincos",
        mlp: str = "gelu",
    ):
        super().__init__()
        if pos_embed not in ("sincos", "rope"):
            raise ConfigError(f"pos_embed: must be 'sincos' or 'rope', got {pos_embed!r}")
        if num_mask_tokens < 1:
            raise ConfigError(f"num_mask_tokens: must be >= 1, got {num_mask_tokens}")
        self.grid = tuple(grid)
        self.target_dim = target_dim or embed_dim
        self.activation_checkpointing = activation_checkpointing
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, predictor_embed_dim)) for _ in range(num_mask_tokens)
        )
        self.rope = pos_embed == "rope"
        if not self.rope:
            self.register_buffer(
                "pos_embed", sincos_3d(predictor_embed_dim, self.grid, uniform_power).unsqueeze(0), persistent=True
            )
        self.blocks = build_blocks(predictor_embed_dim, depth, num_heads, mlp_ratio, drop_path_rate, self.rope, mlp)
        self.norm = nn.LayerNorm(predictor_embed_dim, eps=1e-6)
        self.predictor_proj = nn.Linear(predictor_embed_dim, self.target_dim)
        self.apply(init_transformer_weights)
        rescale_residual_branches(self.blocks)

    def forward(
        self,
        context: torch.Tensor,
        context_index: torch.Tensor,
        target_index: torch.Tensor,
        mask_index: int = 0,
        grid: tuple[int, int, int] | None = None,
    ) -> torch.Tensor:
        """context [B, Nc, D] at `context_index` [B, Nc] -> predictions [B, Nt, target_dim]."""
        grid = tuple(grid or self.grid)
        x = self.predictor_embed(context)
        queries = self.mask_tokens[mask_index % len(self.mask_tokens)].to(x.dtype)
        positions = None
        if self.rope:
            batch = x.shape[0]
            ids = torch.cat([context_index.expand(batch, -1), target_index.expand(batch, -1)], dim=1)
            positions = tuple(p.unsqueeze(1) for p in grid_positions(ids, grid))
            queries = queries.expand(batch, target_index.shape[1], -1)
        else:
            pos = resample_pos_embed(self.pos_embed, self.grid, grid).to(x.dtype)
            x = x + gather_tokens(pos, context_index)
            queries = queries + gather_tokens(pos, target_index)
        x = torch.cat([x, queries.expand(x.shape[0], -1, -1)], dim=1)
        x, _ = run_blocks(self.blocks, x, self.activation_checkpointing, set(), positions)
        x = self.norm(x[:, context.shape[1] :])
        return self.predictor_proj(x)

"""The named ViT sizes (width, depth, heads, MLP ratio), without torch: the backbone's params model reads
them to resolve a spec, the ViT to build one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VitSize:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


VIT_SIZES: dict[str, VitSize] = {
    "tiny": VitSize(192, 12, 3),
    "small": VitSize(384, 12, 6),
    "base": VitSize(768, 12, 12),
    "large": VitSize(1024, 24, 16),
    "huge": VitSize(1280, 32, 16),
    "giant": VitSize(1408, 40, 16, 48 / 11),
    "giant_xformers": VitSize(1408, 40, 22, 48 / 11),  # V-JEPA 2's ViT-g
    "gigantic_xformers": VitSize(1664, 48, 26, 64 / 13),  # V-JEPA 2.1's ViT-G
}

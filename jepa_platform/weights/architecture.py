"""Which encoder a set of weights belongs to (`EncoderSpec`): stated by a file, read off a built encoder, or
inferred from the tensors' shapes when nothing states it (official `.pt` files hold weights only)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn
from pydantic import ValidationError
from torch import Tensor

from jepa_platform.errors import ConfigError

# Heads cannot be read from weights. The official sizes' heads by width; otherwise 64-channel heads,
# which every official size but ViT-H (80) uses.
KNOWN_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 22, 1664: 26}
HEAD_DIM = 64
ROPE_CLIP = (256, 16)  # a RoPE encoder fits any clip; V-JEPA 2's pretraining resolution and frames
FRAME_GUESSES = (16, 2, 64, 8, 32, 4)  # frames tried, in order, to read a sin-cos grid off its token count


@dataclass(frozen=True)
class EncoderSpec:
    """A backbone kind and its params, plus the clip size it was configured for."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    img_size: int = 224
    num_frames: int = 16
    stated: bool = True  # False: inferred from shapes (the heads are a guess)

    def build(self) -> nn.Module:
        from jepa_platform.plugins import PluginError, registry

        try:
            component = registry("backbones").get(self.kind)
            params = component.config.model_validate(self.params)
        except (PluginError, ValidationError) as e:
            raise ConfigError(f"backbone {self.kind}: {e}") from None
        return component.build(params, img_size=self.img_size, num_frames=self.num_frames)

    def to_json(self) -> dict[str, Any]:
        return {"backbone": {"kind": self.kind, "params": self.params}, "img_size": self.img_size,
                "num_frames": self.num_frames}

    @classmethod
    def from_json(cls, data: Any, where: str) -> EncoderSpec:
        try:
            backbone = data["backbone"]
            return cls(str(backbone["kind"]), dict(backbone.get("params") or {}), int(data["img_size"]),
                       int(data["num_frames"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"{where}: not a jepa-platform encoder config (expected backbone, img_size, "
                              f"num_frames)") from None


def ratio_for(width: int, dim: int) -> float:
    """An MLP ratio r with int(dim * r) == width (the exact quotient when it survives rounding)."""
    ratio = width / dim
    return ratio if int(dim * ratio) == width else (width + 0.5) / dim


def vit_settings(encoder: nn.Module) -> dict[str, Any]:
    """A built `VideoViT`'s resolved settings: widths, heads, MLP, positions, patching and clip size."""
    block = encoder.blocks[0]
    swiglu = hasattr(block.mlp, "fc3")
    hidden = block.mlp.fc1.out_features
    t, h, _ = encoder.grid
    return {
        "embed_dim": encoder.embed_dim, "depth": len(encoder.blocks), "num_heads": encoder.num_heads,
        "mlp_ratio": ratio_for(3 * hidden // 2 if swiglu else hidden, encoder.embed_dim),
        "mlp": "swiglu" if swiglu else "gelu", "pos_embed": "rope" if encoder.rope else "sincos",
        "patch_size": encoder.patch_size, "tubelet_size": encoder.tubelet_size,
        "img_size": h * encoder.patch_size, "num_frames": t * encoder.tubelet_size,
    }


def predictor_settings(predictor: nn.Module) -> dict[str, Any]:
    block = predictor.blocks[0]
    width = predictor.predictor_embed.out_features
    return {
        "embed_dim": width, "depth": len(predictor.blocks), "num_heads": block.attn.num_heads,
        "mlp_ratio": ratio_for(block.mlp.fc1.out_features, width), "pos_embed": "rope" if predictor.rope else "sincos",
        "target_dim": predictor.target_dim, "num_mask_tokens": len(predictor.mask_tokens),
    }


def vit_spec(settings: Mapping[str, Any], stated: bool = True) -> EncoderSpec:
    """The `vit` backbone for `vit_settings`-style settings."""
    params = {k: settings[k] for k in ("embed_dim", "depth", "num_heads", "mlp_ratio", "mlp", "pos_embed",
                                        "patch_size", "tubelet_size")}
    return EncoderSpec("vit", {"size": "custom", **params}, int(settings["img_size"]), int(settings["num_frames"]),
                       stated)


def spec_from_tensors(state: Mapping[str, Tensor], where: str, num_heads: int | None = None) -> EncoderSpec:
    """A `vit` EncoderSpec from V-JEPA-named encoder tensors. Widths, depth, patching, MLP kind and width and
    RoPE (no `pos_embed`) are read off the shapes; heads are `num_heads`, else guessed (KNOWN_HEADS)."""
    proj, fc1 = state.get("patch_embed.proj.weight"), state.get("blocks.0.mlp.fc1.weight")
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if proj is None or proj.ndim != 5 or fc1 is None or not depth:
        raise ConfigError(f"{where}: not a video ViT encoder (no 5-D patch_embed.proj.weight or no blocks)")
    dim, tubelet, patch = int(proj.shape[0]), int(proj.shape[2]), int(proj.shape[3])
    swiglu = "blocks.0.mlp.fc3.weight" in state
    hidden = 3 * int(fc1.shape[0]) // 2 if swiglu else int(fc1.shape[0])
    heads = num_heads or KNOWN_HEADS.get(dim) or (dim // HEAD_DIM if dim % HEAD_DIM == 0 else None)
    if heads is None:
        raise ConfigError(f"{where}: the number of attention heads cannot be read from the weights of a "
                          f"{dim}-wide encoder; give it (num_heads)")
    settings = {"embed_dim": dim, "depth": depth, "num_heads": heads, "mlp_ratio": ratio_for(hidden, dim),
                "mlp": "swiglu" if swiglu else "gelu", "patch_size": patch, "tubelet_size": tubelet}
    pos = state.get("pos_embed")
    if pos is None:
        img, frames = ROPE_CLIP
        return vit_spec({**settings, "pos_embed": "rope", "img_size": img, "num_frames": frames}, stated=False)
    img, frames = clip_from_tokens(int(pos.shape[-2]), patch, tubelet, where)
    return vit_spec({**settings, "pos_embed": "sincos", "img_size": img, "num_frames": frames}, stated=False)


def clip_from_tokens(tokens: int, patch: int, tubelet: int, where: str) -> tuple[int, int]:
    """(resolution, frames) of a square sin-cos grid of `tokens` tokens, trying the usual frame counts."""
    for frames in FRAME_GUESSES:
        steps = max(frames // tubelet, 1)
        side = math.isqrt(tokens // steps) if tokens % steps == 0 else 0
        if side and steps * side * side == tokens:
            return side * patch, steps * tubelet
    raise ConfigError(f"{where}: pos_embed has {tokens} tokens, which is no square grid of the usual frame counts")

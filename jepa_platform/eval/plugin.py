"""The components frozen evaluation adds, as params models and factories for the plugin registries.

`jepa_platform.plugins.builtin` registers them: probes `attentive` and `linear` (factory(params, embed_dim=,
num_classes=)) and the backbone `timm` (factory(params, img_size=, num_frames=)). Importing this module
imports neither torch nor timm; the factories do, when called.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AttentiveProbeParams",
    "LinearProbeParams",
    "TimmBackboneParams",
    "build_attentive_probe",
    "build_linear_probe",
    "build_timm_backbone",
]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttentiveProbeParams(Params):
    num_queries: int = Field(1, ge=1, description="Learnable query tokens; their outputs are concatenated.")
    num_heads: int | None = Field(None, ge=1, description="Attention heads, must divide the encoder width; default: "
                                  "12, or 16 where 12 does not divide it (ViT-L/H/g).")
    mlp_ratio: float = Field(4.0, gt=0)
    depth: int = Field(0, ge=0, description="Extra self-attention blocks (V-JEPA 2's 4 probe blocks = depth 3).")
    placement: Literal["before", "after"] = Field(
        "before", description="Self-attention over all tokens before pooling (V-JEPA 2) or over the queries after "
        "(V-JEPA)."
    )
    drop: float = Field(0.0, ge=0, lt=1, description="Dropout on attention and MLP outputs.")


def build_attentive_probe(params: AttentiveProbeParams, *, embed_dim: int, num_classes: int):
    """Learnable queries cross-attending to the tokens, then a linear classifier (V-JEPA, V-JEPA 2)."""
    from jepa_platform.models.probes import AttentiveProbe

    return AttentiveProbe(embed_dim, num_classes, **params.model_dump())


class LinearProbeParams(Params):
    norm: Literal["batchnorm", "layernorm", "none"] = Field(
        "batchnorm", description="Normalisation of the pooled features, without affine parameters."
    )


def build_linear_probe(params: LinearProbeParams, *, embed_dim: int, num_classes: int):
    """Average-pooled tokens -> normalisation -> linear."""
    from jepa_platform.models.probes import LinearProbe

    return LinearProbe(embed_dim, num_classes, norm=params.norm)


class TimmBackboneParams(Params):
    model: str = Field(description="timm model name, e.g. vit_small_patch14_dinov2 (never downloaded).")
    weights: str | None = Field(None, description="Weights file (.safetensors or PyTorch), local path or fsspec "
                                "URL; random weights when null.")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra timm.create_model arguments.")


def build_timm_backbone(params: TimmBackboneParams, *, img_size: int, num_frames: int):
    """A timm image model applied to each frame, tokens concatenated over time (frozen evaluation only)."""
    from jepa_platform.models.timm_video import TimmVideoBackbone

    return TimmVideoBackbone(params.model, img_size=img_size, num_frames=num_frames, weights=params.weights,
                             model_kwargs=params.model_kwargs)

"""The built-in backbones (`vit`, `timm`), predictor (`vit_predictor`) and probes (`attentive`, `linear`):
params models, factories and their registration, loaded through the package's `builtin` entry point.

Importing this module imports neither torch nor timm; the factories do, when called.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from jepa_platform.plugins.hookspecs import hookimpl
from jepa_platform.plugins.registries import Params


# -- backbones ---------------------------------------------------------------------------------------
class VitParams(Params):
    size: Literal["tiny", "small", "base", "large", "huge", "giant", "giant_xformers", "gigantic_xformers",
                  "custom"] = Field("base", description="giant_xformers: V-JEPA 2's ViT-g (1408 wide, 40 deep, 22 "
                                    "heads); gigantic_xformers: V-JEPA 2.1's ViT-G (1664, 48, 26).")
    patch_size: int = Field(16, ge=1)
    tubelet_size: int = Field(2, ge=1)
    embed_dim: int | None = Field(None, ge=1, description="Overrides the size's width.")
    depth: int | None = Field(None, ge=1, description="Overrides the size's depth.")
    num_heads: int | None = Field(None, ge=1, description="Overrides the size's heads.")
    mlp_ratio: float | None = Field(None, gt=0, description="Overrides the size's MLP ratio (4; 48/11 for the "
                                    "giants, 64/13 for gigantic).")
    mlp: Literal["gelu", "swiglu"] = Field("gelu", description="GELU MLP, or V-JEPA 2's SwiGLU (fc1, fc2, fc3).")
    pos_embed: Literal["sincos", "rope"] = Field(
        "sincos", description="Fixed 3D sin-cos positions added to the tokens (V-JEPA) or 3D rotary positions "
        "in every attention (V-JEPA 2 / 2.1)."
    )
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    uniform_power: bool = Field(True, description="Sin-cos only: the same share of channels per axis.")
    activation_checkpointing: bool = False

    @model_validator(mode="after")
    def _size_mlp_ratio(self) -> VitParams:
        """A resolved spec states the MLP ratio the size implies, so that a resumed run compares like with like."""
        if self.mlp_ratio is None:
            from jepa_platform.models.sizes import VIT_SIZES

            size = VIT_SIZES.get(self.size)
            self.mlp_ratio = size.mlp_ratio if size else 4.0
        return self


def build_vit(params: VitParams, *, img_size: int, num_frames: int):
    """Video ViT (3D patches, sin-cos or rotary positions, timm blocks), sizes tiny..gigantic or custom."""
    from jepa_platform.models.vit import video_vit

    return video_vit(params.size, img_size=img_size, num_frames=num_frames, **params.model_dump(exclude={"size"}))




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
    out_proj: bool = Field(False, description="A linear projection after the cross-attention (not in V-JEPA 2's "
                           "probe; off so that accuracies compare with published ones).")
    final_norm: bool = Field(False, description="A LayerNorm before the classifier (not in V-JEPA 2's probe).")


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


# -- predictors --------------------------------------------------------------------------------------
class PredictorParams(Params):
    embed_dim: int = Field(384, ge=1, description="Predictor width.")
    depth: int = Field(12, ge=1)
    num_heads: int = Field(12, ge=1, description="Predictor heads, independent of the encoder's.")
    mlp_ratio: float = Field(4.0, gt=0)
    mlp: Literal["gelu", "swiglu"] = "gelu"
    pos_embed: Literal["sincos", "rope"] = Field("sincos", description="As the backbone's pos_embed.")
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    uniform_power: bool = True
    activation_checkpointing: bool = False


def build_predictor(params: PredictorParams, *, embed_dim: int, grid, target_dim: int, num_mask_tokens: int):
    """Narrow ViT predicting target features from context features (V-JEPA predictor)."""
    from jepa_platform.models.predictor import Predictor

    return Predictor(
        embed_dim, grid, predictor_embed_dim=params.embed_dim, depth=params.depth, num_heads=params.num_heads,
        target_dim=target_dim, num_mask_tokens=num_mask_tokens, mlp_ratio=params.mlp_ratio,
        drop_path_rate=params.drop_path_rate, uniform_power=params.uniform_power,
        activation_checkpointing=params.activation_checkpointing, pos_embed=params.pos_embed, mlp=params.mlp,
    )


@hookimpl
def jepa_register_backbones(register):
    register("vit", build_vit, VitParams)
    register("timm", build_timm_backbone, TimmBackboneParams)


@hookimpl
def jepa_register_predictors(register):
    register("vit_predictor", build_predictor, PredictorParams)


@hookimpl
def jepa_register_probes(register):
    register("attentive", build_attentive_probe, AttentiveProbeParams)
    register("linear", build_linear_probe, LinearProbeParams)

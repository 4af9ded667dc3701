"""The plugin's entry point (`example` in the `jepa_platform` group): its params models and hooks.

jepa-platform loads this module, calls each `@hookimpl` below with a `register` callback, and
from then on `kind: future` / `kind: factorized_vit` work in any job spec, validated by the
params models here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from jepa_platform.plugins import hookimpl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class FutureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    context_fraction: tuple[Fraction, Fraction] = Field(
        (0.5, 0.5), description="(min, max) share of the time steps the context sees; one value fixes it."
    )
    gap: int = Field(0, ge=0, description="Time steps (tubelets) skipped between context and targets.")

    @field_validator("context_fraction", mode="before")
    @classmethod
    def _single_value(cls, v):
        return (v, v) if isinstance(v, (int, float)) else v

    @field_validator("context_fraction")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"min must be <= max, got {v}")
        return v


def build_future(params: FutureParams):
    """Future prediction: context = the first time steps, targets = the later ones."""
    from jepa_example_plugin.future import FuturePredictionMasker

    return FuturePredictionMasker(context_fraction=params.context_fraction, gap=params.gap)


@hookimpl
def jepa_register_maskers(register):
    register("future", build_future, FutureParams)


class FactorizedVitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: Literal["tiny", "small", "base", "large", "custom"] = "base"
    patch_size: int = Field(16, ge=1)
    tubelet_size: int = Field(2, ge=1)
    embed_dim: int | None = Field(None, ge=1, description="Overrides the size's width.")
    depth: int | None = Field(None, ge=1, description="Overrides the size's depth.")
    num_heads: int | None = Field(None, ge=1, description="Overrides the size's heads.")
    mlp_ratio: float = Field(4.0, gt=0)
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    activation_checkpointing: bool = False

    @model_validator(mode="after")
    def _custom_is_complete(self) -> FactorizedVitParams:
        missing = [f for f in ("embed_dim", "depth", "num_heads") if getattr(self, f) is None]
        if self.size == "custom" and missing:
            raise ValueError(f"size 'custom' needs {', '.join(missing)}")
        return self


def build_factorized_vit(params: FactorizedVitParams, *, img_size: int, num_frames: int):
    """Video ViT with divided space-time attention (TimeSformer blocks), sizes tiny..large or custom."""
    from jepa_platform.models.vit import VIT_SIZES

    from jepa_example_plugin.factorized_vit import FactorizedVideoViT

    size = VIT_SIZES.get(params.size)
    dims = {k: getattr(size, k) for k in ("embed_dim", "depth", "num_heads")} if size else {}
    dims.update(params.model_dump(include={"embed_dim", "depth", "num_heads"}, exclude_none=True))
    rest = params.model_dump(exclude={"size", "embed_dim", "depth", "num_heads"})
    return FactorizedVideoViT(img_size=img_size, num_frames=num_frames, **dims, **rest)


@hookimpl
def jepa_register_backbones(register):
    register("factorized_vit", build_factorized_vit, FactorizedVitParams)


class InProcessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field("cpu", description="torch device to train on, e.g. cpu or cuda:0.")


def build_inprocess(params: InProcessParams):
    """Trains each stage in the submitting process with the plain PyTorch trainer, without Ray."""
    from jepa_example_plugin.inprocess import InProcessRunner

    return InProcessRunner(device=params.device)


@hookimpl
def jepa_register_runners(register):
    register("inprocess", build_inprocess, InProcessParams)

"""The built-in maskers (`multiblock`, `tube`, `random`): params models, factories and their registration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jepa_platform.plugins.hookspecs import hookimpl
from jepa_platform.plugins.registries import Params


class MultiBlockParams(Params):
    num_blocks: int = Field(8, ge=1)
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    truncate: Literal["random", "prefix"] = "random"


class RatioParams(Params):
    ratio: float = Field(0.9, gt=0.0, lt=1.0, description="Fraction of tokens masked.")


def build_multiblock(params: MultiBlockParams):
    """V-JEPA 3D multi-block mask: the union of num_blocks random blocks is predicted."""
    from jepa_platform.masks import MultiBlockMasker

    return MultiBlockMasker(**params.model_dump())


def build_tube(params: RatioParams):
    """VideoMAE tube mask: random spatial positions masked in every frame."""
    from jepa_platform.masks import TubeMasker

    return TubeMasker(ratio=params.ratio)


def build_random(params: RatioParams):
    """Uniformly random tokens."""
    from jepa_platform.masks import RandomMasker

    return RandomMasker(ratio=params.ratio)


@hookimpl
def jepa_register_maskers(register):
    register("multiblock", build_multiblock, MultiBlockParams)
    register("tube", build_tube, RatioParams)
    register("random", build_random, RatioParams)

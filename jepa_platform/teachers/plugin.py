"""The built-in teachers (`ema`, `pixel`, `frozen`): params models, factories and their registration."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from jepa_platform.plugins.hookspecs import hookimpl
from jepa_platform.plugins.registries import Params


class EmaParams(Params):
    momentum: tuple[float, float] = Field((0.998, 1.0), description="Start and end of the linear ramp.")


def build_ema(params: EmaParams, *, student, steps: int, schedule_scale: float, **_):
    """EMA of the student encoder, run on the full clip (V-JEPA)."""
    from jepa_platform.teachers.ema import EmaTeacher

    return EmaTeacher(student, steps=steps, momentum=params.momentum, schedule_scale=schedule_scale)


class PixelParams(Params):
    norm_pix: bool = Field(True, description="Normalise each token's pixels by its own mean and std.")
    loss: Literal["mse", "l1"] = "mse"
    decoder_dim: int = Field(384, ge=1)
    decoder_depth: int = Field(4, ge=1)
    decoder_heads: int = Field(6, ge=1)


def build_pixel(params: PixelParams, *, student, **_):
    """Masked pixel reconstruction with a light VideoMAE-style decoder (SALT stage 1)."""
    from jepa_platform.teachers.pixel import PixelTeacher

    return PixelTeacher(student.tubelet_size, student.patch_size, **params.model_dump())


class BackboneParams(Params):
    kind: str = Field("vit", description="Registered backbone kind.")
    params: dict[str, Any] = Field(default_factory=dict, description="Validated by that backbone's own model.")


class FrozenParams(Params):
    checkpoint: str = Field(
        description="Encoder weights, any fsspec URL: a jepa-platform job or checkpoints folder (follows 'latest'), "
        "a step_N folder or state.pt, a jepa export, an official V-JEPA / V-JEPA 2 / 2.1 .pt file or a Hugging Face "
        "V-JEPA 2 folder; `stage:NAME` in a pipeline."
    )
    key: Literal["auto", "teacher", "student", "target_encoder", "encoder"] = Field(
        "auto", description="Which encoder: auto takes the teacher's / target encoder when saved, else the student's."
    )
    follow_checkpoint: bool = Field(
        False, description="On resume, accept that `checkpoint` now resolves to another file than the one this run "
        "started with (the teacher's run trained on). By default a student stays pinned to its first teacher file."
    )
    backbone: BackboneParams | None = Field(
        None, description="The teacher's architecture, matching the checkpoint (SALT: may be smaller than the "
        "student); default: the one the checkpoint states (its job's spec, a Hugging Face or jepa export config), "
        "else the student's."
    )

    @field_validator("backbone")
    @classmethod
    def _backbone_params(cls, v: BackboneParams | None) -> BackboneParams | None:
        """Checks (and fills the defaults of) the teacher backbone's params with its kind's own model."""
        if v is None:
            return v
        from jepa_platform.plugins import PluginError, registry

        try:
            config = registry("backbones").get(v.kind).config
            params = config.model_validate(v.params).model_dump(mode="json")
        except PluginError as e:
            raise ValueError(str(e)) from None
        except ValidationError as e:
            problems = [f"params.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()]
            raise ValueError("; ".join(problems)) from None
        return BackboneParams(kind=v.kind, params=params)


def build_frozen(params: FrozenParams, *, student, **_):
    """A pretrained encoder loaded from a checkpoint and never updated (SALT stage 2)."""
    import copy
    import dataclasses

    from jepa_platform.plugins import registry
    from jepa_platform.teachers.frozen import FrozenTeacher, clip_size
    from jepa_platform.weights.load import stated_spec

    stated = stated_spec(params.checkpoint, params.key) if params.backbone is None else None
    if stated is not None:  # the architecture the checkpoint states (its job, a Hugging Face or export config)
        backbone = dataclasses.replace(stated, **clip_size(student)).build()
    elif params.backbone is None:
        backbone = copy.deepcopy(student)
    else:
        backbone = registry("backbones").get(params.backbone.kind).build(params.backbone.params, **clip_size(student))
    return FrozenTeacher.from_checkpoint(backbone, params.checkpoint, key=params.key, student=student)


@hookimpl
def jepa_register_teachers(register):
    register("ema", build_ema, EmaParams)
    register("pixel", build_pixel, PixelParams)
    register("frozen", build_frozen, FrozenParams)

"""The settings of a frozen evaluation (`ProbeSettings`): the single source of their defaults for the
CLI (`jepa probe`), a spec's probe stage and the library (`eval.run_probe`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jepa_platform.storage import absolute_local

RANDOM = "random"


class Strict(BaseModel):
    """A model that refuses fields it does not know (the spec's models are all strict)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ComponentChoice(Strict):
    kind: str = Field(description="Registered component name (see `jepa components`).")
    params: dict[str, Any] = Field(default_factory=dict, description="Validated by the component's own model.")


def validate_component(family: str, choice: ComponentChoice) -> ComponentChoice:
    """`choice` with its params checked (and defaults filled) by the registered kind's own model."""
    from jepa_platform.plugins import PluginError, registry

    try:
        config = registry(family).get(choice.kind).config
        params = config.model_validate(choice.params).model_dump(mode="json")
    except PluginError as e:
        raise ValueError(str(e)) from None
    except ValidationError as e:
        raise ValueError("; ".join(f"params.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())) from None
    return ComponentChoice(kind=choice.kind, params=params)


class EncoderSettings(Strict):
    """A frozen encoder and the clips it sees: what probing (`ProbeSettings`) and embedding
    (`spec.embed.EmbedSettings`) share, resolved from the checkpoint alike (`eval.settings.resolve_settings`)."""

    checkpoint: str | None = Field(
        None, description="Encoder weights, any fsspec URL (a jepa-platform job/checkpoints/step folder or state.pt, "
        "or an official V-JEPA file); null or 'random' uses a randomly initialised encoder (a baseline)."
    )
    key: Literal["auto", "teacher", "student", "target_encoder", "encoder"] = Field(
        "auto", description="Which encoder of the checkpoint: auto = the teacher / target encoder when saved."
    )
    backbone: ComponentChoice | None = Field(
        None, description="The encoder's architecture; default: the backbone of the job that wrote the checkpoint."
    )
    frames: int | None = Field(None, ge=1, description="Frames per clip; default: the checkpoint job's, else 16.")
    stride: int | None = Field(None, ge=1, description="Frame step; default: the checkpoint job's, else 4.")
    resolution: int | None = Field(None, ge=1, description="Clip side in pixels; default: the job's, else 224.")
    num_segments: int = Field(1, ge=1, description="Clips per video, one per equal temporal segment; their tokens "
                              "are concatenated (8 for Kinetics-style tasks).")
    image_frames: int | None = Field(None, ge=1, description="Frames an image is repeated to; default: the "
                                     "encoder's tubelet size (a still clip of one tubelet).")
    layers: list[int] | None = Field(None, description="Encoder layers whose tokens are concatenated along "
                                     "channels (-1 = last); default: the encoder's output.")
    batch_size: int = Field(16, ge=1, description="Videos per batch per worker.")
    workers: int = Field(2, ge=0, description="DataLoader processes per worker.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto = bf16 autocast on CUDA.")
    video_timeout_s: float = Field(120, gt=0, description="A video not opened and decoded within this time (a "
                                   "FIFO, a stalled mount or store) is a bad one.")
    seed: int = 0

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, v: str | None) -> str | None:
        return v if v == RANDOM else absolute_local(v)  # 'random' names no file

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, v: ComponentChoice | None) -> ComponentChoice | None:
        return v if v is None else validate_component("backbones", v)

    @property
    def random_init(self) -> bool:
        return self.checkpoint in (None, RANDOM)


class ProbeSettings(EncoderSettings):
    """A frozen evaluation: which encoder, which labelled data, which probes, how they train."""

    train: str = Field(description="Training set: `path label` CSV, JSONL, or a folder per class (videos or images).")
    val: str = Field(description="Validation set, in the same forms.")
    label_names: list[str] | None = Field(None, description="Class names by label; JSONL and folders carry their own.")
    class_groups: dict[str, list[str]] | None = Field(
        None, description="Accuracy reported per named group of classes; default: motion/appearance on the "
        "synthetic dataset's classes."
    )
    num_views: int = Field(1, ge=1, description="Spatial crops along the long side at evaluation; predictions "
                           "are averaged.")
    probe: ComponentChoice = Field(default_factory=lambda: ComponentChoice(kind="attentive"))
    lrs: list[float] = Field([1e-3], min_length=1, description="Learning rates of the grid (AdamW, cosine to 0).")
    wds: list[float] = Field([0.01], min_length=1, description="Weight decays of the grid.")
    epochs: int = Field(20, ge=1)
    augment: bool = Field(True, description="Random-resized-crop (scale 0.08-1) and flip on training clips.")
    hflip: bool | None = Field(None, description="Flip in the augmentation; default: on, except when class names "
                               "tell left from right ('move_left', SSv2's 'from left to right'), where a flipped "
                               "clip shows another class.")
    cache_features: bool = Field(False, description="Encode the validation set once (and the training set too "
                                 "when augment is off) and train on the stored tokens.")
    eval_every: int = Field(1, ge=1, description="Epochs between validations; the last epoch is always validated.")
    output: str | None = Field(None, description="Output folder, any fsspec URL; nothing is written when null.")

    _paths = field_validator("train", "val", "output")(classmethod(lambda cls, v: absolute_local(v)))

    @field_validator("lrs", "wds")
    @classmethod
    def _non_negative(cls, v: list[float]) -> list[float]:
        if any(x < 0 for x in v):
            raise ValueError(f"must be >= 0, got {v}")
        return v

    @field_validator("probe")
    @classmethod
    def _probe(cls, v: ComponentChoice) -> ComponentChoice:
        return validate_component("probes", v)

    @model_validator(mode="after")
    def _grid(self) -> ProbeSettings:
        pairs = [(lr, wd) for lr in self.lrs for wd in self.wds]
        if len(set(pairs)) != len(pairs):
            raise ValueError("lrs x wds: the grid repeats a pair; list each value once")
        return self

    def grid(self) -> list[tuple[float, float]]:
        """(lr, wd) of every probe, learning rates outermost."""
        return [(lr, wd) for lr in self.lrs for wd in self.wds]

"""The components that ship with jepa-platform, registered through the same hooks as any plugin."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jepa_platform.plugins.hookspecs import hookimpl


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


UnitInterval = Field(gt=0.0, le=1.0)


# -- backbones ---------------------------------------------------------------------------------------
class VitParams(Params):
    size: Literal["tiny", "small", "base", "large", "huge", "giant", "custom"] = "base"
    patch_size: int = Field(16, ge=1)
    tubelet_size: int = Field(2, ge=1)
    embed_dim: int | None = Field(None, ge=1, description="Overrides the size's width.")
    depth: int | None = Field(None, ge=1, description="Overrides the size's depth.")
    num_heads: int | None = Field(None, ge=1, description="Overrides the size's heads.")
    mlp_ratio: float = Field(4.0, gt=0)
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    uniform_power: bool = True
    activation_checkpointing: bool = False


def build_vit(params: VitParams, *, img_size: int, num_frames: int):
    """Video ViT (3D patches, sin-cos positions, timm blocks), sizes tiny..giant or custom."""
    from jepa_platform.models.vit import video_vit

    return video_vit(params.size, img_size=img_size, num_frames=num_frames, **params.model_dump(exclude={"size"}))


@hookimpl
def jepa_register_backbones(register):
    from jepa_platform.eval.plugin import TimmBackboneParams, build_timm_backbone

    register("vit", build_vit, VitParams)
    register("timm", build_timm_backbone, TimmBackboneParams)


# -- probes ------------------------------------------------------------------------------------------
@hookimpl
def jepa_register_probes(register):
    from jepa_platform.eval.plugin import (
        AttentiveProbeParams,
        LinearProbeParams,
        build_attentive_probe,
        build_linear_probe,
    )

    register("attentive", build_attentive_probe, AttentiveProbeParams)
    register("linear", build_linear_probe, LinearProbeParams)


# -- predictors --------------------------------------------------------------------------------------
class PredictorParams(Params):
    embed_dim: int = Field(384, ge=1, description="Predictor width.")
    depth: int = Field(12, ge=1)
    num_heads: int = Field(12, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
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
        activation_checkpointing=params.activation_checkpointing,
    )


@hookimpl
def jepa_register_predictors(register):
    register("vit_predictor", build_predictor, PredictorParams)


# -- maskers -----------------------------------------------------------------------------------------
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


# -- teachers ----------------------------------------------------------------------------------------
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
        "a step_N folder or state.pt, or an official V-JEPA .pth file; `stage:NAME` in a pipeline."
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
        "student); default: the student's."
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

    from jepa_platform.plugins import registry
    from jepa_platform.teachers.frozen import FrozenTeacher, clip_size

    if params.backbone is None:
        backbone = copy.deepcopy(student)
    else:
        backbone = registry("backbones").get(params.backbone.kind).build(params.backbone.params, **clip_size(student))
    return FrozenTeacher.from_checkpoint(backbone, params.checkpoint, key=params.key, student=student)


@hookimpl
def jepa_register_teachers(register):
    register("ema", build_ema, EmaParams)
    register("pixel", build_pixel, PixelParams)
    register("frozen", build_frozen, FrozenParams)


# -- datasets ----------------------------------------------------------------------------------------
class VideoDatasetParams(Params):
    num_clips: int = Field(1, ge=1, description="Equal temporal segments, one clip each.")
    max_failure_rate: float = Field(0.1, ge=0, lt=1, description="Bad videos tolerated before the run stops.")


def build_video_dataset(params: VideoDatasetParams, *, data, source: str, train: bool = True):
    """Videos from a `path label` manifest or a folder, on any fsspec filesystem, decoded with PyAV."""
    from jepa_platform.data.dataset import VideoDataset

    return VideoDataset(
        source, frames=data.frames, stride=data.stride, num_clips=params.num_clips, resolution=data.resolution,
        train=train, max_failure_rate=params.max_failure_rate, seed=data.seed,
    )


class SyntheticDatasetParams(VideoDatasetParams):
    videos_per_class: int = Field(8, ge=1)
    video_frames: int = Field(32, ge=2, description="Frames per generated video.")
    size: int = Field(64, ge=16, description="Generated frame size in pixels (even).")
    seed: int = 0
    cache_dir: str | None = Field(None, description="Default: the user cache folder.")


def build_synthetic_dataset(params: SyntheticDatasetParams, *, data, source: str | None = None, train: bool = True):
    """Moving-shape videos (class = motion or appearance), generated on first use into a cache folder."""
    from jepa_platform.data.synthetic import ensure_synthetic_dataset

    manifest = ensure_synthetic_dataset(params.cache_dir, params.videos_per_class, params.video_frames, params.size,
                                        params.seed)
    if not train:
        manifest = manifest.with_name("val.csv")
    video = VideoDatasetParams(num_clips=params.num_clips, max_failure_rate=params.max_failure_rate)
    return build_video_dataset(video, data=data, source=str(manifest), train=train)


@hookimpl
def jepa_register_datasets(register):
    register("video", build_video_dataset, VideoDatasetParams)
    register("synthetic", build_synthetic_dataset, SyntheticDatasetParams)


# -- runners -----------------------------------------------------------------------------------------
def build_local_runner(params: Params):
    """Embedded Ray on this machine, Ray Train TorchTrainer (gloo on CPU, nccl on GPU)."""
    from jepa_platform.runners.local import LocalRunner

    return LocalRunner()


def build_kubernetes_runner(params: Params):
    """A KubeRay RayJob on a Kubernetes cluster (kubeconfig or in-cluster), workers on a profile's node pool."""
    from jepa_platform.runners.kubernetes import KubernetesRunner

    return KubernetesRunner()


class RayRunnerParams(Params):
    address: str | None = Field(None, description="Ray dashboard address, e.g. http://HOST:8265.")


def build_ray_runner(params: RayRunnerParams):
    """An existing Ray cluster, through the Ray Jobs API (token: $JEPA_RAY_TOKEN)."""
    from jepa_platform.runners.ray_jobs import RayJobsRunner

    return RayJobsRunner(params.address)


@hookimpl
def jepa_register_runners(register):
    register("ray", build_ray_runner, RayRunnerParams)
    register("local", build_local_runner, Params)
    register("kubernetes", build_kubernetes_runner, Params)

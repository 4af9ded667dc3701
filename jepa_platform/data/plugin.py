"""The built-in datasets (`video`, `synthetic`): params models, factories and their registration."""

from __future__ import annotations

from pydantic import Field

from jepa_platform.plugins.hookspecs import hookimpl
from jepa_platform.plugins.registries import Params


class VideoDatasetParams(Params):
    num_clips: int = Field(1, ge=1, description="Equal temporal segments, one clip each.")
    max_failure_rate: float = Field(0.1, ge=0, lt=1, description="Bad videos tolerated before the run stops.")
    video_timeout_s: float = Field(120, gt=0, description="A video not opened and decoded within this time (a "
                                   "FIFO, a stalled mount or store) is skipped as a bad one.")


def build_video_dataset(params: VideoDatasetParams, *, data, source: str, train: bool = True):
    """Videos from a `path label` manifest or a folder, on any fsspec filesystem, decoded with PyAV."""
    from jepa_platform.data.dataset import VideoDataset

    return VideoDataset(
        source, frames=data.frames, stride=data.stride, num_clips=params.num_clips, resolution=data.resolution,
        train=train, max_failure_rate=params.max_failure_rate, seed=data.seed, video_timeout_s=params.video_timeout_s,
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
    video = VideoDatasetParams(num_clips=params.num_clips, max_failure_rate=params.max_failure_rate,
                               video_timeout_s=params.video_timeout_s)
    return build_video_dataset(video, data=data, source=str(manifest), train=train)


@hookimpl
def jepa_register_datasets(register):
    register("video", build_video_dataset, VideoDatasetParams)
    register("synthetic", build_synthetic_dataset, SyntheticDatasetParams)

"""Video data: fsspec + PyAV decoding, clip sampling, clip transforms, datasets, synthetic videos."""

from jepa_platform.data.clips import sample_clip_indices
from jepa_platform.data.dataset import BadVideoWarning, VideoDataset
from jepa_platform.data.manifest import VIDEO_EXTENSIONS, VideoEntry, read_manifest
from jepa_platform.data.sampler import ResumableSampler
from jepa_platform.data.synthetic import CLASSES, write_synthetic_dataset, write_video
from jepa_platform.data.transforms import ClipTransform
from jepa_platform.data.video import VideoDecodeError, VideoInfo, VideoReader, probe_video, read_frames

__all__ = [
    "CLASSES",
    "VIDEO_EXTENSIONS",
    "BadVideoWarning",
    "ClipTransform",
    "ResumableSampler",
    "VideoDataset",
    "VideoDecodeError",
    "VideoEntry",
    "VideoInfo",
    "VideoReader",
    "probe_video",
    "read_frames",
    "read_manifest",
    "sample_clip_indices",
    "write_synthetic_dataset",
    "write_video",
]

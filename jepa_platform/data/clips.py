"""Which frames make a clip: one clip per equal temporal segment of the video."""

from __future__ import annotations

import torch

from jepa_platform.errors import ConfigError, DataError

__all__ = ["sample_clip_indices"]


def sample_clip_indices(
    num_frames: int, frames: int, stride: int, num_clips: int, generator: torch.Generator | None
) -> list[list[int]]:
    """Frame indices of ``num_clips`` clips of ``frames`` frames ``stride`` apart.

    The video is cut into ``num_clips`` equal segments and each clip lies inside its own
    segment, so multi-clip views cover the whole video. With a ``generator`` (training) the
    start is uniform over the positions that fit; without one (evaluation) the clip is centred,
    so evaluation is deterministic. A clip longer than its segment starts at the segment start,
    moved back so it ends inside the video if the video is long enough, else at 0; indices past
    the end are clamped to ``num_frames - 1`` (short videos repeat their last frame).
    """
    for name, value in (("frames", frames), ("stride", stride), ("num_clips", num_clips)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if num_frames < 1:
        raise DataError(f"cannot sample clips from a video with {num_frames} frames")
    span = (frames - 1) * stride + 1
    clips = []
    for k in range(num_clips):
        lo = k * num_frames // num_clips
        hi = (k + 1) * num_frames // num_clips - span  # last start that keeps the clip in segment k
        if hi < lo:
            start = max(min(lo, num_frames - span), 0)
        elif generator is None:
            start = lo + (hi - lo) // 2
        else:
            start = lo + int(torch.randint(hi - lo + 1, (1,), generator=generator))
        clips.append([min(start + t * stride, num_frames - 1) for t in range(frames)])
    return clips

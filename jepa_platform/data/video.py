"""Decode just the frames a clip needs from a video at any fsspec URL, with PyAV.

Videos are opened through fsspec so local disk, S3, GCS and ``memory://`` share one code path
(local files are handed to FFmpeg by path, which skips Python-level I/O). Decoding is
single-threaded on purpose: throughput comes from DataLoader workers, one core each.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

import av
import fsspec
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem

from jepa_platform.errors import DataError

__all__ = ["VideoDecodeError", "VideoInfo", "VideoReader", "probe_video", "read_frames", "within"]


class VideoDecodeError(DataError):
    """A video that is missing, unreadable, corrupt or truncated; the message names its URL."""


T = TypeVar("T")


def within(seconds: float | None, url: str, read: Callable[[], T]) -> T:
    """`read()` (opening and decoding `url`), given up after `seconds` as a VideoDecodeError, so that a video
    whose open() never returns (a FIFO, a stalled network mount or object store) is a bad video, not a hang.

    The read runs in a daemon thread of its own; one that never returns is left behind (nothing can
    interrupt a blocked open()), and dies with the process."""
    if seconds is None:
        return read()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = read()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread as it is
            outcome["error"] = e

    thread = threading.Thread(target=run, name=f"read {url}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise VideoDecodeError(f"{url}: no answer within {seconds:g} s (a FIFO, or a stalled mount or store?)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int


class VideoReader:
    """One open video: ``info`` and ``read(indices)`` without reopening the file in between.

    Use as a context manager; every failure surfaces as :class:`VideoDecodeError` naming the URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._stack = contextlib.ExitStack()
        self._info: VideoInfo | None = None
        try:
            fs, path = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:  # unknown protocol or its package missing
            raise DataError(f"{url}: {exc}") from exc
        try:
            if isinstance(fs, LocalFileSystem):
                source: Any = path
            else:
                source = self._stack.enter_context(fs.open(path, "rb"))
            self._container = self._stack.enter_context(av.open(source, "r"))
            if not self._container.streams.video:
                raise VideoDecodeError(f"{url}: no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "SLICE"
            self._stream.codec_context.thread_count = 1
        except VideoDecodeError:
            self._stack.close()
            raise
        except FileNotFoundError as exc:
            self._stack.close()
            raise VideoDecodeError(f"{url}: video not found") from exc
        except Exception as exc:  # PyAV, fsspec backends and OS errors all mean "cannot read"
            self._stack.close()
            raise VideoDecodeError(f"{url}: cannot open video ({_reason(exc)})") from exc

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    @property
    def _fps(self) -> Fraction | None:
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        return Fraction(rate) if rate else None

    @property
    def info(self) -> VideoInfo:
        if self._info is None:
            try:
                self._info = self._probe()
            except VideoDecodeError:
                raise
            except Exception as exc:
                raise VideoDecodeError(f"{self.url}: cannot read video ({_reason(exc)})") from exc
        return self._info

    def _probe(self) -> VideoInfo:
        stream, fps = self._stream, self._fps
        num_frames = stream.frames or 0
        if num_frames <= 0 and fps is not None:
            if stream.duration and stream.time_base:
                num_frames = round(stream.duration * stream.time_base * fps)
            elif self._container.duration:  # in AV_TIME_BASE units (microseconds)
                num_frames = round(Fraction(self._container.duration, av.time_base) * fps)
        if num_frames <= 0:
            num_frames = sum(1 for packet in self._container.demux(stream) if packet.size)
            self._container.seek(0)
        if num_frames <= 0:
            raise VideoDecodeError(f"{self.url}: video has no frames")
        ctx = stream.codec_context
        return VideoInfo(num_frames=num_frames, fps=float(fps or 0.0), width=ctx.width, height=ctx.height)

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """RGB frames ``[T, H, W, 3]`` uint8 in the order asked; indices past the end give the last frame."""
        if len(indices) == 0:
            raise ValueError("read() needs at least one frame index")
        if min(indices) < 0:
            raise ValueError(f"frame indices must be >= 0, got {min(indices)}")
        try:
            found = self._decode(sorted(set(indices)))
        except VideoDecodeError:
            raise
        except Exception as exc:
            raise VideoDecodeError(f"{self.url}: cannot decode video ({_reason(exc)})") from exc
        return torch.from_numpy(np.stack([found[i] for i in indices]))

    def _decode(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Map each wanted index to a frame, decoding from the keyframe before the first one."""
        found = self._collect(self._frames_from(wanted[0]), wanted, from_start=False)
        if not found:  # the seek overshot, or this stream can only be decoded from the start
            found = self._collect(self._frames_from(0), wanted, from_start=True)
        if not found:
            raise VideoDecodeError(f"{self.url}: no decodable frames")
        return found

    @staticmethod
    def _collect(
        frames: Iterator[tuple[int, av.VideoFrame]], wanted: list[int], from_start: bool
    ) -> dict[int, np.ndarray]:
        """Assign decoded frames to the sorted ``wanted`` indices.

        An index that is never decoded (a gap) takes the frame before it; indices past the end
        take the last frame. Returns ``{}`` if decoding began after ``wanted[0]`` (a bad seek).
        """
        found: dict[int, np.ndarray] = {}
        previous: av.VideoFrame | None = None
        cursor = 0
        for index, frame in frames:
            if cursor == 0:
                if index < wanted[0]:
                    previous = frame
                    continue
                if index > wanted[0] and previous is None and not from_start:
                    return {}
            while cursor < len(wanted) and wanted[cursor] <= index:
                exact = wanted[cursor] == index or previous is None
                found[wanted[cursor]] = (frame if exact else previous).to_ndarray(format="rgb24")
                cursor += 1
            if cursor == len(wanted):
                return found
            previous = frame
        if previous is not None:
            last = previous.to_ndarray(format="rgb24")
            for index in wanted[cursor:]:
                found[index] = last
        return found

    def _frames_from(self, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield ``(frame_index, frame)`` from the keyframe at or before ``first``.

        The index comes from the presentation timestamp, so B-frame reordering and seeking cannot
        shift it; frames without a usable timestamp are numbered by counting.
        """
        stream, fps = self._stream, self._fps
        time_base = stream.time_base
        start_pts = stream.start_time or 0
        if fps is None or time_base is None:
            first = 0
        if first > 0:
            target = start_pts + int(Fraction(first) / fps / time_base)
            self._container.seek(target, stream=stream, backward=True, any_frame=False)
        else:
            self._container.seek(start_pts, stream=stream, backward=True, any_frame=False)
        index = -1
        for frame in self._container.decode(stream):
            if frame.pts is not None and fps is not None and time_base is not None:
                index = round((frame.pts - start_pts) * time_base * fps)
            else:
                index += 1
            yield index, frame


def probe_video(url: str) -> VideoInfo:
    """Frame count, frame rate and size of the first video stream at ``url``."""
    with VideoReader(url) as reader:
        return reader.info


def read_frames(url: str, indices: Sequence[int]) -> torch.Tensor:
    """Decode frames ``indices`` (any order, repeats allowed) as uint8 ``[T, H, W, 3]`` RGB.

    Only the span from the keyframe before ``min(indices)`` to ``max(indices)`` is decoded.
    Indices past the end give the last frame, which is how short videos are padded.
    """
    with VideoReader(url) as reader:
        return reader.read(indices)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]

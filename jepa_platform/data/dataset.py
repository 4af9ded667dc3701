"""Labelled video clips from a manifest, reproducible per item and tolerant of a few bad files."""

from __future__ import annotations

import hashlib
import warnings

import torch
from torch.utils.data import Dataset

from jepa_platform.data.clips import sample_clip_indices
from jepa_platform.data.manifest import VideoEntry, read_manifest
from jepa_platform.data.transforms import ClipTransform
from jepa_platform.data.video import VideoDecodeError, VideoReader, within
from jepa_platform.errors import ConfigError, DataError

__all__ = ["BadVideoWarning", "VideoDataset"]

_MIN_ATTEMPTS = 20  # failures are judged against at least this many tries, so one early bad file is tolerated


class BadVideoWarning(UserWarning):
    """A video was skipped because it could not be read; another sample took its place."""


class VideoDataset(Dataset):
    """Clips of the videos listed by ``source`` (a manifest file or a directory, any fsspec URL).

    Item ``i`` is ``{"clip", "label", "index", "bad_reads", "skipped"}``: ``clip`` is float
    ``[C, T, H, W]``, or ``[num_clips, C, T, H, W]`` when ``num_clips > 1``; ``label`` and ``index``
    are those of the video the clip came from; ``bad_reads`` counts the unreadable videos tried before
    it, and ``skipped`` names (one per line, with why) those that failed for the first time in this
    process, for the run to report. All randomness of an item comes from a generator seeded by
    ``(seed, epoch, index, attempt)``, so items do not depend on the DataLoader's worker count
    or on what was read before, and a resumed run sees the same clips (call :meth:`set_epoch`).

    A missing, unreadable or corrupt video, or one not read within ``video_timeout_s`` (a FIFO, a stalled
    mount), is skipped with a :class:`BadVideoWarning`, counted,
    and replaced by another video chosen by the same seeded generator. Once more than
    ``max_failure_rate`` of the attempts (judged over at least 20) fail, a :class:`DataError`
    lists the bad files. The counts ``attempts``, ``failures`` and ``bad_files`` are per process:
    each DataLoader worker keeps its own (starting afresh whenever workers are re-created, e.g.
    every epoch without ``persistent_workers``), so the limit applies to each worker's share.
    Which video replaces a bad one does not depend on these counts, so items stay reproducible.
    """

    def __init__(
        self,
        source: str,
        frames: int = 16,
        stride: int = 4,
        num_clips: int = 1,
        resolution: int = 224,
        train: bool = True,
        max_failure_rate: float = 0.1,
        seed: int = 0,
        transform: ClipTransform | None = None,
        video_timeout_s: float | None = 120.0,
    ) -> None:
        for name, value in (("frames", frames), ("stride", stride), ("num_clips", num_clips)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 <= max_failure_rate < 1:
            raise ConfigError(f"max_failure_rate must be in [0, 1), got {max_failure_rate!r}")
        self.source = source
        self.frames = frames
        self.stride = stride
        self.num_clips = num_clips
        self.train = train
        self.max_failure_rate = max_failure_rate
        self.video_timeout_s = video_timeout_s
        self.seed = seed
        self.transform = transform if transform is not None else ClipTransform(resolution, train=train)
        self.entries: list[VideoEntry] = read_manifest(source)
        if not self.entries:
            raise DataError(f"{source}: no videos listed")
        self._distinct_files = len({entry.path for entry in self.entries})
        self.epoch = 0
        self.attempts = 0
        self.failures = 0
        self.bad_files: set[str] = set()
        self._first_error = ""

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Draw different clips and augmentations each epoch (and the same ones again on resume)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {len(self.entries)} videos")
        current = index
        attempt = 0
        skipped: list[str] = []  # first failures of videos, with why
        while True:
            generator = self._generator(index, attempt)
            entry = self.entries[current]
            self.attempts += 1
            try:
                clip = self._load(entry.path, generator)
            except VideoDecodeError as exc:
                if entry.path not in self.bad_files:
                    skipped.append(str(exc))
                self._record_failure(entry.path, exc)
                attempt += 1
                replacement = self._generator(index, attempt)
                current = int(torch.randint(len(self.entries), (1,), generator=replacement))
                continue
            return {"clip": clip, "label": entry.label, "index": current, "bad_reads": attempt,
                    "skipped": "\n".join(skipped)}

    def _generator(self, index: int, attempt: int) -> torch.Generator:
        key = f"{self.seed}:{self.epoch}:{index}:{attempt}".encode()
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
        return torch.Generator().manual_seed(seed)

    def _load(self, path: str, generator: torch.Generator) -> torch.Tensor:
        if path in self.bad_files:
            raise VideoDecodeError(f"{path}: skipped, failed before")
        sampling_generator = generator if self.train else None

        def read() -> torch.Tensor:
            with VideoReader(path) as reader:
                clips = sample_clip_indices(
                    reader.info.num_frames, self.frames, self.stride, self.num_clips, sampling_generator
                )
                return reader.read([i for clip in clips for i in clip])

        decoded = within(self.video_timeout_s, path, read)
        views = [self.transform(part, generator) for part in decoded.split(self.frames)]
        return views[0] if self.num_clips == 1 else torch.stack(views)

    def _record_failure(self, path: str, exc: VideoDecodeError) -> None:
        first_time = path not in self.bad_files
        if not self.bad_files:
            self._first_error = str(exc)
        self.failures += 1
        self.bad_files.add(path)
        if first_time:
            warnings.warn(f"skipping unreadable video: {exc}", BadVideoWarning, stacklevel=3)
        too_many = self.failures > self.max_failure_rate * max(self.attempts, _MIN_ATTEMPTS)
        if too_many or len(self.bad_files) == self._distinct_files:
            raise DataError(self._failure_report())

    def _failure_report(self) -> str:
        listed = sorted(self.bad_files)
        shown = ", ".join(listed[:10]) + (f" and {len(listed) - 10} more" if len(listed) > 10 else "")
        return (
            f"{self.source}: too many unreadable videos ({self.failures} of {self.attempts} reads failed, "
            f"max_failure_rate={self.max_failure_rate}); bad files ({len(listed)}): {shown}; "
            f"first error: {self._first_error}"
        )

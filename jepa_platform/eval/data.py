"""Labelled data for probes: manifests (CSV, JSONL with label names), class folders of videos or images,
and the clips a probe sees (temporal segments, spatial views, images as still clips)."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import fsspec
import torch
from torch.utils.data import Dataset

from jepa_platform.data.clips import sample_clip_indices
from jepa_platform.data.manifest import VIDEO_EXTENSIONS, read_manifest, resolve_entry_path
from jepa_platform.data.transforms import ClipTransform
from jepa_platform.data.video import VideoReader, within
from jepa_platform.errors import ConfigError, DataError

__all__ = ["IMAGE_EXTENSIONS", "LabelledItem", "LabelledSet", "ProbeDataset", "read_labelled", "view_boxes"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")
TRAIN_SCALE = (0.08, 1.0)  # random-resized-crop area range of probe training (V-JEPA)


@dataclass(frozen=True)
class LabelledItem:
    path: str
    label: int

    @property
    def is_image(self) -> bool:
        return self.path.lower().endswith(IMAGE_EXTENSIONS)


@dataclass
class LabelledSet:
    """Items and, where the source names them, class names by label."""

    source: str
    items: list[LabelledItem]
    names: dict[int, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return max([i.label for i in self.items] + list(self.names)) + 1


def folder_names(items: list[LabelledItem]) -> dict[int, str]:
    """Class names a `path label` manifest implies: when every label's videos sit in one folder of their own
    (`videos/move_left/...` -> label 0 is `move_left`), those folders' names; else none."""
    folders: dict[int, set[str]] = {}
    for item in items:
        folders.setdefault(item.label, set()).add(posixpath.basename(posixpath.dirname(item.path)))
    names = {label: next(iter(found)) for label, found in folders.items() if len(found) == 1}
    if len(names) != len(folders) or len(set(names.values())) != len(names) or "" in names.values():
        return {}
    return names


def directional(names: Sequence[str]) -> bool:
    """Whether class names tell left from right ('move_left', 'Pushing something from left to right'): a
    horizontally flipped clip of such a class shows another class."""
    return any(re.search(r"\b(left|right)\b", re.sub(r"[_\-]", " ", name.lower())) for name in names)


def read_labelled(source: str) -> LabelledSet:
    """Labelled videos or images from any fsspec URL or local path:

    - a `.jsonl` file: one `{"path": ..., "label": int, "label_name": optional str}` per line;
    - a folder with one subfolder per class (sorted names -> 0, 1, ...) holding images or videos;
    - any other file: the `path label` manifest V-JEPA uses (see `read_manifest`).

    Relative paths are taken from the manifest's folder. Labels must be integers >= 0.
    """
    try:
        fs, path = fsspec.core.url_to_fs(source)
        is_dir = fs.isdir(path)
    except (ImportError, ValueError) as e:
        raise DataError(f"{source}: {e}") from None
    if is_dir:
        found = _class_folders(source, fs, path)
    elif path.endswith(".jsonl"):
        found = _read_jsonl(source, fs, path)
    else:
        items = [LabelledItem(e.path, e.label) for e in read_manifest(source)]
        found = LabelledSet(source, items, folder_names(items))
    if not found.items:
        raise DataError(f"{source}: no labelled videos or images listed")
    negative = [i for i in found.items if i.label < 0]
    if negative:
        raise DataError(f"{source}: labels must be >= 0, found {negative[0].label} for {negative[0].path}")
    return found


def _read_jsonl(source: str, fs, path: str) -> LabelledSet:
    try:
        text = fs.cat_file(path).decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"manifest not found: {source}") from None
    items, names = [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            item = LabelledItem(resolve_entry_path(source, str(row["path"])), int(row["label"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"{source}, line {number}: expected a JSON object with 'path' and an integer "
                            f"'label' ({type(e).__name__}: {e})") from None
        name = row.get("label_name")
        if name is not None:
            if names.setdefault(item.label, str(name)) != str(name):
                raise DataError(f"{source}, line {number}: label {item.label} is named both "
                                f"{names[item.label]!r} and {name!r}")
        items.append(item)
    return LabelledSet(source, items, names)


def _class_folders(source: str, fs, root: str) -> LabelledSet:
    root = root.rstrip("/")
    media = sorted(p for p in fs.find(root) if p.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS))
    relative = [posixpath.relpath(p, root).split("/") for p in media]
    if not media or not all(len(parts) > 1 for parts in relative):
        raise DataError(f"{source}: expected one subfolder per class holding images or videos")
    classes = sorted({parts[0] for parts in relative})
    label_of = {name: label for label, name in enumerate(classes)}
    keep_scheme = "://" in source
    items = [
        LabelledItem(fs.unstrip_protocol(p) if keep_scheme else p, label_of[parts[0]])
        for p, parts in zip(media, relative, strict=True)
    ]
    return LabelledSet(source, items, dict(enumerate(classes)))


def read_image(url: str) -> torch.Tensor:
    """RGB image as uint8 [1, H, W, 3] (one frame)."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        with fsspec.open(url, "rb") as f:
            data = f.read()
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except FileNotFoundError:
        raise DataError(f"{url}: image not found") from None
    except RuntimeError as e:
        raise DataError(f"{url}: cannot decode image ({str(e).strip().splitlines()[0]})") from None
    return image.permute(1, 2, 0).unsqueeze(0)


def view_boxes(height: int, width: int, num_views: int) -> list[tuple[int, int, int, int]]:
    """(top, left, side, side) of `num_views` squares spread evenly along the long side (one: centred)."""
    side = min(height, width)
    slack_y, slack_x = height - side, width - side
    if num_views == 1:
        return [(slack_y // 2, slack_x // 2, side, side)]
    steps = [k / (num_views - 1) for k in range(num_views)]
    return [(round(s * slack_y), round(s * slack_x), side, side) for s in steps]


class ProbeDataset(Dataset):
    """Items `{"clip": [V, S, C, T, H, W], "label", "index"}` of a labelled set.

    S = `num_segments` clips, one per equal temporal segment. In training (`train=True`) V is 1 and, with
    `augment`, the clip start in each segment is random and each clip gets a random-resized crop (area
    0.08-1) and, with `hflip`, a horizontal flip; all drawn from a generator seeded by (seed, epoch, index),
    so items do not depend on loader workers. Without augmentation, and at evaluation, clips are centred in
    their segments; evaluation takes V = `num_views` square crops along the long side, each resized to
    `resolution`. An image is a still clip of `image_frames` frames. A file that cannot be read, or is not
    read within `video_timeout_s` (a FIFO, a stalled mount), stops the run with a DataError naming it (an
    embedding skips it instead).
    """

    def __init__(
        self,
        labelled: LabelledSet,
        frames: int,
        stride: int,
        resolution: int,
        num_segments: int = 1,
        num_views: int = 1,
        train: bool = False,
        augment: bool = True,
        hflip: bool = True,
        image_frames: int = 2,
        seed: int = 0,
        video_timeout_s: float | None = 120.0,
    ):
        for name, value in (("frames", frames), ("stride", stride), ("num_segments", num_segments),
                            ("num_views", num_views), ("image_frames", image_frames)):
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        self.labelled, self.items = labelled, labelled.items
        self.frames, self.stride, self.num_segments = frames, stride, num_segments
        self.num_views = 1 if train else num_views
        self.random = train and augment
        self.image_frames, self.seed, self.video_timeout_s = image_frames, seed, video_timeout_s
        self.transform = ClipTransform(resolution, train=self.random, scale=TRAIN_SCALE, hflip=hflip)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        item = self.items[index]
        generator = self._generator(index) if self.random else None
        segments = self._read(item, generator)
        views = [[self._view(clip, box, generator) for clip in segments] for box in self._boxes(segments[0])]
        return {"clip": torch.stack([torch.stack(v) for v in views]), "label": item.label, "index": index}

    def _generator(self, index: int) -> torch.Generator:
        key = f"{self.seed}:{self.epoch}:{index}".encode()
        return torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little"))

    def _read(self, item: LabelledItem, generator: torch.Generator | None) -> list[torch.Tensor]:
        """uint8 frames [T, H, W, 3] of each segment's clip."""
        if item.is_image:
            still = read_image(item.path).expand(self.image_frames, -1, -1, -1)
            return [still] * self.num_segments
        def read() -> torch.Tensor:
            with VideoReader(item.path) as reader:
                clips = sample_clip_indices(reader.info.num_frames, self.frames, self.stride, self.num_segments,
                                            generator)
                return reader.read([i for clip in clips for i in clip])

        return list(within(self.video_timeout_s, item.path, read).split(self.frames))

    def _boxes(self, frames: torch.Tensor) -> list[tuple[int, int, int, int] | None]:
        return [None] if self.random else view_boxes(frames.shape[1], frames.shape[2], self.num_views)

    def _view(self, frames: torch.Tensor, box, generator: torch.Generator | None) -> torch.Tensor:
        if box is not None:
            top, left, height, width = box
            frames = frames[:, top : top + height, left : left + width]
        return self.transform(frames, generator)

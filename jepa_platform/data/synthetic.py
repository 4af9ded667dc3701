"""A tiny labelled video dataset of real H.264 files, for tests and CPU quickstarts.

Half the classes can only be told apart by MOTION (a shape moving left/right/up/down; its
shape, colour and texture are random), the other half only by APPEARANCE (a circle or a
square that jitters in place). A representation that ignores time cannot solve the first
half, one that ignores space cannot solve the second: a quick sanity check of a video encoder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np
import torch

from jepa_platform.errors import ConfigError

__all__ = ["CLASSES", "write_synthetic_dataset", "write_video"]

CLASSES: list[str] = ["move_left", "move_right", "move_up", "move_down", "static_circle", "static_square"]

_DIRECTIONS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}


def write_video(
    path: str | Path,
    frames: torch.Tensor | np.ndarray | Iterable[np.ndarray],
    fps: int,
    gop_size: int = 12,
    crf: int = 18,
) -> Path:
    """Encode uint8 RGB frames (``[T, H, W, 3]``, or an iterable of ``[H, W, 3]`` so long videos
    need not fit in memory) as H.264 (libx264, yuv420p) in an mp4 at ``path``.

    ``gop_size`` is the keyframe interval: small values make seeking observable in tests.
    H and W must be even (yuv420p).
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"crf": str(crf), "g": str(gop_size), "preset": "veryfast"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.pix_fmt = "yuv420p"
        written = 0
        for image in frames:
            image = np.ascontiguousarray(image)
            if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"expected uint8 RGB frames [H, W, 3], got {image.dtype} {list(image.shape)}"
                )
            if not stream.codec_context.is_open:
                stream.height, stream.width = image.shape[:2]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            written += 1
        if not written:
            raise ValueError(f"no frames to write to {path}")
        container.mux(stream.encode())
    return path


def write_synthetic_dataset(
    out_dir: str | Path,
    videos_per_class: int = 4,
    frames: int = 32,
    size: int = 64,
    fps: int = 8,
    seed: int = 0,
    val_fraction: float = 0.0,
) -> Path:
    """Write ``out_dir/videos/<class>/*.mp4`` and ``out_dir/train.csv``; return the manifest path.

    Manifests use the ``path label`` format with paths relative to ``out_dir``. With
    ``val_fraction > 0`` that share of each class (at least one video, if the class has two)
    goes to ``out_dir/val.csv``.
    The same ``seed`` renders the same frames; the encoded files may still differ by a few bytes
    (libx264 output here is not always byte-reproducible), so compare decoded frames, not hashes.
    """
    if videos_per_class < 1:
        raise ConfigError(f"videos_per_class must be >= 1, got {videos_per_class}")
    if size < 16 or size % 2:
        raise ConfigError(f"size must be an even number >= 16, got {size}")
    if frames < 2:
        raise ConfigError(f"frames must be >= 2, got {frames}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    # At least one validation video per class when asked for, but never the last training one.
    n_val = min(max(1, round(videos_per_class * val_fraction)), videos_per_class - 1) if val_fraction else 0
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for label, name in enumerate(CLASSES):
        for i in range(videos_per_class):
            relative = f"videos/{name}/{name}_{i:03d}.mp4"
            write_video(out_dir / relative, render_video(name, frames, size, rng), fps)
            lines["val" if i < n_val else "train"].append(f"{relative} {label}")
    (out_dir / "train.csv").write_text("\n".join(lines["train"]) + "\n")
    if n_val:
        (out_dir / "val.csv").write_text("\n".join(lines["val"]) + "\n")
    return out_dir / "train.csv"


def render_video(name: str, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[frames, size, size, 3]`` frames of class ``name`` over a noisy background."""
    radius = rng.uniform(0.1, 0.16) * size
    if name in _DIRECTIONS:
        shape = rng.choice(["circle", "square"])
        dx, dy = _DIRECTIONS[name]
        travel = rng.uniform(0.5, 1.0) * (size - 2 * radius - 2)  # stays in frame
        across = rng.uniform(radius + 1, size - radius - 1)
        t = np.linspace(0.0, 1.0, frames)
        along = radius + 1 + travel * (t if dx + dy > 0 else 1 - t)
        xs, ys = (along, np.full(frames, across)) if dx else (np.full(frames, across), along)
    else:
        shape = name.removeprefix("static_")
        centre = rng.uniform(radius + 2, size - radius - 2, size=2)
        jitter = rng.normal(0.0, 0.6, size=(frames, 2))
        xs, ys = centre[0] + jitter[:, 0], centre[1] + jitter[:, 1]
    colour = rng.uniform(120, 255, size=3)
    striped = bool(rng.integers(2))
    background = rng.uniform(0, 80, size=3)
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
    video = np.empty((frames, size, size, 3), np.uint8)
    for k in range(frames):
        u, v = grid_x - xs[k], grid_y - ys[k]  # coordinates relative to the shape: texture moves with it
        inside = (u**2 + v**2 <= radius**2) if shape == "circle" else (np.maximum(abs(u), abs(v)) <= radius)
        if striped:
            inside &= np.floor((u + v) / 3) % 2 == 0
        image = background + rng.normal(0.0, 8.0, size=(size, size, 1))
        image[inside] = colour
        video[k] = np.clip(image, 0, 255).astype(np.uint8)
    return video


def ensure_synthetic_dataset(
    cache_dir: str | Path | None = None,
    videos_per_class: int = 8,
    frames: int = 32,
    size: int = 64,
    seed: int = 0,
    val_fraction: float = 0.25,
) -> Path:
    """The manifest of a synthetic set with these settings, written on first use into a cache folder.

    The folder is keyed by the settings, so different settings never share files; a lock makes
    concurrent workers (Ray Train, DataLoader processes) write it once and the others wait.
    """
    import platformdirs
    from filelock import FileLock

    root = Path(cache_dir) if cache_dir else Path(platformdirs.user_cache_dir("jepa-platform")) / "synthetic"
    folder = root / f"v{videos_per_class}-f{frames}-s{size}-seed{seed}-val{val_fraction:g}"
    done = folder / ".complete"
    if done.exists():
        return folder / "train.csv"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not done.exists():
            write_synthetic_dataset(folder, videos_per_class, frames, size, seed=seed, val_fraction=val_fraction)
            done.touch()
    return folder / "train.csv"

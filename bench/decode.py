"""Clips/s per core of the video input pipeline: PyAV decode, and decode + ClipTransform.

    .venv/bin/python bench/decode.py [--seconds 4] [--lengths 64 256 1024] [--gop 32]

Writes H.264 mp4 files (320x240, 30 fps, textured moving content with sensor-like noise) of a few
lengths, then times 16-frame clips at stride 4 (a 61-frame span) at random positions, resized to
224x224, in one process with ``torch.set_num_threads(1)`` and single-threaded decoding, as one
DataLoader worker runs. "decode" is open + probe + seek + decode to RGB (``VideoReader``);
"decode+transform" is a full ``VideoDataset`` item in train mode (random resized crop, flip,
normalise). Longer GOPs cost more because each clip decodes from the keyframe before it; the
last row re-encodes the longest video with x264's default keyframe interval (250) to show that.
The machine may be shared: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from jepa_platform.data import VideoDataset, VideoReader, sample_clip_indices, write_video

FRAMES, STRIDE, RESOLUTION = 16, 4, 224
WIDTH, HEIGHT, FPS = 320, 240, 30


def moving_texture(num_frames: int, seed: int = 0) -> Iterator[np.ndarray]:
    """A panning smooth texture plus a moving bright disc and per-frame noise, frame by frame."""
    rng = np.random.default_rng(seed)
    texture = rng.normal(0, 1, (HEIGHT // 8, (WIDTH + num_frames) // 8 + 2, 3))
    texture = np.kron(texture, np.ones((8, 8, 1)))  # blocky detail that pans with the camera
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for k in range(num_frames):
        image = 110 + 40 * texture[:, k : k + WIDTH] + rng.normal(0, 4, (HEIGHT, WIDTH, 1))
        cx, cy = (40 + 3 * k) % WIDTH, HEIGHT / 2 + 60 * np.sin(k / 15)
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < 30**2] = (240, 200, 60)
        yield np.clip(image, 0, 255).astype(np.uint8)


def rate(step: Callable[[int], object], seconds: float) -> float:
    """Calls of ``step(i)`` per second, after one untimed call, over about ``seconds``."""
    step(0)
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done < 3:
        step(done + 1)
        done += 1
    return done / elapsed


def decode_only(path: str) -> Callable[[int], object]:
    def step(i: int) -> object:
        with VideoReader(path) as reader:
            clip = sample_clip_indices(
                reader.info.num_frames, FRAMES, STRIDE, 1, torch.Generator().manual_seed(i)
            )
            return reader.read(clip[0])

    return step


def decode_and_transform(manifest: str) -> Callable[[int], object]:
    dataset = VideoDataset(manifest, frames=FRAMES, stride=STRIDE, resolution=RESOLUTION, train=True)

    def step(i: int) -> object:
        dataset.set_epoch(i)
        return dataset[0]["clip"]

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timing budget per cell")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--gop", type=int, default=32, help="keyframe interval of the main rows")
    args = parser.parse_args()
    torch.set_num_threads(1)

    cases = [(n, args.gop) for n in args.lengths] + [(max(args.lengths), 250)]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for num_frames, gop in cases:
            path = Path(folder) / f"v{num_frames}_g{gop}.mp4"
            start = time.perf_counter()
            write_video(path, moving_texture(num_frames), FPS, gop_size=gop, crf=23)
            encode_s = time.perf_counter() - start
            manifest = Path(folder) / f"{path.stem}.csv"
            manifest.write_text(f"{path.name} 0\n")
            decode = rate(decode_only(str(path)), args.seconds)
            full = rate(decode_and_transform(str(manifest)), args.seconds)
            size_kib = path.stat().st_size / 1024
            cells = (num_frames, gop, f"{size_kib:.0f}", f"{encode_s:.1f}", f"{decode:.1f}", f"{full:.1f}")
            rows.append((*map(str, cells), f"{1000 / full:.0f}"))

    header = ("frames", "gop", "KiB", "encode s", "decode clips/s", "decode+transform clips/s", "ms/clip")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(
        f"{FRAMES}-frame clips, stride {STRIDE}, {WIDTH}x{HEIGHT} H.264 -> {RESOLUTION}x{RESOLUTION}, "
        f"1 thread, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"
    )
    for line in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()

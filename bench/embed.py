"""What `jepa embed` costs per video beside the encoder's forward pass alone, on this machine.

    .venv/bin/python bench/embed.py [--videos 48] [--size small] [--threads 2]

The reference is the encoder's forward on clips already decoded and in memory (the floor: what the GPU
or CPU must do anyway). Each row is then a whole `run_embed` in this process (listing, decoding with
PyAV, preprocessing, encoding, writing the shards), in videos/s and as a multiple of the reference's time.
Rows vary the loader processes, the format and whether every token is written. The videos are synthetic
(H.264, 64 frames of 256 px, decoded to 16 frames of 224 px).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from timing import median_seconds

from jepa_platform.data import write_synthetic_dataset
from jepa_platform.embed import run_embed
from jepa_platform.eval.data import ProbeDataset, read_labelled
from jepa_platform.models.vit import video_vit
from jepa_platform.spec.embed import EmbedSettings
from jepa_platform.weights.export import export_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--size", default="small")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as root:
        manifest = write_synthetic_dataset(Path(root) / "videos", videos_per_class=max(1, args.videos // 6),
                                           frames=64, size=256)
        encoder = video_vit(size=args.size, img_size=args.resolution, num_frames=args.frames, pos_embed="rope")
        torch.save({"target_encoder": encoder.state_dict()}, Path(root) / "w.pt")
        export_encoder(str(Path(root) / "w.pt"), "safetensors", str(Path(root) / "enc"), "target_encoder")
        listed = read_labelled(str(manifest))
        clips = ProbeDataset(listed, frames=args.frames, stride=2, resolution=args.resolution)
        batch = torch.stack([clips[i]["clip"][0, 0] for i in range(args.batch_size)])
        encoder.eval()
        with torch.no_grad():
            encoder(batch)  # warm-up
            forward = median_seconds(lambda: encoder(batch), 3) / args.batch_size
        count = len(listed.items)
        print(f"torch {torch.__version__}, {args.threads} threads; ViT-{args.size} RoPE, {args.frames}x"
              f"{args.resolution}^2 clips, batch {args.batch_size}, {count} videos")
        head = f"{'run':<38} {'videos/s':>9} {'s/video':>8} {'x forward':>9}"
        print(head)
        print("-" * len(head))
        print(f"{'encoder forward alone (reference)':<38} {1 / forward:>9.2f} {forward:>8.3f} {1.0:>9.2f}")
        rows = [("parquet, 0 loader processes", {"workers": 0}),
                ("parquet, 2 loader processes", {"workers": 2}),
                ("npy, 2 loader processes", {"workers": 2, "format": "npy"}),
                ("parquet + tokens, 2 loader processes", {"workers": 2, "tokens": True})]
        for i, (label, extra) in enumerate(rows):
            settings = EmbedSettings(checkpoint=str(Path(root) / "enc"), data=str(manifest), output=f"{root}/out{i}",
                                     frames=args.frames, stride=2, resolution=args.resolution,
                                     batch_size=args.batch_size, shard_size=16, **extra)
            started = time.perf_counter()
            report = run_embed(settings)
            seconds = (time.perf_counter() - started) / report.written
            print(f"{label:<38} {1 / seconds:>9.2f} {seconds:>8.3f} {seconds / forward:>9.2f}")


if __name__ == "__main__":
    main()

"""Frozen evaluation of a tiny V-JEPA on the synthetic motion/appearance videos, beside random initialisation.

    .venv/bin/python bench/probe.py [--steps 600] [--videos-per-class 24] [--epochs 60] [--augment] [--out DIR]

1. Writes the synthetic set (6 classes: 4 told apart only by motion, 2 only by appearance; 32 frames of
   64x64), a quarter of each class held out for validation.
2. Pretrains a tiny V-JEPA (ViT-tiny, 4 blocks; 8-frame clips at stride 2, 64 pixels) on the training
   videos with `run_training` for `--steps` steps (about 3 minutes on two busy CPU cores at the defaults).
3. Probes its EMA (target) encoder and a randomly initialised encoder of the same architecture with the
   same attentive probe grid (2 temporal segments per video), and prints: top-1 over all classes, accuracy
   on the motion classes and on the appearance classes (6-way predictions, counted per group), the best
   probe of the grid, probe time, and two properties of the frozen tokens on the validation clips: their
   effective rank (exp of the entropy of the normalised squared singular values; low = collapsed) and their
   change over time (mean squared difference of consecutive temporal token slices / token variance).

By default probes train on cached tokens without augmentation (fast, and on 64-pixel frames a 0.08-area
crop often cuts the shape out); `--augment` uses random-resized crops without flip (a flipped "move_left"
clip moves right). The machine may be shared: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from jepa_platform.data import CLASSES, write_synthetic_dataset
from jepa_platform.eval import (
    ProbeDataset,
    ProbeReport,
    ProbeSettings,
    build_encoder,
    read_labelled,
    resolve_settings,
    run_probe,
)
from jepa_platform.spec import validate_spec
from jepa_platform.storage import join
from jepa_platform.train.job import run_training

BACKBONE = {"kind": "vit", "params": {"size": "tiny", "depth": 4}}
CLIP = {"frames": 8, "stride": 2, "resolution": 64}


def pretrain(manifest: Path, out: Path, steps: int, batch_size: int, lr: float,
             predictor_depth: int) -> tuple[str, float, dict]:
    """Trains the tiny V-JEPA; returns (checkpoints URL, seconds, last metrics row)."""
    spec = validate_spec({
        "name": "probe-bench",
        "backbone": BACKBONE,
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 96, "depth": predictor_depth,
                                                                  "num_heads": 3}},
        "teacher": {"kind": "ema"},
        "optim": {"steps": steps, "batch_size": batch_size, "warmup_steps": max(1, steps // 10), "lr": lr,
                  "start_lr": 1e-4, "log_every": 25, "checkpoint_every": steps},
        "data": {"dataset": "video", "train": str(manifest), "loader_workers": 1, **CLIP},
        "storage": {"output": str(out)},
    }, source="bench/probe.py")
    start = time.perf_counter()
    row = run_training(spec)
    return join(spec.job_dir, "checkpoints"), time.perf_counter() - start, row


def probe(checkpoint: str | None, data: Path, out: Path, args: argparse.Namespace) -> tuple[ProbeReport, dict]:
    settings = ProbeSettings(
        checkpoint=checkpoint, backbone=BACKBONE, **CLIP, train=str(data / "train.csv"), val=str(data / "val.csv"),
        label_names=CLASSES, num_segments=2, num_views=1, lrs=args.lrs, wds=[0.01], epochs=args.epochs,
        batch_size=args.batch_size, workers=1, augment=args.augment, hflip=False, cache_features=not args.augment,
        seed=0, output=str(out), probe={"kind": args.probe},
    )
    return run_probe(settings, device="cpu"), token_properties(build_encoder(resolve_settings(settings)), data)


def token_properties(encoder: torch.nn.Module, data: Path) -> dict[str, float]:
    """Effective rank and change over time of the encoder's tokens on the (centred) validation clips."""
    val = ProbeDataset(read_labelled(str(data / "val.csv")), **CLIP)
    clips = torch.stack([val[i]["clip"][0, 0] for i in range(len(val))])
    with torch.no_grad():
        tokens = encoder.eval()(clips)  # [N, T*H*W, D]
    flat = tokens.flatten(0, 1)
    s = torch.linalg.svdvals(flat - flat.mean(0)).square()
    p = s / s.sum()
    t = tokens.unflatten(1, (encoder.grid[0], -1))
    change = (t[:, 1:] - t[:, :-1]).square().mean() / t.var()
    return {"rank": float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum())), "change": float(change)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="V-JEPA pretraining steps")
    parser.add_argument("--pretrain-batch", type=int, default=8)
    parser.add_argument("--pretrain-lr", type=float, default=5e-4)
    parser.add_argument("--predictor-depth", type=int, default=2)
    parser.add_argument("--patch-size", type=int, default=16,
                        help="16: a 4x4 token grid per 64-pixel frame; 8: 8x8 (4x the tokens, more context per mask)")
    parser.add_argument("--videos-per-class", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=60, help="probe epochs")
    parser.add_argument("--probe", choices=["attentive", "linear"], default="attentive",
                        help="linear: mean-pooled tokens, shows what the encoder makes linearly available")
    parser.add_argument("--augment", action="store_true", help="random-resized-crop probe training (no cache)")
    parser.add_argument("--batch-size", type=int, default=8, help="probe batch (videos)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-3, 3e-4])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)")
    parser.add_argument("--out", type=Path, default=None, help="keep everything here (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    BACKBONE["params"]["patch_size"] = args.patch_size
    out = args.out or Path(tempfile.mkdtemp(prefix="jepa-probe-bench-"))
    data = out / "data"
    if not (data / "val.csv").exists():
        write_synthetic_dataset(data, videos_per_class=args.videos_per_class, frames=32, size=64, val_fraction=0.25)
    checkpoint, pretrain_s, row = pretrain(data / "train.csv", out / "runs", args.steps, args.pretrain_batch,
                                            args.pretrain_lr, args.predictor_depth)
    print(f"pretrained {args.steps} steps in {pretrain_s:.0f} s (final loss {row.get('loss', float('nan')):.4f}); "
          f"checkpoint {checkpoint}")
    rows = []
    for name, ckpt in (("V-JEPA pretrained", checkpoint), ("random init", None)):
        report, tokens = probe(ckpt, data, out / "probe" / name.split()[0].lower().replace("-", ""), args)
        rows.append((name, report, tokens))
    load = os.getloadavg()
    print(f"\npatch {args.patch_size} ({64 // args.patch_size}x{64 // args.patch_size} tokens per frame), "
          f"pretrain lr {args.pretrain_lr}, predictor depth {args.predictor_depth}; "
          f"synthetic set: {args.videos_per_class} videos/class, "
          f"{rows[0][1].val_items} validation videos; "
          f"{args.probe} probe, grid lr {args.lrs} x wd [0.01], {args.epochs} epochs, "
          f"{'augmented' if args.augment else 'cached tokens'}; load avg {load[0]:.1f}")
    header = (f"| {'encoder':<18} | {'top-1':>6} | {'motion':>6} | {'appearance':>10} | {'best probe':<18} "
              f"| {'probe s':>7} | {'token rank':>10} | {'change/t':>8} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for name, r, tok in rows:
        best = r.best_result
        print(f"| {name:<18} | {best.top1:>6.3f} | {r.groups['motion']:>6.3f} | {r.groups['appearance']:>10.3f} "
              f"| {best.name:<18} | {r.seconds:>7.0f} | {tok['rank']:>10.1f} | {tok['change']:>8.3f} |")
    summary = {name: {"top1": r.best_result.top1, **r.groups, **tok,
                      "per_class": dict(zip(CLASSES, r.per_class, strict=True)),
                      "grid": {x.name: x.top1 for x in r.results}} for name, r, tok in rows}
    print(json.dumps(summary, indent=1))

if __name__ == "__main__":
    main()

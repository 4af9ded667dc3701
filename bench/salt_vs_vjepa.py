"""SALT vs V-JEPA at one budget of total pretraining FLOPs, on the synthetic motion/appearance videos.

Pretrains tiny ViTs in plain PyTorch (this process, no Ray), counting FLOPs with the same estimator the
runs log (`flops.json`): V-JEPA (EMA teacher) for --vjepa-steps; SALT with a pixel-reconstruction teacher
taking --teacher-fraction of the same budget and a student the rest; and SALT from a weak teacher (a
quarter of the teacher steps, the student gets the difference). Then an attentive probe on each frozen
encoder and on a randomly initialised one, reporting accuracy on motion classes and appearance classes.

    .venv/bin/python bench/salt_vs_vjepa.py --out /tmp/salt-bench          # about 15 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from jepa_platform.data.synthetic import CLASSES, write_synthetic_dataset
from jepa_platform.eval.run import run_probe
from jepa_platform.eval.settings import ProbeSettings
from jepa_platform.spec import validate_spec
from jepa_platform.train.flops import estimate_step_flops
from jepa_platform.train.job import run_training

STUDENT = {"size": "custom", "embed_dim": 192, "depth": 4, "num_heads": 3}
TEACHER = {"size": "custom", "embed_dim": 96, "depth": 4, "num_heads": 3}  # SALT: a small teacher


def base_spec(name: str, out: Path, manifest: Path, steps: int, backbone: dict, teacher: dict) -> dict:
    return {
        "name": name,
        "backbone": {"kind": "vit", "params": backbone},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 96, "depth": 2, "num_heads": 3}},
        "teacher": teacher,
        "optim": {"steps": max(1, steps), "batch_size": 8, "warmup_steps": min(20, max(1, steps) // 5),
                  "lr": 5e-4, "start_lr": 1e-4, "log_every": 10, "checkpoint_every": 10_000},
        "data": {"train": str(manifest), "frames": 8, "stride": 2, "resolution": 64, "loader_workers": 0},
        "storage": {"output": str(out / "runs")},
    }


def flops_per_step(raw: dict) -> float:
    return estimate_step_flops(validate_spec(raw)).total()


def pretrain(raw: dict) -> tuple[float, float, float]:
    """(FLOPs, seconds, final loss) of one run."""
    spec = validate_spec(raw)
    start = time.perf_counter()
    row = run_training(spec)
    return flops_per_step(raw) * spec.optim.steps, time.perf_counter() - start, row["loss"]


def probe(out: Path, data: Path, name: str, checkpoint: str | None, backbone: dict, epochs: int) -> dict:
    settings = ProbeSettings(
        checkpoint=checkpoint, key="auto", backbone={"kind": "vit", "params": backbone},
        train=str(data / "train.csv"), val=str(data / "val.csv"), frames=8, stride=2, resolution=64,
        label_names=CLASSES, num_segments=2, probe={"kind": "attentive", "params": {"num_heads": 3}},
        lrs=[3e-3, 1e-3, 3e-4], wds=[0.01], epochs=epochs, batch_size=8, workers=0,
        # cached tokens, no augmentation: a 0.08-area crop of a 64-pixel frame often cuts the shape out, and a
        # flip turns move_left into move_right (bench/probe.py found both)
        augment=False, hflip=False, cache_features=True, output=str(out / "probes" / name),
    )
    report = run_probe(settings)
    return {"top1": report.best_result.top1, **report.groups}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/salt-bench"))
    parser.add_argument("--vjepa-steps", type=int, default=300, help="Sets the FLOPs budget.")
    parser.add_argument("--teacher-fraction", type=float, default=0.25, help="Share of the budget for SALT's teacher.")
    parser.add_argument("--probe-epochs", type=int, default=40)
    parser.add_argument("--videos-per-class", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out
    data = out / "data"
    manifest = data / "train.csv"
    if not manifest.exists():
        write_synthetic_dataset(data, videos_per_class=args.videos_per_class, frames=32, size=64, val_fraction=0.25)

    ema = {"kind": "ema"}
    pixel = {"kind": "pixel", "params": {"norm_pix": False, "decoder_dim": 96, "decoder_depth": 2, "decoder_heads": 3}}

    def frozen(stage: str) -> dict:
        return {"kind": "frozen", "params": {"checkpoint": str(out / "runs" / stage / "checkpoints"),
                                             "backbone": {"kind": "vit", "params": TEACHER}}}

    vjepa = base_spec("vjepa", out, manifest, args.vjepa_steps, STUDENT, ema)
    budget = flops_per_step(vjepa) * args.vjepa_steps
    teacher_step = flops_per_step(base_spec("t", out, manifest, 1, TEACHER, pixel))
    # the student's per-step FLOPs do not depend on the teacher's weights, only its shape: count it on the
    # frozen teacher's architecture before that teacher exists (the estimator stands in for a missing file)
    student_step = flops_per_step(base_spec("s", out, manifest, 1, STUDENT, frozen("missing")))
    teacher_steps = max(1, math.floor(args.teacher_fraction * budget / teacher_step))
    weak_steps = max(1, teacher_steps // 4)

    plan = [
        ("vjepa", vjepa),
        ("salt-teacher", base_spec("salt-teacher", out, manifest, teacher_steps, TEACHER, pixel)),
        ("salt-student", base_spec("salt-student", out, manifest,
                                   math.floor((budget - teacher_steps * teacher_step) / student_step),
                                   STUDENT, frozen("salt-teacher"))),
        ("weak-teacher", base_spec("weak-teacher", out, manifest, weak_steps, TEACHER, pixel)),
        ("weak-student", base_spec("weak-student", out, manifest,
                                   math.floor((budget - weak_steps * teacher_step) / student_step),
                                   STUDENT, frozen("weak-teacher"))),
    ]
    runs = {}
    for name, raw in plan:
        runs[name] = pretrain(raw)
        print(f"{name}: {raw['optim']['steps']} steps, {runs[name][0]:.3g} FLOPs, {runs[name][1]:.0f} s, "
              f"loss {runs[name][2]:.4f}", flush=True)

    rows = [
        ("random init", 0.0, 0.0, probe(out, data, "random", None, STUDENT, args.probe_epochs)),
        ("V-JEPA (EMA target)", runs["vjepa"][0], runs["vjepa"][1],
         probe(out, data, "vjepa", str(out / "runs/vjepa"), STUDENT, args.probe_epochs)),
        ("SALT student", runs["salt-teacher"][0] + runs["salt-student"][0],
         runs["salt-teacher"][1] + runs["salt-student"][1],
         probe(out, data, "salt", str(out / "runs/salt-student"), STUDENT, args.probe_epochs)),
        ("SALT teacher (stage 1)", runs["salt-teacher"][0], runs["salt-teacher"][1],
         probe(out, data, "salt-teacher", str(out / "runs/salt-teacher"), TEACHER, args.probe_epochs)),
        ("SALT, weak teacher", runs["weak-teacher"][0] + runs["weak-student"][0],
         runs["weak-teacher"][1] + runs["weak-student"][1],
         probe(out, data, "weak", str(out / "runs/weak-student"), STUDENT, args.probe_epochs)),
    ]
    print(f"\nbudget {budget:.3g} FLOPs (V-JEPA {args.vjepa_steps} steps); SALT teacher {teacher_steps} steps "
          f"({args.teacher_fraction:.0%}), weak teacher {weak_steps} steps; attentive probe, "
          f"{args.probe_epochs} epochs, best of lr grid on val")
    header = f"{'encoder':<24} {'pretrain FLOPs':>14} {'wall s':>7} {'top-1':>6} {'motion':>7} {'appearance':>10}"
    print(header)
    print("-" * len(header))
    for name, fl, secs, acc in rows:
        print(f"{name:<24} {fl:>14.3g} {secs:>7.0f} {acc['top1']:>6.1%} {acc.get('motion', float('nan')):>7.1%} "
              f"{acc.get('appearance', float('nan')):>10.1%}")


if __name__ == "__main__":
    main()

"""What counting a run's FLOPs costs at start-up: the count rank 0 now makes on the components it built
(`count_step_flops`, real compute on the run's device) beside the count on a meta build (`jepa flops`,
`estimate_step_flops`: the components built a second time) and one training step as the reference, all
on this machine in one process. Prints a table.

    python bench/flops_count.py [--steps 3]
"""

from __future__ import annotations

import argparse

import torch
from timing import median_seconds

from jepa_platform.spec import validate_spec
from jepa_platform.train.build import build_components
from jepa_platform.train.flops import count_step_flops, estimate_step_flops
from jepa_platform.train.loop import Trainer

CONFIGS = {
    "quickstart (vit 192x4, 8x64px, batch 8)": ({"size": "custom", "embed_dim": 192, "depth": 4, "num_heads": 3},
                                                (8, 64), 8),
    "vit-small (16x112px, batch 4)": ({"size": "small"}, (16, 112), 4),
}


def measure(backbone: dict, frames: int, res: int, batch: int, repeats: int) -> tuple[float, float, float]:
    """(train step, count on the built components, meta estimate) seconds for one config."""
    from torch.utils.data import TensorDataset

    from jepa_platform.masks import MaskCollator

    spec = validate_spec({"name": "bench", "backbone": {"kind": "vit", "params": backbone},
                          "data": {"dataset": "synthetic", "frames": frames, "resolution": res},
                          "optim": {"batch_size": batch, "steps": 100, "warmup_steps": 1}})
    student, teacher, maskers = build_components(spec)
    clips = torch.randn(batch, 3, frames, res, res)
    trainer = Trainer(student, teacher, MaskCollator(maskers, seed=0), TensorDataset(torch.zeros(batch)),
                      spec.optim)
    return (median_seconds(lambda: trainer.train_step(clips), repeats),
            median_seconds(lambda: count_step_flops(spec, student, teacher, maskers, "cpu"), repeats),
            median_seconds(lambda: estimate_step_flops(spec), repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="repeats of each measurement (median)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.steps}")
    print(f"{'config':<42} {'train step s':>12} {'count on built s':>16} {'meta estimate s':>15} {'count/step':>10}")
    for name, (backbone, (frames, res), batch) in CONFIGS.items():
        step, built, meta = measure(backbone, frames, res, batch, args.steps)
        print(f"{name:<42} {step:>12.2f} {built:>16.2f} {meta:>15.2f} {built / step:>10.2f}")


if __name__ == "__main__":
    main()

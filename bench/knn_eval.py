"""What the k-NN evaluation during pretraining costs (`data.val`, `monitor.eval_every`), beside a training step
of the same run, on this machine.

    .venv/bin/python bench/knn_eval.py [--clips 48 192] [--threads 2]

For each size of labelled set (synthetic videos, 6 classes), prints the one-off decode of the set, the
median seconds of one evaluation (encode every clip, leave-one-out k-NN), and the median seconds of one
training step of examples/quickstart.yaml's model and batch, the reference it is measured beside; and the
share of training time at the default `eval_every`.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from timing import median_seconds

from jepa_platform.data import write_synthetic_dataset
from jepa_platform.spec import load_spec
from jepa_platform.spec.monitor import MonitorConfig
from jepa_platform.train.build import build_trainer
from jepa_platform.train.knn import KnnEvaluator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[48, 192])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as root:
        spec = load_spec("examples/quickstart.yaml", [f"storage.output={root}/runs", "monitor.every=0"])
        trainer = build_trainer(spec)
        clips = torch.stack([trainer.dataset[i]["clip"] for i in range(spec.optim.batch_size)])
        trainer.train_step(clips)  # warm-up
        step = median_seconds(lambda: trainer.train_step(clips), args.repeats)
        every = MonitorConfig().eval_every
        print(f"torch {torch.__version__}, {args.threads} threads; quickstart model (ViT-T, 4 blocks, "
              f"{spec.data.frames}x{spec.data.resolution} px), batch {spec.optim.batch_size}")
        head = (f"{'clips':>6} {'decode once s':>13} {'evaluate s':>10} {'train step s':>12} "
                f"{f'share at every {every}':>20}")
        print(head)
        print("-" * len(head))
        for count in args.clips:
            manifest = write_synthetic_dataset(f"{root}/val{count}", videos_per_class=max(1, count // 6), frames=32,
                                               size=spec.data.resolution)
            started = time.perf_counter()
            evaluator = KnnEvaluator(str(manifest), frames=spec.data.frames, stride=spec.data.stride,
                                     resolution=spec.data.resolution, max_clips=count)
            decode = time.perf_counter() - started
            evaluate = median_seconds(lambda e=evaluator: e.evaluate(trainer.teacher.encoder, torch.device("cpu")),
                                      args.repeats)
            print(f"{len(evaluator.labels):>6} {decode:>13.2f} {evaluate:>10.3f} {step:>12.3f} "
                  f"{100 * evaluate / (every * step):>19.2f}%")


if __name__ == "__main__":
    main()

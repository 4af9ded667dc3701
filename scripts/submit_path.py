"""The call path from `jepa submit` to the first `Trainer.train_step`: the package's frames on the stack when
`train_step` is entered, outermost first. Prints how many files they lie in, and how many times the path
comes back to a file it had already passed through and left.

    python scripts/submit_path.py [TREE]    (TREE: a checkout to trace, default this one)

Ray is replaced by stand-ins that run the worker function in this process (the same function a Ray Train
worker runs), so the whole path, client and worker side, is one trace. Before/after figures for issue notes.
"""

from __future__ import annotations

import queue
import sys
import tempfile
from pathlib import Path

import yaml

SPEC = {
    "name": "path", "data": {"dataset": "synthetic", "frames": 4, "stride": 2, "resolution": 32,
                             "loader_workers": 0, "params": {"videos_per_class": 1, "size": 32}},
    "backbone": {"kind": "vit", "params": {"size": "custom", "embed_dim": 48, "depth": 1, "num_heads": 3,
                                           "patch_size": 16}},
    "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
    "optim": {"steps": 1, "batch_size": 2, "warmup_steps": 0, "log_every": 1, "checkpoint_every": 1},
}


class Reached(BaseException):
    """Raised on entering Trainer.train_step: the path ends there."""


def stand_ins() -> None:
    """Ray Train run in this process: the worker function called once as rank 0 of 1, on CPU."""
    import ray
    import ray.train
    import ray.train.torch
    import ray.util.queue
    import torch

    class Context:
        def get_world_size(self):
            return 1

        def get_world_rank(self):
            return 0

    class TorchTrainer:
        def __init__(self, worker, train_loop_config=None, **_):
            self.worker, self.config = worker, train_loop_config

        def fit(self):
            self.worker(self.config)

    class Queue(queue.Queue):
        def __init__(self, *args, **kwargs):
            super().__init__()

        def shutdown(self):
            pass

    ray.is_initialized = lambda: True
    ray.train.get_context = Context
    ray.train.report = lambda *a, **k: None
    ray.train.torch.get_device = lambda: torch.device("cpu")
    ray.train.torch.TorchTrainer = TorchTrainer
    ray.util.queue.Queue = Queue


def main(tree: str | None = None) -> None:
    if tree:
        sys.path.insert(0, str(Path(tree).resolve()))
    import jepa_platform

    package = str(Path(jepa_platform.__file__).parent)
    stand_ins()
    from typer.testing import CliRunner

    from jepa_platform.cli import app

    path: list[tuple[str, str]] = []  # (file, function), outermost first
    calls: list[tuple[str, str]] = []  # every call into the package's functions on the way, in order

    def profile(frame, event, arg):
        if event != "call" or not frame.f_code.co_filename.startswith(package) or frame.f_code.co_name == "<module>":
            return
        calls.append((frame.f_code.co_filename[len(package) + 1:], frame.f_code.co_name))
        if frame.f_code.co_name != "train_step":
            return
        while frame is not None:
            if frame.f_code.co_filename.startswith(package):
                path.insert(0, (frame.f_code.co_filename[len(package) + 1:], frame.f_code.co_name))
            frame = frame.f_back
        raise Reached

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "path.yaml"
        spec.write_text(yaml.safe_dump({**SPEC, "storage": {"output": f"{tmp}/runs"}}))
        import os

        os.environ["JEPA_HOME"] = f"{tmp}/home"
        sys.setprofile(profile)
        try:
            CliRunner().invoke(app, ["submit", str(spec), "--quiet"], catch_exceptions=True)
        except Reached:
            pass
        finally:
            sys.setprofile(None)
    runs = [f for i, (f, _) in enumerate(path) if i == 0 or path[i - 1][0] != f]  # consecutive frames merged
    files = list(dict.fromkeys(runs))
    print(f"{len(files)} files on the path from jepa submit to Trainer.train_step; it comes back to a file it "
          f"had left {len(runs) - len(files)} times ({len(path)} frames)")
    print(" -> ".join(f"{f}:{fn}" for f, fn in path))
    every = [f for i, (f, _) in enumerate(calls) if i == 0 or calls[i - 1][0] != f]
    spec = [fn for f, fn in calls if f.startswith("spec")]
    print(f"all calls on the way: {len(calls)} into {len(set(every))} files, {len(every) - len(set(every))} "
          f"returns to a file left; validate_one ran {spec.count('validate_one')} times, maskers built "
          f"{sum(1 for f, fn in calls if f == 'masks/plugin.py' and fn.startswith('build'))} times")


if __name__ == "__main__":
    main(*sys.argv[1:2])

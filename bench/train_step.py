"""Seconds, clips/s and FLOP/s of one V-JEPA training step on CPU, against the official code's figures.

    .venv/bin/python bench/train_step.py [--configs tiny small] [--steps N] [--threads 2]
                                         [--cpu-shards 1 2] [--pos-embed sincos rope] [--compile]

One step is `Trainer.train_step(clips)`: mask draw (V-JEPA's two multi-block maskers), EMA-teacher
forward on the full clip, student encoder + predictor forward and backward for both masks, gradient
clipping, AdamW, EMA update; fp32. The Trainer runs the batch as `cpu_shards` shards side by side
(default: one per thread); `--cpu-shards 1` is the whole batch on intra-op threads, and several values
give one row each. Each row runs `--warmup` untimed steps, then `--steps` timed ones (median and best
reported). FLOPs are counted afterwards with `jepa_platform.train.flops.count_flops` around
`train_step`, replaying the timed steps' masks (the mask collator is keyed on its call count), so
FLOPs and seconds refer to the same masks; FLOP/s is the median over those steps of FLOPs / seconds.
The peak is the best fp32 `torch.mm` rate of 2048-4096 square matrices on the same threads, taken
before and after the rows.

Each row runs in a fresh (spawned) process. "built" is that process's RSS with the model, teacher,
optimiser and clips in place, before the first step; "peak" is its highest RSS over the warm-up and timed
steps (the kernel's high-water mark, reset after building; the FLOP replay afterwards is not included).

After the timed steps, each row also times one health check (`train.health.measure` with the default
`MonitorConfig`: a no-grad teacher and student forward on 4 clips, RankMe/std/cosine on 1024 tokens, the
EMA distance; median of 3) and prints its cost per step at the default `monitor.every` (one check per
`every` steps) in the last table.

Each config runs with V-JEPA's sin-cos positions and with V-JEPA 2's rotary ones (`--pos-embed`, both by
default; RoPE in the encoder and the predictor alike); the last table gives RoPE's cost as the ratio of
the two rows' step times on the same machine in the same run.

The reference figures are the official V-JEPA code's, taken on a machine with a 372 GFLOP/s peak.
Where this machine's peak differs, raw clips/s do not compare; "ratio at equal peak" scales the
reference to this machine's peak (equivalently, compares utilisation on the same FLOP count).
The machine may be shared: the load average before and after each row is printed with it.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from jepa_platform.masks import MaskCollator, default_vjepa_maskers
from jepa_platform.models.predictor import Predictor
from jepa_platform.models.vit import video_vit
from jepa_platform.spec.monitor import MonitorConfig
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.teachers.ema import EmaTeacher
from jepa_platform.train.flops import count_flops
from jepa_platform.train.health import measure
from jepa_platform.train.loop import JepaStudent, Trainer


@dataclass(frozen=True)
class BenchConfig:
    """One benchmarked setting and the official V-JEPA code's figures for it (same machine kind)."""

    label: str
    size: str
    img_size: int
    num_frames: int
    batch_size: int
    predictor_depth: int
    predictor_width: int
    steps: int
    warmup: int
    ref_seconds: float
    ref_utilisation: float

    @property
    def ref_clips_per_s(self) -> float:
        return self.batch_size / self.ref_seconds


CONFIGS = {
    "tiny": BenchConfig("ViT-T/16 16x112x112 b4 pred 6x192", "tiny", 112, 16, 4, 6, 192,
                        steps=10, warmup=2, ref_seconds=0.55, ref_utilisation=0.51),
    "small": BenchConfig("ViT-S/16 16x224x224 b2 pred 12x384", "small", 224, 16, 2, 12, 384,
                         steps=4, warmup=1, ref_seconds=7.1, ref_utilisation=0.69),
}
REF_PEAK = 372e9  # fp32 matmul peak the reference figures were taken against


class FixedClips(Dataset):
    """`n` random clips held in memory: the Trainer needs a dataset, the bench feeds batches directly."""

    def __init__(self, n: int, shape: tuple[int, ...]):
        self.clips = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        return {"clip": self.clips[i], "label": 0, "index": i}


def build_trainer(cfg: BenchConfig, total_steps: int, compile_encoders: bool, cpu_shards: int | None,
                  pos_embed: str = "sincos") -> Trainer:
    torch.manual_seed(0)
    encoder = video_vit(cfg.size, img_size=cfg.img_size, num_frames=cfg.num_frames, pos_embed=pos_embed)
    predictor = Predictor(encoder.embed_dim, encoder.grid, predictor_embed_dim=cfg.predictor_width,
                          depth=cfg.predictor_depth, num_heads=encoder.num_heads, pos_embed=pos_embed)
    teacher = EmaTeacher(encoder, steps=total_steps)
    optim = OptimConfig(steps=total_steps, batch_size=cfg.batch_size, warmup_steps=min(40, total_steps),
                        precision="fp32", log_every=total_steps, checkpoint_every=total_steps)
    data = FixedClips(cfg.batch_size, (3, cfg.num_frames, cfg.img_size, cfg.img_size))
    collator = MaskCollator(default_vjepa_maskers())
    trainer = Trainer(JepaStudent(encoder, predictor), teacher, collator, data, optim, cpu_shards=cpu_shards)
    if compile_encoders:  # in place, so parameter names, the optimiser and the EMA see the same tensors
        # Student and teacher share VideoViT.forward: each grad mode (and dispatch mode) is a graph; token
        # counts vary per step, so shapes are dynamic and not tied to equal-sized dimensions.
        torch._dynamo.config.recompile_limit = 64
        torch.fx.experimental._config.use_duck_shape = False
        trainer.student.encoder.compile(dynamic=True)
        trainer.teacher.encoder.compile(dynamic=True)
    return trainer


def matmul_peak(threads: int, sizes=(2048, 3072, 4096), repeats: int = 4) -> float:
    """Best fp32 torch.mm FLOP/s over square `sizes` and `repeats`."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


@dataclass
class Result:
    cfg: BenchConfig
    shards: int
    seconds: list[float]
    flops: list[int]
    teacher_flops: int
    load: tuple[float, float]
    rss_built: float  # bytes
    rss_peak: float  # bytes
    pos_embed: str = "sincos"
    health_seconds: float = 0.0  # one default health check

    @property
    def label(self) -> str:
        return f"{self.cfg.label} {self.pos_embed}"

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def clips_per_s(self) -> float:
        return self.cfg.batch_size / self.median_seconds

    @property
    def mean_flops(self) -> float:
        return statistics.fmean(self.flops)

    @property
    def flop_rate(self) -> float:
        return statistics.median(f / s for f, s in zip(self.flops, self.seconds, strict=True))


def resident_bytes(field: str = "VmRSS") -> float:
    """This process's current resident set size (VmRSS) or its high-water mark (VmHWM), from /proc."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def reset_peak_resident() -> None:
    """Sets the high-water mark to the current RSS (Linux >= 4.0); ru_maxrss could not be reset and would
    even carry the parent's peak into a spawned child."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_config(cfg: BenchConfig, steps: int, warmup: int, compile_encoders: bool, cpu_shards: int | None,
               threads: int, pos_embed: str = "sincos") -> Result:
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    trainer = build_trainer(cfg, warmup + 2 * steps, compile_encoders, cpu_shards, pos_embed)
    clips = trainer.dataset.clips
    rss_built = resident_bytes()
    reset_peak_resident()
    for _ in range(warmup):
        trainer.train_step(clips)
    first_timed_call = trainer.collator.calls
    seconds = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step(clips)
        seconds.append(time.perf_counter() - t0)
    rss_peak = resident_bytes("VmHWM")
    # Replay the timed steps' masks under the counter (the Trainer runs them unsharded there: same FLOPs).
    trainer.collator.calls = first_timed_call
    step_flops = [count_flops(lambda: trainer.train_step(clips)) for _ in range(steps)]
    masks = trainer.collator(cfg.batch_size, trainer.student.encoder.token_grid(clips.shape))
    teacher_flops = count_flops(lambda: trainer.teacher.targets(clips, masks))
    shards = trainer.shard_count(cfg.batch_size)
    health = []
    for _ in range(3):
        t0 = time.perf_counter()
        measure(trainer.student, trainer.teacher, clips, masks, MonitorConfig())
        health.append(time.perf_counter() - t0)
    return Result(cfg, shards, seconds, step_flops, teacher_flops, (load_before, os.getloadavg()[0]), rss_built,
                  rss_peak, pos_embed, statistics.median(health))


def run_config_in_new_process(*args) -> Result:
    """`run_config` in a spawned process: its own peak RSS, no state left over from earlier rows."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_config, args)


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def print_table(results: list[Result], peak: float, args: argparse.Namespace) -> None:
    print(f"\n{cpu_name()}, torch {torch.__version__}, {args.threads} threads, fp32, "
          f"compile={'on' if args.compile else 'off'}; fp32 matmul peak (best torch.mm of 2048-4096 square, "
          f"{args.threads} threads): {peak / 1e9:.0f} GFLOP/s, reference machine {REF_PEAK / 1e9:.0f}")
    head = (f"{'config':<43} {'shards':>6} {'s/step':>7} {'best':>7} {'clips/s':>7} {'GFLOP/step':>10} "
            f"{'teacher':>7} {'student':>7} {'GFLOP/s':>7} {'%peak':>5} {'built GB':>8} {'peak GB':>7}  load")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r.label:<43} {r.shards:>6} {r.median_seconds:>7.3f} {min(r.seconds):>7.3f} "
              f"{r.clips_per_s:>7.2f} {r.mean_flops / 1e9:>10.1f} {r.teacher_flops / 1e9:>7.1f} "
              f"{(r.mean_flops - r.teacher_flops) / 1e9:>7.1f} {r.flop_rate / 1e9:>7.1f} "
              f"{100 * r.flop_rate / peak:>4.0f}% {r.rss_built / 1e9:>8.2f} {r.rss_peak / 1e9:>7.2f}  "
              f"{r.load[0]:.1f}->{r.load[1]:.1f}")
    head = (f"{'against the official V-JEPA code (sin-cos)':<43} {'shards':>6} {'ref s':>7} {'ref c/s':>7} "
            f"{'ref %pk':>7} {'clips/s ratio':>13} {'ratio at equal peak':>19}")
    print("\n" + head)
    print("-" * len(head))
    for r in (r for r in results if r.pos_embed == "sincos"):
        c = r.cfg
        ratio = r.clips_per_s / c.ref_clips_per_s
        print(f"{c.label:<43} {r.shards:>6} {c.ref_seconds:>7.2f} {c.ref_clips_per_s:>7.2f} "
              f"{100 * c.ref_utilisation:>6.0f}% {ratio:>12.2f}x {ratio * REF_PEAK / peak:>18.2f}x")
    print("\ns/step: median of the timed steps (best: fastest); teacher: EMA-teacher forward GFLOP; student:"
          " student encoder + predictor forward and backward GFLOP (both masks); %peak: FLOP/s over this run's"
          " matmul peak; built / peak GB: resident memory before the first step / at most during the steps. "
          "ratio at equal peak: clips/s ratio x reference peak / this machine's peak.")
    print_rope_cost(results)
    print_health_cost(results)
    print("step times (s): " + "; ".join(
        f"{r.cfg.size}/{r.pos_embed}/{r.shards} " + " ".join(f"{s:.3f}" for s in r.seconds) for r in results))


def print_health_cost(results: list[Result]) -> None:
    """A default health check's seconds, and its share of training time at the default `monitor.every`."""
    every = MonitorConfig().every
    head = (f"{'health check (default monitor)':<43} {'shards':>6} {'check s':>8} {'step s':>7} "
            f"{f'per step, every {every}':>17}")
    print("\n" + head)
    print("-" * len(head))
    for r in results:
        share = r.health_seconds / (every * r.median_seconds)
        print(f"{r.label:<43} {r.shards:>6} {r.health_seconds:>8.3f} {r.median_seconds:>7.3f} {100 * share:>16.2f}%")


def print_rope_cost(results: list[Result]) -> None:
    """RoPE against sin-cos: the same config and shards, same machine, same run."""
    pairs = [(r, s) for r in results if r.pos_embed == "rope" for s in results
             if s.pos_embed == "sincos" and (s.cfg, s.shards) == (r.cfg, r.shards)]
    if not pairs:
        return
    head = (f"{'RoPE against sin-cos':<43} {'shards':>6} {'sincos s':>8} {'rope s':>7} {'rope/sincos':>11} "
            f"{'peak GB':>13}")
    print("\n" + head)
    print("-" * len(head))
    for rope, sincos in pairs:
        ratio = rope.median_seconds / sincos.median_seconds
        print(f"{rope.cfg.label:<43} {rope.shards:>6} {sincos.median_seconds:>8.3f} {rope.median_seconds:>7.3f} "
              f"{ratio:>10.2f}x {sincos.rss_peak / 1e9:>6.2f}->{rope.rss_peak / 1e9:.2f}")
    print()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["tiny", "small"])
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per config (default: 10 tiny, 4 small)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (default: 2 tiny, 1 small)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--cpu-shards", type=int, nargs="+", default=None,
                        help="Trainer cpu_shards, one row each (default: the Trainer's, one per thread; "
                             "1 = whole batch on intra-op threads; with --compile the default is 1)")
    parser.add_argument("--pos-embed", nargs="+", choices=["sincos", "rope"], default=["sincos", "rope"],
                        help="position embeddings, one row each (encoder and predictor alike)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the student and teacher encoders (compiled during warm-up, "
                             "minutes on 2 cores)")
    args = parser.parse_args(argv)
    if args.cpu_shards is None:
        # Compiled encoders gain less sharded than whole: shard inputs are views (offset guards,
        # recompiles) and inductor fixes each kernel's thread count when it compiles it.
        args.cpu_shards = [1] if args.compile else [None]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    results = []
    for name in args.configs:
        cfg = CONFIGS[name]
        steps = args.steps or cfg.steps
        warmup = cfg.warmup if args.warmup is None else args.warmup
        if args.compile:
            warmup = max(warmup, 2)  # the first calls compile (and recompile once for dynamic shapes)
        for shards in args.cpu_shards:
            for pos_embed in args.pos_embed:
                results.append(run_config_in_new_process(cfg, steps, warmup, args.compile, shards, args.threads,
                                                         pos_embed))
    peak = max(peak, matmul_peak(args.threads))  # again at the end: the best of both, the machine is shared
    print_table(results, peak, args)


if __name__ == "__main__":
    main()

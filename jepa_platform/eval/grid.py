"""A grid of probes (learning rates x weight decays) trained side by side on the same tokens.

Each probe depends only on its own hyperparameters and the seed, never on the rest of the grid: its
initial weights and its dropout randomness come from a seed derived from (seed, lr, wd), and its
gradients are those of its own loss (the grid's loss is the sum of the probes' losses, which share no
parameters). So a probe trained in a grid ends where the same probe trained alone ends.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["ProbeGrid", "build_grid", "cosine_lr", "probe_optimizer", "probe_seed"]


def probe_seed(seed: int, lr: float, wd: float) -> int:
    """The seed of one probe of a grid: a function of its own hyperparameters only."""
    key = f"{seed}:{float(lr)!r}:{float(wd)!r}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def is_stochastic(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in module.modules())


class ProbeGrid(nn.Module):
    """Probes over the same tokens: `forward(tokens [B, L, D])` -> logits [P, B, num_classes].

    In training, a probe with dropout draws from its own random stream (seeded by its `seeds` entry and
    carried from call to call), so its masks do not depend on the probes before it.
    """

    def __init__(self, probes: list[nn.Module], hparams: list[tuple[float, float]], seeds: list[int]):
        super().__init__()
        if not len(probes) == len(hparams) == len(seeds):
            raise ValueError("one (lr, wd) and one seed per probe")
        self.probes = nn.ModuleList(probes)
        self.hparams, self.seeds = list(hparams), list(seeds)
        self.stochastic = [is_stochastic(p) for p in probes]
        self.rng: list[tuple[Tensor, Tensor | None] | None] = [None] * len(probes)

    def forward(self, tokens: Tensor) -> Tensor:
        return torch.stack([self.run(i, tokens) for i in range(len(self.probes))])

    def run(self, i: int, tokens: Tensor) -> Tensor:
        probe = self.probes[i]
        if not (self.training and self.stochastic[i]):
            return probe(tokens)
        cuda = tokens.device if tokens.device.type == "cuda" else None
        with torch.random.fork_rng(devices=[cuda] if cuda else [], device_type="cuda"):
            if self.rng[i] is None:
                torch.default_generator.manual_seed(self.seeds[i])
                if cuda:
                    torch.cuda.default_generators[cuda.index or 0].manual_seed(self.seeds[i])
            else:
                cpu_state, cuda_state = self.rng[i]
                torch.set_rng_state(cpu_state)
                if cuda:
                    torch.cuda.set_rng_state(cuda_state, cuda)
            out = probe(tokens)
            self.rng[i] = (torch.get_rng_state(), torch.cuda.get_rng_state(cuda) if cuda else None)
        return out


def build_grid(
    factory: Callable[[], nn.Module], hparams: list[tuple[float, float]], seed: int
) -> ProbeGrid:
    """One probe per (lr, wd), each built by `factory()` with the CPU generator seeded by `probe_seed`."""
    seeds = [probe_seed(seed, lr, wd) for lr, wd in hparams]
    probes = []
    for s in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(s)
            probes.append(factory())
    return ProbeGrid(probes, hparams, seeds)


def probe_optimizer(grid: ProbeGrid) -> torch.optim.AdamW:
    """AdamW with two groups per probe: its lr, and its wd on matrices (weights, query tokens) but none on
    1-d tensors (biases, norm scales), as V-JEPA's evaluation does. Groups keep their peak lr as `base_lr`."""
    groups = []
    for probe, (lr, wd) in zip(grid.probes, grid.hparams, strict=True):
        decay = [p for p in probe.parameters() if p.ndim > 1]
        other = [p for p in probe.parameters() if p.ndim <= 1]
        groups.append({"params": decay, "lr": lr, "base_lr": lr, "weight_decay": wd})
        if other:
            groups.append({"params": other, "lr": lr, "base_lr": lr, "weight_decay": 0.0})
    return torch.optim.AdamW(groups)


def cosine_lr(optimizer: torch.optim.Optimizer, step: int, total: int) -> None:
    """Every group's lr on the cosine from its `base_lr` at step 0 to 0 at `total` (no warmup)."""
    scale = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * scale

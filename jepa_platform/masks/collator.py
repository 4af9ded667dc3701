"""Batches clips with one set of masks per masker, reproducibly across restarts.

Each call draws from a fresh generator seeded from (seed, call count), so the masks of call k
depend on nothing else: saving ``state_dict()`` with a checkpoint and loading it on resume
makes the resumed run draw exactly the masks the uninterrupted run would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import default_collate, get_worker_info

from jepa_platform.errors import ConfigError
from jepa_platform.masks import _checks
from jepa_platform.masks.base import Masker, Masks
from jepa_platform.masks.multiblock import MultiBlockMasker


@dataclass
class MaskedBatch:
    """Clips [B, C, T, H, W], labels [B] and one ``Masks`` per masker, in the collator's order."""

    clips: Tensor
    labels: Tensor
    masks: list[Masks]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MaskedBatch:
        return MaskedBatch(
            clips=self.clips.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            masks=[m.to(device, non_blocking=non_blocking) for m in self.masks],
        )


class MaskCollator:
    """Draws one ``Masks`` per masker for each batch from a generator keyed on (seed, calls).

    In DataLoader worker processes each worker holds its own copy and counter; the worker id is
    mixed into the key so workers never repeat each other's masks, but exact resume then needs
    the collator to run in the main process (call it on the loaded batch instead of as collate_fn).
    """

    def __init__(self, maskers: Sequence[Masker], seed: int = 0) -> None:
        if len(maskers) == 0:
            raise ConfigError("maskers: need at least one masker")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed: must be an int >= 0, got {seed!r}")
        self.maskers = list(maskers)
        self.seed = seed
        self.calls = 0

    def generator(self) -> torch.Generator:
        """The generator for the next call; depends only on (seed, calls[, worker id])."""
        key = [self.seed, self.calls]
        worker = get_worker_info()
        if worker is not None:
            key.append(worker.id)
        low, high = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32).tolist()
        return torch.Generator().manual_seed((high & 0x7FFFFFFF) << 32 | low)

    def __call__(self, batch_size: int, grid: tuple[int, int, int]) -> list[Masks]:
        """One ``Masks`` per masker over the token grid (T/tubelet, H/patch, W/patch)."""
        grid = _checks.check_grid(grid)
        generator = self.generator()
        self.calls += 1
        return [masker(batch_size, grid, generator) for masker in self.maskers]

    def collate(self, samples: list[dict[str, Any]], grid: tuple[int, int, int]) -> MaskedBatch:
        """Stacks dataset samples (dicts with "clip" C×T×H×W and "label") and adds their masks."""
        batch = default_collate(samples)
        return MaskedBatch(
            clips=batch["clip"],
            labels=torch.as_tensor(batch["label"], dtype=torch.long),
            masks=self(len(samples), grid),
        )

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "calls": self.calls}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state["seed"])
        self.calls = int(state["calls"])


def default_vjepa_maskers() -> list[MultiBlockMasker]:
    """V-JEPA's pair: short-range (8 blocks at 15%) and long-range (2 at 70%), all frames."""
    return [
        MultiBlockMasker(num_blocks=8, spatial_scale=(0.15, 0.15), aspect_ratio=(0.75, 1.5)),
        MultiBlockMasker(num_blocks=2, spatial_scale=(0.7, 0.7), aspect_ratio=(0.75, 1.5)),
    ]

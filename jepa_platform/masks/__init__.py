"""Maskers decide which video tokens the student sees (context) and which it predicts (targets)."""

from jepa_platform.masks.base import (
    TRUNCATIONS,
    Masker,
    Masks,
    Truncation,
    masks_from_masked,
    truncate_to_batch_min,
)
from jepa_platform.masks.collator import MaskCollator, MaskedBatch, default_vjepa_maskers
from jepa_platform.masks.multiblock import MultiBlockMasker
from jepa_platform.masks.random import RandomMasker
from jepa_platform.masks.tube import TubeMasker

__all__ = [
    "TRUNCATIONS",
    "MaskCollator",
    "MaskedBatch",
    "Masker",
    "Masks",
    "MultiBlockMasker",
    "RandomMasker",
    "Truncation",
    "TubeMasker",
    "default_vjepa_maskers",
    "masks_from_masked",
    "truncate_to_batch_min",
]

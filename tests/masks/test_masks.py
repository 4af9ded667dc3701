"""Behaviour of the maskers and the mask collator (jepa_platform.masks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jepa_platform.errors import ConfigError
from jepa_platform.masks import (
    MaskCollator,
    MaskedBatch,
    Masks,
    MultiBlockMasker,
    RandomMasker,
    TubeMasker,
    default_vjepa_maskers,
    truncate_to_batch_min,
)

DEFAULT_GRID = (8, 14, 14)  # 16 frames / tubelet 2, 224 px / patch 16
SMALL_GRID = (2, 6, 5)  # non-square, so a swapped H/W shows up
SHORT, LONG = default_vjepa_maskers()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def time_of(index: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    return index // (grid[1] * grid[2])


def assert_consistent(masks: Masks, batch_size: int, grid: tuple[int, int, int]) -> None:
    """The invariants every masker's output must hold."""
    n = math.prod(grid)
    masked = masks.masked
    assert masked.dtype == torch.bool and masked.shape == (batch_size, n)
    assert masks.context.dtype == torch.long and masks.targets.dtype == torch.long
    assert masks.context.shape[0] == masks.targets.shape[0] == batch_size
    for idx in (masks.context, masks.targets):
        assert ((idx >= 0) & (idx < n)).all()
        assert (idx[:, 1:] > idx[:, :-1]).all(), "rows must be sorted and free of repeats"
    assert masked.gather(1, masks.targets).all(), "every target is masked"
    assert not masked.gather(1, masks.context).any(), "no context token is masked (so ctx ∩ tgt = ∅)"
    # Truncation only cuts down to the batch minimum, never further.
    assert masks.context.shape[1] == int((~masked).sum(1).min()) > 0
    assert masks.targets.shape[1] == int(masked.sum(1).min()) > 0
    in_context = torch.zeros_like(masked).scatter_(1, masks.context, True)
    in_targets = torch.zeros_like(masked).scatter_(1, masks.targets, True)
    assert torch.equal(in_context | in_targets | masks.dropped(), torch.ones_like(masked))
    assert not (masks.dropped() & (in_context | in_targets)).any()


MASKERS = {
    "short_range": SHORT,
    "long_range": LONG,
    "short_range_prefix": MultiBlockMasker(num_blocks=8, spatial_scale=(0.15, 0.15), truncate="prefix"),
    "partial_duration": MultiBlockMasker(num_blocks=3, spatial_scale=(0.1, 0.4), temporal_scale=(0.3, 0.7)),
    "tube": TubeMasker(0.75),
    "random": RandomMasker(0.6),
}


@pytest.mark.parametrize("grid", [DEFAULT_GRID, SMALL_GRID], ids=["8x14x14", "2x6x5"])
@pytest.mark.parametrize("name", list(MASKERS))
def test_masks_are_consistent_index_sets(name: str, grid: tuple[int, int, int]) -> None:
    g = gen(1)
    for _ in range(5):
        assert_consistent(MASKERS[name](8, grid, g), 8, grid)


def expected_masked_fraction(
    masker: MultiBlockMasker, grid: tuple[int, int, int], steps: int = 2001
) -> float:
    """Exact mean masked fraction for full-duration blocks, ignoring the (rare) empty-context redraws.

    A cell is covered by one block at a uniform position with probability (#tops covering its row
    / #tops) * (#lefts covering its column / #lefts); K independent blocks miss it with (1-p)^K.
    Averaged over a fine grid of aspect ratios.
    """
    _, height, width = grid
    (s, _), (lo, hi) = masker.spatial_scale, masker.aspect_ratio
    n = int(height * width * s)

    def cover(length: int, extent: int) -> np.ndarray:
        starts = np.arange(length - extent + 1)[:, None]
        return ((starts <= np.arange(length)) & (np.arange(length) < starts + extent)).mean(0)

    total = 0.0
    for ratio in np.linspace(lo, hi, steps):
        h = min(max(round(math.sqrt(n * ratio)), 1), height)
        w = min(max(round(math.sqrt(n / ratio)), 1), width)
        p = np.outer(cover(height, h), cover(width, w))
        total += float((1 - (1 - p) ** masker.num_blocks).mean())
    return total / steps


@pytest.mark.parametrize(
    ("masker", "band"),
    [(SHORT, (0.58, 0.68)), (LONG, (0.77, 0.86))],
    ids=["short_range", "long_range"],
)
def test_vjepa_masked_fraction_matches_block_geometry(
    masker: MultiBlockMasker, band: tuple[float, float]
) -> None:
    # The official code gives ~0.63 (short) and ~0.81 (long) on 8x14x14, below the paper's "~90%".
    g = gen(2)
    fraction = torch.cat([masker(8, DEFAULT_GRID, g).masked.float().mean(1) for _ in range(100)]).mean()
    assert band[0] < fraction < band[1]
    assert abs(fraction.item() - expected_masked_fraction(masker, DEFAULT_GRID)) < 0.015


def test_block_size_is_sampled_once_per_batch() -> None:
    masker = MultiBlockMasker(
        num_blocks=1, spatial_scale=(0.1, 0.6), temporal_scale=(0.25, 1.0), aspect_ratio=(0.5, 2.0)
    )
    sizes = set()
    g = gen(3)
    for _ in range(30):
        masked = masker(8, DEFAULT_GRID, g).masked.view(8, *DEFAULT_GRID)
        boxes = set()
        for sample in masked:
            t, h, w = (sample.any(dim=d).nonzero() for d in ((1, 2), (0, 2), (0, 1)))
            box = (len(t), len(h), len(w))
            assert sample.sum() == math.prod(box), "one block masks a solid box"
            boxes.add(box)
        assert len(boxes) == 1, f"samples of one batch got different block sizes: {boxes}"
        sizes |= boxes
    assert len(sizes) > 5, "block size should vary between batches"


def test_block_height_follows_aspect_ratio() -> None:
    # n = 64 tokens per frame at aspect ratio 4 -> h = sqrt(64*4) = 16 rows, w = sqrt(64/4) = 4 columns.
    masker = MultiBlockMasker(num_blocks=1, spatial_scale=(0.25, 0.25), aspect_ratio=(4.0, 4.0))
    masked = masker(2, (1, 16, 16), gen()).masked.view(2, 16, 16)
    assert masked.any(dim=2).sum(1).tolist() == [16, 16]
    assert masked.any(dim=1).sum(1).tolist() == [4, 4]


def kept_fraction_per_time_step(masker: MultiBlockMasker, batches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per time step: kept / eligible, for context (eligible = unmasked) and targets (= masked)."""
    t_len = DEFAULT_GRID[0]
    kept_c, kept_t, elig_c, elig_t = (torch.zeros(t_len) for _ in range(4))
    g = gen(4)
    for _ in range(batches):
        m = masker(8, DEFAULT_GRID, g)
        kept_c += torch.bincount(time_of(m.context, DEFAULT_GRID).flatten(), minlength=t_len)
        kept_t += torch.bincount(time_of(m.targets, DEFAULT_GRID).flatten(), minlength=t_len)
        per_time = m.masked.view(8, t_len, -1)
        elig_c += (~per_time).sum((0, 2))
        elig_t += per_time.sum((0, 2))
    return kept_c / elig_c, kept_t / elig_t


@pytest.mark.parametrize("num_blocks,scale", [(8, 0.15), (2, 0.7)], ids=["short_range", "long_range"])
def test_random_truncation_has_no_time_bias(num_blocks: int, scale: float) -> None:
    masker = MultiBlockMasker(num_blocks=num_blocks, spatial_scale=(scale, scale), truncate="random")
    for kept in kept_fraction_per_time_step(masker, batches=60):
        assert kept.max() < 1.0, "truncation must actually drop tokens for this test to mean anything"
        assert kept.max() / kept.min() < 1.05


def test_prefix_truncation_starves_the_last_frames() -> None:
    masker = MultiBlockMasker(num_blocks=8, spatial_scale=(0.15, 0.15), truncate="prefix")
    for kept in kept_fraction_per_time_step(masker, batches=60):
        assert kept[0] > 0.99, "prefix keeps the first frame whole"
        assert kept[-1] < 0.5 * kept[0]
        assert (kept[1:] <= kept[:-1] + 1e-6).all(), "kept fraction never rises with time"


def test_truncation_modes_keep_the_batch_minimum() -> None:
    selected = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 0, 0]], dtype=torch.bool)
    prefix = truncate_to_batch_min(selected, "prefix", gen())
    assert prefix.tolist() == [[0, 1], [1, 2]]
    for seed in range(20):
        rows = truncate_to_batch_min(selected, "random", gen(seed))
        assert rows[1].tolist() == [1, 2]
        assert set(rows[0].tolist()) <= {0, 1, 3, 4} and rows[0, 0] < rows[0, 1]
    drawn = {tuple(truncate_to_batch_min(selected, "random", gen(s))[0].tolist()) for s in range(40)}
    assert len(drawn) == 6, "random keeps every 2-subset of the 4 candidates"


def test_empty_context_is_redrawn() -> None:
    # Each block is a whole row of a 2x2 frame: half the first draws would mask everything.
    masker = MultiBlockMasker(num_blocks=2, spatial_scale=(0.5, 0.5), aspect_ratio=(0.5, 0.5))
    g = gen(5)
    for _ in range(20):
        masks = masker(8, (1, 2, 2), g)
        assert masks.masked.sum(1).tolist() == [2] * 8
        assert masks.context.shape == (8, 2)


def test_mask_that_always_covers_the_grid_is_a_config_error() -> None:
    masker = MultiBlockMasker(num_blocks=1, spatial_scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0), max_attempts=3)
    with pytest.raises(ConfigError, match=r"num_blocks/spatial_scale.*3 attempts"):
        masker(4, (2, 3, 3), gen())


@pytest.mark.parametrize("name", list(MASKERS))
def test_same_seed_same_masks(name: str) -> None:
    a, b, c = (MASKERS[name](4, DEFAULT_GRID, gen(seed)) for seed in (7, 7, 8))
    assert torch.equal(a.masked, b.masked) and torch.equal(a.context, b.context)
    assert torch.equal(a.targets, b.targets)
    assert not torch.equal(a.masked, c.masked)


def draws(collator: MaskCollator, n: int) -> list[list[Masks]]:
    return [collator(8, DEFAULT_GRID) for _ in range(n)]


def assert_same_draws(x: list[list[Masks]], y: list[list[Masks]]) -> None:
    assert len(x) == len(y)
    for batch_x, batch_y in zip(x, y, strict=True):
        for mx, my in zip(batch_x, batch_y, strict=True):
            assert torch.equal(mx.masked, my.masked)
            assert torch.equal(mx.context, my.context) and torch.equal(mx.targets, my.targets)


def test_resumed_collator_draws_the_same_masks() -> None:
    uninterrupted = MaskCollator(default_vjepa_maskers(), seed=3)
    draws(uninterrupted, 3)
    state = uninterrupted.state_dict()
    assert state == {"seed": 3, "calls": 3}
    expected = draws(uninterrupted, 2)

    resumed = MaskCollator(default_vjepa_maskers(), seed=0)
    resumed.load_state_dict(state)
    assert_same_draws(draws(resumed, 2), expected)
    assert not torch.equal(expected[0][0].masked, expected[1][0].masked), "each call draws new masks"


def test_collator_seed_changes_masks() -> None:
    a = MaskCollator(default_vjepa_maskers(), seed=1)(8, DEFAULT_GRID)
    b = MaskCollator(default_vjepa_maskers(), seed=2)(8, DEFAULT_GRID)
    assert not torch.equal(a[0].masked, b[0].masked)


def test_collate_stacks_clips_and_adds_one_mask_per_masker() -> None:
    collator = MaskCollator(default_vjepa_maskers())
    samples = [{"clip": torch.full((3, 4, 32, 32), float(i)), "label": i} for i in range(5)]
    batch = collator.collate(samples, grid=(2, 2, 2))
    assert isinstance(batch, MaskedBatch)
    assert batch.clips.shape == (5, 3, 4, 32, 32) and batch.clips[3].eq(3).all()
    assert batch.labels.dtype == torch.long and batch.labels.tolist() == [0, 1, 2, 3, 4]
    assert len(batch.masks) == 2
    for masks in batch.masks:
        assert_consistent(masks, 5, (2, 2, 2))
    assert collator.state_dict()["calls"] == 1


def test_tube_masks_the_same_positions_in_every_frame() -> None:
    grid = (4, 6, 5)
    masks = TubeMasker(ratio=0.5)(8, grid, gen())
    per_frame = masks.masked.view(8, 4, 30)
    assert (per_frame == per_frame[:, :1]).all()
    assert per_frame[:, 0].sum(1).tolist() == [15] * 8
    assert masks.targets.shape == (8, 60) and masks.context.shape == (8, 60)
    assert not masks.dropped().any()


def test_random_masker_masks_the_exact_ratio() -> None:
    masks = RandomMasker(ratio=0.9)(8, DEFAULT_GRID, gen())
    count = int(0.9 * math.prod(DEFAULT_GRID))
    assert masks.masked.sum(1).tolist() == [count] * 8
    assert masks.targets.shape == (8, count)
    assert not masks.dropped().any()
    assert masks.masked.view(8, 8, -1).sum(2).min() > 0, "spread over time, not a contiguous run"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: MultiBlockMasker(spatial_scale=(0.0, 1.2)), "spatial_scale"),
        (lambda: MultiBlockMasker(spatial_scale=(0.5, 0.2)), "spatial_scale"),
        (lambda: MultiBlockMasker(spatial_scale=0.5), "spatial_scale"),
        (lambda: MultiBlockMasker(temporal_scale=(0.5, 1.5)), "temporal_scale"),
        (lambda: MultiBlockMasker(num_blocks=0), "num_blocks"),
        (lambda: MultiBlockMasker(aspect_ratio=(0.0, 1.0)), "aspect_ratio"),
        (lambda: MultiBlockMasker(truncate="suffix"), "truncate"),
        (lambda: MultiBlockMasker(max_attempts=0), "max_attempts"),
        (lambda: TubeMasker(ratio=1.0), "ratio"),
        (lambda: RandomMasker(ratio=0.0), "ratio"),
        (lambda: MaskCollator([]), "maskers"),
        (lambda: MaskCollator([SHORT], seed=-1), "seed"),
        (lambda: SHORT(8, (8, 14), gen()), "grid"),
        (lambda: RandomMasker(ratio=0.5)(8, (1, 1, 1), gen()), "ratio"),
    ],
)
def test_bad_config_raises_config_error_naming_the_field(build, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        build()


def test_scale_error_states_the_allowed_range() -> None:
    with pytest.raises(ConfigError, match=r"each value must be in \(0, 1\], got \(0\.0, 1\.2\)"):
        MultiBlockMasker(spatial_scale=(0.0, 1.2))


def test_yaml_lists_are_accepted_as_ranges() -> None:
    assert MultiBlockMasker(spatial_scale=[0.15, 0.15], aspect_ratio=[0.75, 1.5]) == SHORT

"""The mask picture behind `jepa masks` (jepa_platform.masks.picture)."""

from __future__ import annotations

import math

import matplotlib.image
import pytest

from jepa_platform.errors import ConfigError
from jepa_platform.masks import MaskCollator, RandomMasker, TubeMasker, default_vjepa_maskers
from jepa_platform.masks.picture import MaskStats, mask_picture
from jepa_platform.spec import validate_spec
from jepa_platform.train.build import spec_mask_picture

DEFAULT_GRID = (8, 14, 14)  # 16 frames / tubelet 2, 224 px / patch 16
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def default_pair() -> list[tuple[str, object]]:
    short, long = default_vjepa_maskers()
    return [("short-range", short), ("long-range", long)]


def test_picture_of_the_default_pair_is_a_readable_png(tmp_path):
    out = tmp_path / "masks.png"
    mask_picture(default_pair(), DEFAULT_GRID, out, samples=3, batch_size=8)
    assert out.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(out)
    height, width, channels = image.shape
    # 2 maskers x 3 samples rows of 8 frames: legible panels, yet small enough to open anywhere.
    assert 600 <= width <= 1600 and 600 <= height <= 1600 and channels in (3, 4)
    assert image[..., :3].std() > 0.1  # something was drawn, not a blank canvas


def test_random_masker_stats_are_exact_and_drop_nothing(tmp_path):
    (stats,) = mask_picture([("random", RandomMasker(ratio=0.75))], (2, 6, 5), tmp_path / "r.png", samples=2)
    assert stats == MaskStats("random", context_ratio=0.25, target_ratio=0.75, dropped_ratio=0.0)


def test_multiblock_stats_are_those_of_training_first_batch(tmp_path):
    stats = mask_picture(default_pair(), DEFAULT_GRID, tmp_path / "m.png", samples=1, batch_size=8, seed=3)
    # Same seed, same batch: the collator the training loop uses draws the very masks pictured.
    drawn = MaskCollator([m for _, m in default_pair()], seed=3)(8, DEFAULT_GRID)
    n = math.prod(DEFAULT_GRID)
    for st, masks in zip(stats, drawn, strict=True):
        assert st.context_ratio == pytest.approx(masks.context.shape[1] / n)
        assert st.target_ratio == pytest.approx(masks.targets.shape[1] / n)
        assert st.dropped_ratio == pytest.approx(masks.dropped().float().mean().item())
        assert st.context_ratio + st.target_ratio + st.dropped_ratio == pytest.approx(1.0)
        assert st.dropped_ratio > 0  # eight samples' block unions differ, so truncation cuts some
    assert [st.name for st in stats] == ["short-range", "long-range"]


def test_spec_picture_uses_the_spec_grid_batch_seed_and_names(tmp_path):
    spec = validate_spec({"name": "x", "data": {"train": "x.csv", "frames": 16, "resolution": 224}})
    out = tmp_path / "spec.png"
    stats = spec_mask_picture(spec, out, samples=1)
    assert out.read_bytes()[:8] == PNG_MAGIC
    # Named by the params that tell the two apart; the shared defaults would only lengthen the names.
    assert [st.name for st in stats] == [
        "masks[0] multiblock (num_blocks=8, spatial_scale=0.15)",
        "masks[1] multiblock (num_blocks=2, spatial_scale=0.7)",
    ]
    expected = mask_picture(default_pair(), DEFAULT_GRID, tmp_path / "same.png", samples=1,
                            batch_size=spec.optim.batch_size, seed=spec.optim.seed)
    assert [(s.context_ratio, s.target_ratio, s.dropped_ratio) for s in stats] == [
        (s.context_ratio, s.target_ratio, s.dropped_ratio) for s in expected
    ]


def test_spec_picture_reads_patch_and_tubelet_from_the_backbone(tmp_path):
    spec = validate_spec({
        "name": "x",
        "data": {"train": "x.csv", "frames": 8, "resolution": 96},
        "backbone": {"kind": "vit", "params": {"size": "tiny", "patch_size": 32, "tubelet_size": 4}},
        "masks": [{"kind": "tube", "params": {"ratio": 0.5}}],
        "optim": {"batch_size": 2, "steps": 10, "warmup_steps": 0},
    })
    (stats,) = spec_mask_picture(spec, tmp_path / "tube.png", samples=2)
    # Grid (2, 3, 3): a tube of int(0.5 * 9) = 4 of 9 positions; the default 2x16 grid (4, 6, 6) gives 1/2.
    assert stats.target_ratio == 4 / 9 and stats.dropped_ratio == 0.0
    assert stats.name == "masks[0] tube (ratio=0.5)"


def test_samples_beyond_the_batch_show_the_whole_batch(tmp_path):
    tube = [("tube", TubeMasker(0.5))]
    mask_picture(tube, (2, 4, 4), tmp_path / "all.png", samples=2, batch_size=2)
    mask_picture(tube, (2, 4, 4), tmp_path / "more.png", samples=9, batch_size=2)
    shape = matplotlib.image.imread(tmp_path / "all.png").shape
    assert matplotlib.image.imread(tmp_path / "more.png").shape == shape
    with pytest.raises(ConfigError, match="samples"):
        mask_picture(tube, (2, 4, 4), tmp_path / "none.png", samples=0)
    assert not (tmp_path / "none.png").exists()

"""The example plugin's own tests: what a plugin author runs with `pytest` in this folder."""

from __future__ import annotations

import torch
from jepa_platform.plugins import registry
from jepa_platform.plugins.testing import contract_check_all

import jepa_example_plugin.plugin
from jepa_example_plugin.factorized_vit import FactorizedVideoViT
from jepa_example_plugin.future import FuturePredictionMasker


def test_components_keep_the_platform_contract():
    results = contract_check_all(provider="example")
    assert {(r.family, r.name, r.skipped) for r in results} == {
        ("backbones", "factorized_vit", None),
        ("maskers", "future", None),
    }


def test_hooks_can_be_tried_before_the_package_is_installed(inline_plugin):
    inline_plugin(jepa_example_plugin.plugin, name="dev", load_entry_points=False)
    assert registry("maskers").get("future").provider == "dev"


def test_future_split_is_drawn_once_per_batch_within_the_fraction_range():
    masker = FuturePredictionMasker(context_fraction=(0.25, 0.75))
    splits = set()
    for seed in range(50):
        masks = masker(3, (8, 2, 2), torch.Generator().manual_seed(seed))
        steps = (masks.context // 4).max(dim=1).values + 1
        assert (steps == steps[0]).all()
        splits.add(int(steps[0]))
    assert splits == {2, 3, 4, 5, 6}


def test_tokens_sharing_neither_time_step_nor_position_never_interact():
    vit = FactorizedVideoViT(img_size=32, num_frames=4, embed_dim=32, depth=2, num_heads=2).eval()
    clips = torch.randn(1, 3, 4, 32, 32)
    # Grid (2, 2, 2): token 0 is (t0, p0), token 7 is (t1, p3), token 4 is (t1, p0).
    alone = vit(clips, keep=torch.tensor([[0]]))
    unrelated = vit(clips, keep=torch.tensor([[0, 7]]))[:, :1]
    same_position = vit(clips, keep=torch.tensor([[0, 4]]))[:, :1]
    assert torch.allclose(alone, unrelated, atol=1e-6)
    assert not torch.allclose(alone, same_position, atol=1e-4)

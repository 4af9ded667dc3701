"""Probes and the timm image backbone over video: what the frozen evaluation builds on."""

from __future__ import annotations

import pytest
import torch

from jepa_platform.errors import ConfigError
from jepa_platform.models.plugin import (
    AttentiveProbeParams,
    LinearProbeParams,
    build_attentive_probe,
    build_linear_probe,
)
from jepa_platform.models.probes import AttentiveProbe, LinearProbe, default_heads
from jepa_platform.models.timm_video import TimmVideoBackbone
from jepa_platform.plugins.registries import Component
from jepa_platform.plugins.testing import check_component

DIM, CLASSES = 32, 5


def tokens(batch: int = 3, n: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, n, DIM, generator=torch.Generator().manual_seed(seed))


PROBES = {
    "attentive": lambda: AttentiveProbe(DIM, CLASSES, num_heads=4),
    "attentive-2-queries-blocks-before": lambda: AttentiveProbe(DIM, CLASSES, num_queries=2, num_heads=4, depth=2),
    "attentive-blocks-after": lambda: AttentiveProbe(DIM, CLASSES, num_heads=4, depth=1, placement="after"),
    "linear-batchnorm": lambda: LinearProbe(DIM, CLASSES, norm="batchnorm"),
    "linear-layernorm": lambda: LinearProbe(DIM, CLASSES, norm="layernorm"),
}


@pytest.mark.parametrize("name", list(PROBES))
def test_pooled_output_ignores_token_order_but_not_token_content(name):
    torch.manual_seed(0)
    probe = PROBES[name]().eval()
    x = tokens()
    with torch.no_grad():
        for p in probe.parameters():  # trained-looking weights, so no term is zero by construction
            p.add_(torch.randn_like(p) * 0.05)
        base = probe(x)
        shuffled = probe(x[:, torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(1))])
        changed = x.clone()
        changed[:, 3] = tokens(seed=2)[:, 3]  # one token's content (a constant shift would vanish in LayerNorm)
        assert base.shape == (3, CLASSES)
        assert torch.allclose(shuffled, base, atol=1e-5), "the probe's output depends on the token order"
        assert not torch.allclose(probe(changed), base, atol=1e-4), "the probe ignores a token's content"


def test_attentive_probe_queries_attend_to_normalised_tokens():
    """A constant shift or scale of every token's features changes nothing before the attention's LayerNorm."""
    probe = AttentiveProbe(DIM, CLASSES, num_heads=4).eval()
    x = tokens()
    with torch.no_grad():
        assert torch.allclose(probe(x * 3 + 2), probe(x), atol=1e-4)


def test_attentive_probe_needs_heads_that_divide_the_width():
    with pytest.raises(ConfigError, match="num_heads"):
        AttentiveProbe(DIM, CLASSES, num_heads=12)


def test_attentive_probe_heads_default_to_12_or_16_where_12_does_not_divide():
    assert [default_heads(d) for d in (192, 384, 768, 1024, 1280, 1408, 32)] == [12, 12, 12, 16, 16, 16, 16]
    assert AttentiveProbe(1024, CLASSES).pool.xattn.num_heads == 16


def test_probes_keep_the_probe_component_contract():
    attentive = Component("attentive", "probes", build_attentive_probe, AttentiveProbeParams, "test")
    linear = Component("linear", "probes", build_linear_probe, LinearProbeParams, "test")
    assert check_component(attentive) is None  # default params
    assert check_component(attentive, params={"num_heads": 4, "depth": 1, "num_queries": 2}) is None
    assert check_component(linear) is None


# -- timm image models over video ---------------------------------------------------------------------------
SHALLOW = {"depth": 2}  # vit_tiny's width and patches, two blocks: fast to build
@pytest.fixture(scope="module")
def vit_tiny() -> TimmVideoBackbone:
    torch.manual_seed(0)
    return TimmVideoBackbone("vit_tiny_patch16_224", img_size=32, num_frames=4, model_kwargs=SHALLOW).eval()


def test_timm_backbone_gives_each_frames_patch_tokens_in_time_order(vit_tiny):
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        out = vit_tiny(clips)
        per_frame = vit_tiny.model.forward_features(clips[:, :, 2])[:, vit_tiny.num_prefix_tokens :]
        image = vit_tiny(clips[:, :, 0])
    assert vit_tiny.grid == (4, 2, 2) and vit_tiny.token_grid(clips.shape) == (4, 2, 2)
    assert out.shape == (2, 4 * 2 * 2, 192)  # patch16 at 32 pixels: 4 tokens per frame, class token dropped
    assert torch.allclose(out[:, 8:12], per_frame, atol=1e-5)
    assert torch.allclose(image, out[:, :4], atol=1e-5)  # an image is one frame


def test_timm_backbone_returns_intermediate_layers(vit_tiny):
    clips = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        first, last = vit_tiny(clips, return_layers=[0, -1])
    assert first.shape == last.shape == (1, 8, 192)
    assert not torch.allclose(first, last)


def test_timm_backbone_loads_weights_from_a_local_file_without_downloading(vit_tiny, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in vit_tiny.model.state_dict().items()}
    torch.save({"model": state | {"head.weight": torch.zeros(10, 192)}}, tmp_path / "w.pt")  # head dropped
    save_file(state, str(tmp_path / "w.safetensors"))
    clips = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        expected = vit_tiny(clips)
        for name in ("w.pt", "w.safetensors"):
            loaded = TimmVideoBackbone("vit_tiny_patch16_224", img_size=32, num_frames=2, weights=str(tmp_path / name),
                                       model_kwargs=SHALLOW)
            assert torch.allclose(loaded.eval()(clips), expected, atol=1e-6)
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="do not fit"):
        TimmVideoBackbone("vit_tiny_patch16_224", img_size=32, num_frames=2, weights=str(tmp_path / "other.pt"),
                          model_kwargs=SHALLOW)


def test_timm_backbone_refuses_token_subsets(vit_tiny):
    with pytest.raises(ConfigError, match="keep"):
        vit_tiny(torch.randn(1, 3, 2, 32, 32), keep=torch.zeros(1, 2, dtype=torch.long))

import pytest
import torch

from jepa_platform.errors import ConfigError
from jepa_platform.models.pos_embed import resample_pos_embed, sincos_3d
from jepa_platform.models.predictor import Predictor
from jepa_platform.models.vit import VIT_SIZES, video_vit


def tiny(**kw):
    kw = {"img_size": 32, "num_frames": 4, "patch_size": 8, "depth": 2, **kw}
    return video_vit("tiny", **kw).eval()


def test_vit_sizes_have_the_usual_width_depth_heads():
    assert {k: (v.embed_dim, v.depth, v.num_heads, round(v.mlp_ratio, 4)) for k, v in VIT_SIZES.items()} == {
        "tiny": (192, 12, 3, 4),
        "small": (384, 12, 6, 4),
        "base": (768, 12, 12, 4),
        "large": (1024, 24, 16, 4),
        "huge": (1280, 32, 16, 4),
        "giant": (1408, 40, 16, 4.3636),  # 48/11: an MLP 6144 wide
        "giant_xformers": (1408, 40, 22, 4.3636),  # V-JEPA 2's ViT-g
        "gigantic_xformers": (1664, 48, 26, 4.9231),  # 64/13: 8192 wide
    }


def test_vit_small_has_the_reference_parameter_count():
    # ViT-S/16 with a tubelet-2 Conv3d patch embedding: 21.9M parameters (V-JEPA reports the same).
    n = sum(p.numel() for p in video_vit("small").parameters())
    assert abs(n - 21.88e6) < 0.05e6


def test_forward_returns_one_feature_per_token_and_only_kept_tokens_with_keep():
    model = tiny()
    clips = torch.randn(2, 3, 4, 32, 32)
    assert model.grid == (2, 4, 4)
    assert model(clips).shape == (2, 32, 192)
    keep = torch.tensor([[0, 3, 5], [1, 2, 31]])
    assert model(clips, keep=keep).shape == (2, 3, 192)


def test_keep_gives_the_same_features_as_running_on_those_tokens_alone():
    model = tiny()
    clips = torch.randn(1, 3, 4, 32, 32)
    keep = torch.tensor([[2, 7, 9, 30]])
    tokens = model.embed(clips)[0][:, keep[0]]
    torch.testing.assert_close(model(clips, keep=keep), model.encode(tokens))


def test_a_list_of_keeps_runs_each_mask_separately():
    model = tiny()
    clips = torch.randn(2, 3, 4, 32, 32)
    keeps = [torch.tensor([[0, 1], [2, 3]]), torch.tensor([[4, 5, 6], [7, 8, 9]])]
    outs = model(clips, keep=keeps)
    for out, keep in zip(outs, keeps, strict=True):
        torch.testing.assert_close(out, model(clips, keep=keep))


def test_intermediate_layers_are_returned_normed_and_last_equals_forward():
    model = tiny()
    clips = torch.randn(1, 3, 4, 32, 32)
    first, last = model(clips, return_layers=[0, -1])
    torch.testing.assert_close(last, model(clips))
    assert not torch.allclose(first, last)
    torch.testing.assert_close(first.mean(-1), torch.zeros_like(first.mean(-1)), atol=1e-4, rtol=0)


def test_image_is_a_still_clip():
    model = tiny()
    image = torch.randn(2, 3, 32, 32)
    still = image.unsqueeze(2).expand(-1, -1, 2, -1, -1)
    torch.testing.assert_close(model(image), model(still))


def test_other_clip_sizes_interpolate_positions():
    model = tiny()
    assert model(torch.randn(1, 3, 8, 48, 48)).shape == (1, 4 * 6 * 6, 192)
    pos = sincos_3d(192, (2, 4, 4)).unsqueeze(0)
    torch.testing.assert_close(resample_pos_embed(pos, (2, 4, 4), (2, 4, 4)), pos)
    assert resample_pos_embed(pos, (2, 4, 4), (4, 6, 6)).shape == (1, 144, 192)


def test_positions_are_distinct_per_token():
    pos = sincos_3d(192, (8, 14, 14))
    assert pos.shape == (8 * 14 * 14, 192)
    assert torch.cdist(pos, pos).add(torch.eye(len(pos)) * 10).min() > 1e-3


@pytest.mark.parametrize("options", [{}, {"pos_embed": "rope", "mlp": "swiglu"}])
def test_activation_checkpointing_gives_same_gradients(options):
    torch.manual_seed(0)
    a = tiny(**options)
    b = tiny(activation_checkpointing=True, **options)
    b.load_state_dict(a.state_dict())
    clips = torch.randn(1, 3, 4, 32, 32)
    keep = torch.tensor([[0, 3, 5, 9, 12, 30]])
    a(clips, keep=keep).square().mean().backward()
    b(clips, keep=keep).square().mean().backward()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad)


def test_v_jepa_2_sizes_have_their_published_parameter_counts():
    """Counted on the meta device: ViT-L 304M, ViT-g (giant_xformers) 1.01B, 2.1's ViT-G 1.84B; RoPE adds none."""
    with torch.device("meta"):
        counts = {size: sum(p.numel() for p in video_vit(size, img_size=256, num_frames=16, pos_embed="rope")
                            .parameters()) for size in ("large", "giant_xformers", "gigantic_xformers")}
    assert {k: round(v / 1e6) for k, v in counts.items()} == {
        "large": 304, "giant_xformers": 1012, "gigantic_xformers": 1844}


def test_a_rope_encoder_takes_clips_of_any_grid_without_position_tensors():
    model = tiny(pos_embed="rope")
    assert "pos_embed" not in model.state_dict()
    assert model(torch.randn(1, 3, 6, 48, 40)).shape == (1, 3 * 6 * 5, 192)  # grid (3, 6, 5), not (2, 4, 4)


def test_predictor_projects_targets_to_the_teacher_width():
    pred = Predictor(192, (2, 4, 4), predictor_embed_dim=64, depth=2, num_heads=4, target_dim=96)
    ctx = torch.randn(2, 5, 192)
    out = pred(ctx, torch.arange(5).expand(2, 5), torch.arange(5, 12).expand(2, 7), mask_index=1)
    assert out.shape == (2, 7, 96)
    assert all(torch.count_nonzero(t) == 0 for t in pred.mask_tokens)


def test_predictor_output_depends_on_mask_type_and_target_position():
    pred = Predictor(192, (2, 4, 4), predictor_embed_dim=64, depth=1, num_heads=4).eval()
    with torch.no_grad():
        pred.mask_tokens[1].normal_()
    ctx, ci = torch.randn(1, 5, 192), torch.arange(5)[None]
    a = pred(ctx, ci, torch.tensor([[10, 11]]), mask_index=0)
    b = pred(ctx, ci, torch.tensor([[10, 11]]), mask_index=1)
    c = pred(ctx, ci, torch.tensor([[11, 10]]), mask_index=0)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a.flip(1), c)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"img_size": 30}, "resolution"), ({"num_frames": 5}, "frames"), ({"embed_dim": 100}, "embed_dim")],
)
def test_impossible_shapes_fail_at_build_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        tiny(**kwargs)


def test_unknown_size_is_refused():
    with pytest.raises(ConfigError, match="size"):
        video_vit("enormous")

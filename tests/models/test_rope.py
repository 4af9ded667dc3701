"""3D RoPE against the independent V-JEPA 2 implementation in `transformers` (built from a small config:
no weights are downloaded)."""

import pytest
import torch

from jepa_platform.models.rope import grid_positions, rope_part_dim, rotate_3d

modeling = pytest.importorskip("transformers.models.vjepa2.modeling_vjepa2")
VJEPA2Config = pytest.importorskip("transformers").VJEPA2Config


@pytest.mark.parametrize("hidden,heads", [(96, 2), (80, 2), (64, 4)])  # head dims 48, 40 (4 left as is), 16
def test_rotation_matches_transformers_vjepa2_on_all_tokens_and_on_a_masked_subset(hidden, heads):
    config = VJEPA2Config(hidden_size=hidden, num_attention_heads=heads, crop_size=64, patch_size=16,
                          frames_per_clip=8, tubelet_size=2)
    attention = modeling.VJEPA2RopeAttention(config, hidden_size=hidden, num_attention_heads=heads)
    grid = (4, 4, 4)  # frames_per_clip / tubelet_size, crop_size / patch_size (twice)
    head_dim = hidden // heads
    generator = torch.Generator().manual_seed(0)

    qk = torch.randn(2, heads, 64, head_dim, generator=generator)
    tokens = torch.zeros(2, 64, hidden)
    theirs = attention.apply_rotary_embeddings(qk, attention.get_position_ids(tokens))
    ours = rotate_3d(qk, grid_positions(torch.arange(64), grid))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)

    kept = torch.stack([torch.randperm(64, generator=generator)[:20].sort().values for _ in range(2)])  # [B, 20]
    qk = torch.randn(2, heads, 20, head_dim, generator=generator)
    theirs = attention.apply_rotary_embeddings(qk, attention.get_position_ids(tokens[:, :20], masks=kept))
    ours = rotate_3d(qk, [p.unsqueeze(1) for p in grid_positions(kept, grid)])  # true positions, every head
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert 3 * rope_part_dim(head_dim) <= head_dim


def test_positions_follow_the_grid_the_clip_has_not_a_configured_one():
    t, h, w = grid_positions(torch.arange(2 * 3 * 5), (2, 3, 5))
    assert (t.max(), h.max(), w.max()) == (1, 2, 4)
    assert torch.equal(t * 15 + h * 5 + w, torch.arange(30))
    qk = torch.randn(1, 1, 30, 48)
    at_origin = rotate_3d(qk[..., :1, :], (torch.zeros(1),) * 3)
    torch.testing.assert_close(at_origin, qk[..., :1, :])  # position 0 is no rotation

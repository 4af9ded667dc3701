"""V-JEPA 2 encoders and predictors against the independent implementation in `transformers` (small,
randomly initialised `VJEPA2Model`s built from a `VJEPA2Config`: nothing is downloaded), and the weight
formats in and out: Hugging Face folders, official-layout `.pt` files and our safetensors export."""

import pytest
import torch

from jepa_platform import load_encoder
from jepa_platform.errors import ConfigError
from jepa_platform.weights import hf
from jepa_platform.weights.export import export_encoder
from jepa_platform.weights.load import encoder_source, load_predictor

transformers = pytest.importorskip("transformers")
ATOL = 1e-5


def small_config(**kw):
    config = transformers.VJEPA2Config(
        hidden_size=128, num_attention_heads=2, num_hidden_layers=2, crop_size=32, patch_size=8, frames_per_clip=4,
        tubelet_size=2, pred_hidden_size=64, pred_num_attention_heads=2, pred_num_hidden_layers=2,
        pred_num_mask_tokens=3, **kw,
    )
    config._attn_implementation = "eager"  # the plain softmax(QK^T)V, not our SDPA: an independent path
    return config


@pytest.fixture(scope="module")
def theirs():
    torch.manual_seed(0)
    model = transformers.VJEPA2Model(small_config()).eval()
    with torch.no_grad():  # non-zero mask tokens and biases, so that a mix-up cannot hide
        for name, p in model.named_parameters():
            if name.endswith("bias") or "mask_tokens" in name:
                p.normal_(0, 0.02)
    return model


@pytest.fixture(scope="module")
def hf_folder(theirs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "vjepa2-small"
    theirs.save_pretrained(folder)
    return folder


def clips(batch=2, seed=1):
    return torch.randn(batch, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


def their_features(model, x):
    with torch.no_grad():
        return model(pixel_values_videos=x.transpose(1, 2), skip_predictor=True).last_hidden_state


def their_context_features(model, x, keep):
    """transformers' encoder layers run on the kept tokens only, each at its true position (their RoPE
    attention's `position_mask`); their VJEPA2Model itself encodes the full clip and masks afterwards."""
    encoder = model.encoder
    with torch.no_grad():
        tokens = encoder.embeddings(x.transpose(1, 2))
        tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        for layer in encoder.layer:
            tokens = layer(tokens, keep)[0]
        return encoder.layernorm(tokens)


def masks(batch=2, kept=10, seed=2):
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(32, generator=g) for _ in range(batch)])
    return order[:, :kept].sort(dim=1).values, order[:, kept:].sort(dim=1).values  # context, targets


def test_a_hugging_face_folder_loads_and_gives_their_features_on_a_clip_and_on_a_context(theirs, hf_folder):
    ours = load_encoder(str(hf_folder))
    assert not ours.training and ours.rope and not hasattr(ours, "pos_embed")
    x = clips()
    torch.testing.assert_close(ours.features(x), their_features(theirs, x), rtol=0, atol=ATOL)
    context, _ = masks()
    with torch.no_grad():
        mine = ours(x, keep=context)
    torch.testing.assert_close(mine, their_context_features(theirs, x, context), rtol=0, atol=ATOL)


def test_the_predictor_converts_and_gives_their_predictions(theirs, hf_folder):
    source = encoder_source(str(hf_folder))
    ours = load_encoder(str(hf_folder))
    predictor = load_predictor(source)
    assert predictor.rope and len(predictor.mask_tokens) == 3
    x = clips()
    context, targets = masks()
    with torch.no_grad():
        out = theirs(pixel_values_videos=x.transpose(1, 2), context_mask=[context], target_mask=[targets])
        # theirs: encoder on the full clip, masked to the context (their predictor uses mask token 1)
        mine = predictor(ours(x)[torch.arange(2)[:, None], context], context, targets, mask_index=1)
    torch.testing.assert_close(mine, out.predictor_output.last_hidden_state, rtol=0, atol=ATOL)


def test_conversion_both_ways_gives_back_identical_tensors(theirs):
    encoder, predictor = hf.from_hf(theirs.state_dict())
    back = hf.to_hf(encoder, predictor)
    state = theirs.state_dict()
    assert back.keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(back[name], tensor), name


def official_state(theirs, prefix="module.backbone."):
    """An official V-JEPA 2 training checkpoint built from the same weights: encoder, target_encoder and
    predictor under the training wrappers' prefixes, predictor tensors under the official names."""
    encoder, predictor = hf.from_hf(theirs.state_dict())
    names = {"blocks.": "predictor_blocks.", "norm.": "predictor_norm."}
    official_predictor = {}
    for name, tensor in predictor.items():
        for ours, official in names.items():
            if name.startswith(ours):
                name = official + name[len(ours):]
        official_predictor[prefix + name] = tensor
    wrapped = {prefix + k: v for k, v in encoder.items()}
    return {"encoder": {k: v + 1 for k, v in wrapped.items()}, "target_encoder": wrapped,
            "predictor": official_predictor, "epoch": 3, "opt": {}}


def test_an_official_layout_pt_loads_its_target_encoder_and_predictor(theirs, tmp_path):
    path = tmp_path / "vjepa2-small.pt"
    torch.save(official_state(theirs), path)
    ours = load_encoder(str(path))
    # heads are not in the weights: 64-channel heads (encoder) and 32-channel ones (predictor) are assumed
    assert ours.rope and ours.num_heads == 2
    x = clips()
    torch.testing.assert_close(ours.features(x), their_features(theirs, x), rtol=0, atol=ATOL)
    context, targets = masks()
    predictor = load_predictor(encoder_source(str(path)), grid=(2, 4, 4))
    with torch.no_grad():
        out = theirs(pixel_values_videos=x.transpose(1, 2), context_mask=[context], target_mask=[targets])
        mine = predictor(ours(x)[torch.arange(2)[:, None], context], context, targets, mask_index=1)
    torch.testing.assert_close(mine, out.predictor_output.last_hidden_state, rtol=0, atol=ATOL)
    online = load_encoder(str(path), key="encoder")  # the other encoder of the file
    assert not torch.equal(online.state_dict()["norm.weight"], ours.state_dict()["norm.weight"])


def test_export_to_hf_loads_in_transformers_with_our_features(hf_folder, tmp_path):
    ours = load_encoder(str(hf_folder))
    out = tmp_path / "exported"
    assert export_encoder(str(hf_folder), "hf", str(out)) == []
    again = transformers.VJEPA2Model.from_pretrained(out, attn_implementation="eager").eval()
    x = clips(seed=5)
    torch.testing.assert_close(their_features(again, x), ours.features(x), rtol=0, atol=ATOL)


def test_export_import_export_gives_identical_tensors_in_both_formats(hf_folder, tmp_path):
    from safetensors.torch import load_file

    export_encoder(str(hf_folder), "hf", str(tmp_path / "a"))
    export_encoder(str(tmp_path / "a"), "hf", str(tmp_path / "b"))
    first, second = load_file(tmp_path / "a" / hf.WEIGHTS), load_file(tmp_path / "b" / hf.WEIGHTS)
    original = load_file(hf_folder / "model.safetensors")
    assert first.keys() == second.keys() == original.keys()
    assert all(torch.equal(first[k], second[k]) and torch.equal(first[k], original[k]) for k in first)

    export_encoder(str(tmp_path / "a"), "safetensors", str(tmp_path / "c"))
    export_encoder(str(tmp_path / "c"), "safetensors", str(tmp_path / "d"))
    third, fourth = load_file(tmp_path / "c" / "encoder.safetensors"), load_file(tmp_path / "d" / "encoder.safetensors")
    assert third.keys() == fourth.keys() and all(torch.equal(third[k], fourth[k]) for k in third)
    x = clips(seed=6)
    torch.testing.assert_close(load_encoder(str(tmp_path / "c")).features(x), load_encoder(str(hf_folder)).features(x),
                               rtol=0, atol=0)


def test_exporting_a_sincos_encoder_to_hf_is_refused_but_safetensors_works(tmp_path):
    from jepa_platform.models.vit import video_vit

    encoder = video_vit("custom", embed_dim=64, depth=1, num_heads=1, img_size=32, num_frames=16, patch_size=8)
    torch.save({"target_encoder": encoder.state_dict(), "encoder": encoder.state_dict()}, tmp_path / "v1.pt")
    with pytest.raises(ConfigError, match="not representable.*sin-cos"):
        export_encoder(str(tmp_path / "v1.pt"), "hf", str(tmp_path / "hf"))
    export_encoder(str(tmp_path / "v1.pt"), "safetensors", str(tmp_path / "st"))
    back = load_encoder(str(tmp_path / "st"))
    assert not back.rope and back.grid == encoder.grid
    x = clips(1)
    torch.testing.assert_close(back.features(x), encoder.eval()(x), rtol=0, atol=0)


def test_a_swiglu_rope_encoder_round_trips_through_an_official_file_and_the_export(tmp_path):
    from jepa_platform.models.vit import video_vit

    torch.manual_seed(3)
    encoder = video_vit("custom", embed_dim=128, depth=2, num_heads=2, mlp="swiglu", pos_embed="rope",
                        img_size=32, num_frames=4, patch_size=8, mlp_ratio=48 / 11).eval()
    torch.save({"target_encoder": {"module.backbone." + k: v for k, v in encoder.state_dict().items()}},
               tmp_path / "g.pt")
    loaded = load_encoder(str(tmp_path / "g.pt"))  # architecture from shapes: SwiGLU, RoPE, 128/64 = 2 heads
    assert loaded.blocks[0].mlp.fc1.out_features == encoder.blocks[0].mlp.fc1.out_features
    x = clips(1)
    torch.testing.assert_close(loaded.features(x), encoder(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="not representable.*SwiGLU"):
        export_encoder(str(tmp_path / "g.pt"), "hf", str(tmp_path / "hf"))


def test_a_released_v_jepa_2_file_with_an_unused_pos_embed_loads_as_rope_when_told(theirs, tmp_path):
    """V-JEPA 2's released files carry a pos_embed their RoPE encoders never use (its hub loader drops it)."""
    state = official_state(theirs)
    state["encoder"] = {**state["target_encoder"], "module.backbone.pos_embed": torch.zeros(1, 32, 128)}
    del state["target_encoder"]
    torch.save(state, tmp_path / "vitl.pt")
    with pytest.warns(UserWarning, match="pos_embed .* not used by the configured RoPE encoder"):
        ours = load_encoder(str(tmp_path / "vitl.pt"), pos_embed="rope")
    x = clips()
    torch.testing.assert_close(ours.features(x), their_features(theirs, x), rtol=0, atol=ATOL)

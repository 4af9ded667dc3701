"""V-JEPA 2 weights as users reach them: `jepa export`, `jepa probe --checkpoint` on a Hugging Face folder,
a SALT frozen teacher from one, a folder on S3, and one line with a non-zero exit for each bad input."""

import json

import fsspec
import pytest
import torch
from typer.testing import CliRunner
from user_facing import one_error_line, save_tiny_vjepa2

from jepa_platform import load_encoder
from jepa_platform.cli import app
from jepa_platform.eval.settings import ProbeSettings, resolve_settings
from jepa_platform.models.vit import video_vit

transformers = pytest.importorskip("transformers")
runner = CliRunner()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A small random V-JEPA 2 (RoPE, 64 wide) saved by transformers, sized for 32 px clips of 4 frames."""
    folder = tmp_path_factory.mktemp("hf") / "vjepa2-tiny"
    save_tiny_vjepa2(folder, eager=False)
    return folder


def test_jepa_export_writes_both_formats_and_refuses_to_mix_with_an_existing_folder(hf_folder, tmp_path):
    result = runner.invoke(app, ["export", str(hf_folder), str(tmp_path / "hf"), "--format", "hf"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "hf").iterdir()} == {"config.json", "model.safetensors"}
    result = runner.invoke(app, ["export", str(tmp_path / "hf"), str(tmp_path / "st"), "--format", "safetensors"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "st").iterdir()} == {"jepa_encoder.json", "encoder.safetensors"}
    line = one_error_line(runner.invoke(app, ["export", str(hf_folder), str(tmp_path / "st")]))
    assert "already exists" in line


def test_bad_inputs_get_one_line_and_exit_2(hf_folder, tmp_path):
    (tmp_path / "notes.txt").write_text("not weights")
    assert "could not be read as a PyTorch weights file" in one_error_line(
        runner.invoke(app, ["export", str(tmp_path / "notes.txt"), str(tmp_path / "a")]))

    (tmp_path / "nohf").mkdir()
    (tmp_path / "nohf" / "model.safetensors").write_bytes((hf_folder / "model.safetensors").read_bytes())
    assert "without a config.json" in one_error_line(
        runner.invoke(app, ["export", str(tmp_path / "nohf"), str(tmp_path / "b")]))

    sincos = video_vit("custom", embed_dim=64, depth=1, num_heads=1, img_size=32, num_frames=16, patch_size=8)
    torch.save({"target_encoder": sincos.state_dict()}, tmp_path / "v1.pt")
    assert "not representable as a Hugging Face V-JEPA 2 model" in one_error_line(
        runner.invoke(app, ["export", str(tmp_path / "v1.pt"), str(tmp_path / "c"), "--format", "hf"]))

    assert "cannot be written" in one_error_line(
        runner.invoke(app, ["export", str(hf_folder), str(tmp_path / "notes.txt" / "out")]))

    torch.save({"encoder": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "mlp.pt")
    assert "not a video ViT encoder" in one_error_line(
        runner.invoke(app, ["export", str(tmp_path / "mlp.pt"), str(tmp_path / "d")]))

    assert "--format" in one_error_line(
        runner.invoke(app, ["export", str(hf_folder), str(tmp_path / "e"), "--format", "onnx"]))


def test_a_hugging_face_folder_on_s3_loads_like_a_local_one(hf_folder, s3_endpoint):
    fs = fsspec.filesystem("s3")
    fs.mkdir("weights-bucket")
    for path in hf_folder.iterdir():
        fs.pipe_file(f"weights-bucket/vjepa2/{path.name}", path.read_bytes())
    clips = torch.randn(1, 3, 4, 32, 32)
    remote, local = load_encoder("s3://weights-bucket/vjepa2"), load_encoder(str(hf_folder))
    torch.testing.assert_close(remote.features(clips), local.features(clips), rtol=0, atol=0)


def test_probe_on_a_hugging_face_folder_reads_the_architecture_from_its_config(hf_folder, synthetic_dataset, tmp_path):
    result = runner.invoke(app, [
        "probe", "--checkpoint", str(hf_folder), "--train", str(synthetic_dataset), "--val", str(synthetic_dataset),
        "--epochs", "1", "--batch-size", "4", "--probe", "linear", "--output", str(tmp_path / "probe"),
        "--set", "workers=0", "--json",
    ])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["val_items"] == 12
    settings = resolve_settings(ProbeSettings(checkpoint=str(hf_folder), train="t.csv", val="v.csv"))
    assert (settings.frames, settings.resolution) == (4, 32)
    assert settings.backbone.params["pos_embed"] == "rope" and settings.backbone.params["embed_dim"] == 64

    line = one_error_line(runner.invoke(app, [
        "probe", "--checkpoint", str(hf_folder), "--train", str(synthetic_dataset), "--val", str(synthetic_dataset),
        "--backbone-params", "{size: custom, embed_dim: 64, depth: 3, num_heads: 2, patch_size: 8, pos_embed: rope}",
    ]))
    assert "missing from the checkpoint: blocks.2." in line


def test_a_file_that_is_no_checkpoint_gets_no_advice_to_unpickle_it(tmp_path):
    (tmp_path / "notes.txt").write_text("not weights")
    line = one_error_line(runner.invoke(app, ["export", str(tmp_path / "notes.txt"), str(tmp_path / "out")]))
    assert "not a PyTorch file of tensors" in line and "weights_only" not in line

"""V-JEPA 2-style runs in plain PyTorch: a RoPE encoder and predictor trained with an EMA teacher (and
resumed), and a SALT student whose frozen teacher is a Hugging Face V-JEPA 2 folder."""

import json

import pytest
import torch

from jepa_platform import load_encoder
from jepa_platform.spec import validate_spec
from jepa_platform.train.job import build_trainer, run_training


def rope_spec(tmp_path, name, steps, **changes):
    raw = {
        "name": name,
        "storage": {"output": str(tmp_path)},
        "backbone": {"kind": "vit", "params": {"size": "custom", "embed_dim": 48, "depth": 2, "num_heads": 2,
                                               "patch_size": 8, "pos_embed": "rope", "mlp": "swiglu"}},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2,
                                                          "pos_embed": "rope"}},
        "data": {"dataset": "synthetic", "frames": 4, "resolution": 32, "loader_workers": 0,
                 "params": {"videos_per_class": 1, "size": 32}},
        "optim": {"batch_size": 2, "steps": steps, "warmup_steps": 0, "checkpoint_every": 2},
        **changes,
    }
    return validate_spec(raw)


def test_a_rope_run_trains_and_resumes_where_it_stopped(tmp_path):
    first = run_training(rope_spec(tmp_path, "rope", 2))
    assert first["step"] == 2 and torch.isfinite(torch.tensor(first["loss"]))
    trainer = build_trainer(rope_spec(tmp_path, "rope", 3))
    assert trainer.resume() == 2
    assert trainer.student.encoder.rope and trainer.student.predictor.rope
    assert not hasattr(trainer.student.encoder, "pos_embed")
    last = run_training(rope_spec(tmp_path, "rope", 3))
    rows = [json.loads(line) for line in (tmp_path / "rope" / "metrics.jsonl").read_text().splitlines()]
    assert last["step"] == 3 and [r["step"] for r in rows if "loss" in r][-1] == 3


def test_a_salt_student_learns_from_a_hugging_face_v_jepa_2_teacher(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.VJEPA2Config(hidden_size=64, num_attention_heads=2, num_hidden_layers=1, crop_size=32,
                                       patch_size=8, frames_per_clip=4, tubelet_size=2, pred_hidden_size=32,
                                       pred_num_attention_heads=2, pred_num_hidden_layers=1)
    transformers.VJEPA2Model(config).save_pretrained(tmp_path / "hf")
    spec = rope_spec(tmp_path, "salt", 2, teacher={"kind": "frozen", "params": {"checkpoint": str(tmp_path / "hf")}})
    trainer = build_trainer(spec)
    teacher = trainer.teacher.encoder  # the architecture the folder's config states, not the student's
    assert (teacher.embed_dim, len(teacher.blocks), teacher.rope) == (64, 1, True)
    assert trainer.student.predictor.target_dim == 64
    reference = load_encoder(str(tmp_path / "hf")).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in teacher.state_dict().items())
    assert run_training(spec)["step"] == 2


def test_a_rope_run_exports_to_hugging_face_with_its_predictor(tmp_path):
    transformers = pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from jepa_platform.cli import app

    spec = rope_spec(tmp_path, "gelu", 2)
    spec = validate_spec({**spec.resolved(), "backbone": {"kind": "vit", "params": {
        **spec.backbone.params, "mlp": "gelu"}}})
    run_training(spec)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "gelu"), str(tmp_path / "hf"), "--format", "hf"])
    assert result.exit_code == 0, result.output
    assert "note" not in result.stderr  # the EMA run's predictor predicts the encoder's width: it goes along
    theirs = transformers.VJEPA2Model.from_pretrained(tmp_path / "hf").eval()
    ours = load_encoder(str(tmp_path / "gelu"))  # the EMA target encoder, as exported
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        out = theirs(pixel_values_videos=clips.transpose(1, 2), skip_predictor=True).last_hidden_state
    torch.testing.assert_close(out, ours.features(clips), rtol=0, atol=1e-5)
    assert theirs.config.pred_num_mask_tokens == 2 and theirs.config.pred_hidden_size == 32

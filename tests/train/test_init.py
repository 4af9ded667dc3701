"""Continued pretraining (`init:`): examples/vjepa2-vitl16.yaml made CPU-sized starts from an official-layout
V-JEPA 2 file (student, EMA teacher and predictor), trains a few steps and resumes; a file of another
architecture is refused before the first step, naming the tensors."""

from pathlib import Path

import pytest
import torch

from jepa_platform.errors import ConfigError
from jepa_platform.models.predictor import Predictor
from jepa_platform.models.vit import video_vit
from jepa_platform.spec import load_spec
from jepa_platform.train.init import initialise
from jepa_platform.train.job import build_trainer, run_training

EXAMPLE = Path(__file__).parents[2] / "examples" / "vjepa2-vitl16.yaml"


def official_file(path, width=64, mask_tokens=10):
    """A V-JEPA 2 training checkpoint in the official layout (module.backbone. prefixes, predictor_* names,
    10 mask tokens, and the unused pos_embed V-JEPA 2's released files carry)."""
    torch.manual_seed(7)
    encoder = video_vit("custom", embed_dim=width, depth=2, num_heads=2, patch_size=8, img_size=32, num_frames=4,
                        pos_embed="rope")
    predictor = Predictor(width, encoder.grid, predictor_embed_dim=32, depth=1, num_heads=2,
                          num_mask_tokens=mask_tokens, pos_embed="rope")
    with torch.no_grad():
        for token in predictor.mask_tokens:
            token.normal_()
    wrap = {f"module.backbone.{k}": v for k, v in encoder.state_dict().items()}
    wrap["module.backbone.pos_embed"] = torch.zeros(1, 32, width)
    names = {"blocks.": "predictor_blocks.", "norm.": "predictor_norm."}
    pred = {}
    for k, v in predictor.state_dict().items():
        for ours, theirs in names.items():
            k = theirs + k[len(ours):] if k.startswith(ours) else k
        pred[f"module.backbone.{k}"] = v
    torch.save({"encoder": wrap, "target_encoder": wrap, "predictor": pred, "epoch": 10}, path)
    return encoder, predictor


def cpu_sized(tmp_path, init, steps=2, width=64):
    return load_spec(EXAMPLE, [
        f"storage.output={tmp_path / 'runs'}", f"init.checkpoint={init}", f"optim.steps={steps}",
        "optim.warmup_steps=0", "optim.batch_size=2", "optim.precision=fp32", "optim.log_every=1",
        "optim.checkpoint_every=2", "resources.workers=1", "resources.gpus_per_worker=0", "data.dataset=synthetic",
        "data.frames=4", "data.stride=2", "data.resolution=32", "data.loader_workers=0",
        "data.params={videos_per_class: 1, size: 32}", "backbone.params.size=custom",
        f"backbone.params.embed_dim={width}", "backbone.params.depth=2", "backbone.params.num_heads=2",
        "backbone.params.patch_size=8", "predictor.params.embed_dim=32", "predictor.params.depth=1",
        "predictor.params.num_heads=2", "monitor.every=1",
    ])


def test_the_example_made_cpu_sized_starts_from_the_file_trains_and_resumes(tmp_path):
    encoder, predictor = official_file(tmp_path / "vitl.pt")
    spec = cpu_sized(tmp_path, tmp_path / "vitl.pt")
    trainer = build_trainer(spec)
    with pytest.warns(UserWarning, match="pos_embed .* not used"):
        notes = initialise(trainer, spec.init)
    assert "8 mask tokens beyond the run's 2 left out" in notes[-1]
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(trainer.student.encoder.state_dict()[name], tensor), name
        assert torch.equal(trainer.teacher.encoder.state_dict()[name], tensor), name
    assert torch.equal(trainer.student.predictor.mask_tokens[1], predictor.mask_tokens[1])

    events = []
    assert run_training(spec, on_event=events.append)["step"] == 2
    said = [getattr(e, "message", "") for e in events]
    assert any("initialised the predictor" in m for m in said)
    again = run_training(cpu_sized(tmp_path, tmp_path / "vitl.pt", steps=3))
    assert again["resumed_from"] == 2 and again["step"] == 3  # resumed from its own checkpoint, not the file


def test_a_file_of_another_architecture_is_refused_naming_the_tensors(tmp_path):
    official_file(tmp_path / "wide.pt", width=128)
    spec = cpu_sized(tmp_path, tmp_path / "wide.pt")
    with pytest.raises(ConfigError) as refused:
        run_training(spec)
    message = str(refused.value)
    assert "does not fit the configured encoder" in message
    assert "patch_embed.proj.weight: checkpoint [128, 3, 2, 8, 8] vs configured [64, 3, 2, 8, 8]" in message
    assert not (tmp_path / "runs" / "vjepa2-vitl16" / "checkpoints").exists() or not any(
        (tmp_path / "runs" / "vjepa2-vitl16" / "checkpoints").iterdir())

import copy

import fsspec
import pytest
import torch
from random_clips import RandomClips

from jepa_platform.errors import ConfigError
from jepa_platform.masks import MaskCollator, default_vjepa_maskers
from jepa_platform.models.pos_embed import resample_pos_embed
from jepa_platform.models.predictor import Predictor
from jepa_platform.models.vit import video_vit
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.teachers.base import TeacherStrategy
from jepa_platform.teachers.ema import EmaTeacher
from jepa_platform.teachers.frozen import FrozenTeacher
from jepa_platform.train.checkpoint import CheckpointStore
from jepa_platform.train.loop import JepaStudent, Trainer
from jepa_platform.weights.checkpoints import fit_encoder, load_encoder_state


def vit(embed_dim=48, depth=2, num_heads=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    size = {"img_size": 32, "num_frames": 4, "patch_size": 8, **kwargs}
    return video_vit("custom", embed_dim=embed_dim, depth=depth, num_heads=num_heads, **size)


def make_trainer(teacher, encoder=None, steps=6, store=None, seed=0, **optim):
    torch.manual_seed(seed)
    encoder = encoder or vit()
    predictor = Predictor(encoder.embed_dim, encoder.grid, predictor_embed_dim=32, depth=1, num_heads=2,
                          target_dim=teacher.target_dim if teacher else None)
    student = JepaStudent(encoder, predictor)
    teacher = teacher or EmaTeacher(encoder, steps=steps)
    cfg = OptimConfig(steps=steps, seed=seed, **{"batch_size": 2, "warmup_steps": 2, "lr": 1e-3, "log_every": 1,
                                                 "checkpoint_every": 100, **optim})
    return Trainer(student, teacher, MaskCollator(default_vjepa_maskers(), seed=seed), RandomClips(), cfg,
                   store=store)


def official_checkpoint(target: torch.nn.Module, online: torch.nn.Module, prefix: str) -> dict:
    """The layout of V-JEPA's torch.save'd training checkpoints (encoders wrapped in DDP + MultiMaskWrapper)."""
    return {
        "encoder": {prefix + k: v for k, v in online.state_dict().items()},
        "predictor": {prefix + "predictor_embed.weight": torch.zeros(8, 48)},
        "target_encoder": {prefix + k: v for k, v in target.state_dict().items()},
        "opt": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]},
        "scaler": None,
        "epoch": 3,
        "loss": 0.5,
        "batch_size": 2,
        "world_size": 1,
        "lr": 1e-3,
    }


def save(obj, url):
    with fsspec.open(url, "wb") as f:
        torch.save(obj, f)
    return url


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("prefix", ["module.backbone.", "module.", "backbone."])
def test_official_vjepa_checkpoint_loads_its_target_encoder_with_wrapper_prefixes_stripped(tmp_path, prefix):
    target, online = vit(seed=1).eval(), vit(seed=2).eval()
    url = save(official_checkpoint(target, online, prefix), str(tmp_path / "vitl16.pth.tar"))
    teacher = FrozenTeacher.from_checkpoint(vit(seed=3), url)
    clips = RandomClips().clips[:2]
    assert torch.equal(teacher.encoder(clips), target(clips))
    assert_same_tensors(load_encoder_state(url, key="encoder"), online.state_dict())


def test_official_checkpoint_is_read_from_an_fsspec_object_store():
    target = vit(seed=1)
    url = save(official_checkpoint(target, vit(seed=2), "module.backbone."), "memory://weights/vjepa.pth")
    assert_same_tensors(load_encoder_state(url), target.state_dict())


def test_platform_checkpoint_of_an_ema_run_loads_the_ema_target_encoder(tmp_path):
    job = tmp_path / "stage1"
    trainer = make_trainer(None, steps=3, store=CheckpointStore(str(job / "checkpoints")))
    trainer.fit()
    teacher_weights = trainer.teacher.encoder.state_dict()
    student_weights = trainer.student.encoder.state_dict()
    assert not torch.equal(teacher_weights["blocks.0.attn.qkv.weight"], student_weights["blocks.0.attn.qkv.weight"])

    step = job / "checkpoints" / "step_00000003"
    for url in (job, job / "checkpoints", step, step / "state.pt"):
        assert_same_tensors(load_encoder_state(str(url)), teacher_weights)
    assert_same_tensors(load_encoder_state(str(job), key="student"), student_weights)

    frozen = FrozenTeacher.from_checkpoint(vit(seed=5), str(job))
    for name, tensor in trainer.teacher.encoder.state_dict().items():
        assert torch.equal(frozen.encoder.state_dict()[name], tensor), name


def test_checkpoint_whose_teacher_saved_nothing_loads_the_student_encoder(tmp_path):
    """A pixel-reconstruction stage-1 run: the teacher state is empty, the encoder is the student's."""
    student = JepaStudent(vit(seed=1), Predictor(48, (2, 4, 4), predictor_embed_dim=32, depth=1, num_heads=2))
    store = CheckpointStore(str(tmp_path / "checkpoints"))
    store.save(10, {"progress": {"step": 10}, "student": student.state_dict(), "teacher": {}})
    assert_same_tensors(load_encoder_state(store.root), student.encoder.state_dict())
    with pytest.raises(ConfigError, match="teacher saved no encoder.*use key 'student'"):
        load_encoder_state(store.root, key="teacher")
    with pytest.raises(ConfigError, match="jepa-platform checkpoint: use 'teacher' or 'student'"):
        load_encoder_state(store.root, key="target_encoder")


def test_checkpoint_of_another_architecture_fails_naming_the_tensors_that_do_not_fit(tmp_path):
    url = save(official_checkpoint(vit(), vit(), "module.backbone."), str(tmp_path / "vjepa.pth"))
    with pytest.raises(ConfigError) as err:
        FrozenTeacher.from_checkpoint(vit(embed_dim=32, depth=3, num_heads=2), url)
    message = str(err.value)
    assert url in message
    assert "blocks.0.attn.qkv.weight: checkpoint [144, 48] vs configured [96, 32]" in message
    assert "missing from the checkpoint: blocks.2." in message
    assert "configure the backbone" in message and "embed_dim=48" in message and "depth=2" in message
    assert "\n" not in message


def test_a_rope_checkpoint_is_refused_by_a_sincos_backbone_and_a_spare_pos_embed_left_out_by_a_rope_one():
    state = {k: v for k, v in vit().state_dict().items() if k != "pos_embed"}
    with pytest.raises(ConfigError, match="vjepa2.pt.*RoPE.*set its params.pos_embed: rope"):
        fit_encoder(vit(), state, "vjepa2.pt")
    rope = vit(pos_embed="rope")
    with pytest.warns(UserWarning, match="vjepa2-released.pt: its pos_embed .* not used by the configured RoPE"):
        fit_encoder(rope, vit().state_dict(), "vjepa2-released.pt")  # V-JEPA 2's own files carry an unused one
    fit_encoder(rope, state, "vjepa2.pt")  # a RoPE backbone takes the RoPE weights


def test_pos_embed_of_another_resolution_is_resampled_to_the_teachers_grid():
    source = vit(img_size=48)  # grid (2, 6, 6): 72 tokens
    teacher = vit(seed=1)  # grid (2, 4, 4): 32 tokens
    fit_encoder(teacher, source.state_dict(), "big.pt")
    expected = resample_pos_embed(source.pos_embed, (2, 6, 6), (2, 4, 4))
    assert torch.equal(teacher.pos_embed, expected)
    assert torch.equal(teacher.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_pos_embed_whose_grid_cannot_be_told_is_refused():
    state = vit().state_dict()
    state["pos_embed"] = torch.zeros(1, 128, 48)  # (2, 8, 8) or (8, 4, 4): other resolution or other frames
    with pytest.raises(ConfigError, match="ambiguous.pt: pos_embed has 128 tokens.*cannot be told"):
        fit_encoder(vit(), state, "ambiguous.pt")


def test_unreadable_checkpoints_fail_with_one_line_naming_the_url(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    (tmp_path / "empty").mkdir()
    for url in (garbage, tmp_path / "missing.pt", tmp_path / "empty"):
        with pytest.raises(ConfigError, match=str(url)) as err:
            load_encoder_state(str(url))
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="top-level keys are: weights"):
        load_encoder_state(save({"weights": [1, 2]}, str(tmp_path / "other.pt")))


def test_teacher_must_cut_clips_into_the_students_tokens(tmp_path):
    url = save(official_checkpoint(vit(patch_size=16), vit(patch_size=16), "module."), str(tmp_path / "p16.pth"))
    with pytest.raises(ConfigError, match=r"patch_size 16.*\(2, 2, 2\).*\(2, 4, 4\)"):
        FrozenTeacher.from_checkpoint(vit(patch_size=16), url, student=vit())


def test_frozen_teacher_is_never_updated_while_a_wider_student_trains(tmp_path):
    checkpoint = save(official_checkpoint(vit(32, 1, 2, seed=1), vit(32, 1, 2, seed=2), "module.backbone."),
                      str(tmp_path / "small.pth"))
    teacher = FrozenTeacher.from_checkpoint(vit(32, 1, 2, seed=3), checkpoint)
    assert isinstance(teacher, TeacherStrategy) and teacher.target_dim == 32
    before = copy.deepcopy(dict(teacher.encoder.state_dict()))
    store = CheckpointStore(str(tmp_path / "stage2"))
    trainer = make_trainer(teacher, encoder=vit(48, 2, 3), steps=6, store=store, warmup_steps=0, lr=3e-3)
    assert trainer.student.predictor.predictor_proj.out_features == 32

    clips = RandomClips().clips[:2]
    losses = [trainer.train_step(clips)["loss"] for _ in range(6)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-2:]) < sum(losses[:2])

    assert not teacher.training and not teacher.encoder.training
    assert all(p.grad is None and not p.requires_grad for p in teacher.encoder.parameters())
    assert_same_tensors(dict(teacher.encoder.state_dict()), before)

    trainer.save()
    assert store.load()["teacher"] == {}
    resumed = make_trainer(FrozenTeacher.from_checkpoint(vit(32, 1, 2, seed=4), checkpoint),
                           encoder=vit(48, 2, 3), steps=6, store=store)
    assert resumed.resume() == 6
    assert_same_tensors(dict(resumed.teacher.encoder.state_dict()), before)


def test_frozen_teacher_refuses_to_resume_the_state_of_another_teacher_kind():
    teacher = FrozenTeacher(vit(), "x.pt")
    teacher.load_state_dict({})
    with pytest.raises(ConfigError, match="another teacher kind"):
        teacher.load_state_dict(EmaTeacher(vit(), steps=1).state_dict())

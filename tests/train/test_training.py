import copy
import tempfile

import fsspec
import pytest
import torch
from random_clips import RandomClips

from jepa_platform.errors import TrainingError
from jepa_platform.masks import MaskCollator, default_vjepa_maskers
from jepa_platform.models.predictor import Predictor
from jepa_platform.models.vit import video_vit
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.teachers.ema import EmaTeacher
from jepa_platform.train.checkpoint import CheckpointStore
from jepa_platform.train.loop import JepaStudent, Trainer
from jepa_platform.train.metrics import MetricsLog, read_metrics


def make_trainer(tmp_path=None, steps=6, seed=0, store_url=None, **optim):
    torch.manual_seed(seed)
    encoder = video_vit("custom", img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=2, num_heads=3)
    predictor = Predictor(48, encoder.grid, predictor_embed_dim=32, depth=1, num_heads=2)
    student = JepaStudent(encoder, predictor)
    optim = {"batch_size": 2, "warmup_steps": 2, "lr": 1e-3, "log_every": 1, "checkpoint_every": 100, **optim}
    cfg = OptimConfig(steps=steps, seed=seed, **optim)
    teacher = EmaTeacher(encoder, steps=steps)
    url = store_url or (str(tmp_path / "ckpt") if tmp_path else None)
    store = CheckpointStore(url, keep=cfg.keep_checkpoints) if url else None
    return Trainer(student, teacher, MaskCollator(default_vjepa_maskers(), seed=seed), RandomClips(), cfg,
                   store=store)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    trainer = make_trainer(steps=40, warmup_steps=0, schedule_scale=1.0)
    clips = RandomClips().clips[:2]
    losses = [trainer.train_step(clips)["loss"] for _ in range(25)]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:3]) / 3


def test_ema_teacher_moves_towards_the_student_by_one_minus_momentum():
    student = video_vit("custom", img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=1, num_heads=3)
    teacher = EmaTeacher(student, steps=100, momentum=(0.9, 0.9))
    before = copy.deepcopy(teacher.encoder.state_dict())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.after_step(1)
    for name, p in teacher.encoder.named_parameters():
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * dict(student.named_parameters())[name])
    assert not any(p.requires_grad for p in teacher.encoder.parameters())


def test_ema_targets_are_layer_normed_per_token_and_gathered_per_mask():
    trainer = make_trainer()
    clips = RandomClips().clips[:2]
    masks = trainer.collator(2, trainer.student.encoder.token_grid(clips.shape))
    targets = trainer.teacher.targets(clips, masks)
    assert [t.shape[1] for t in targets] == [m.targets.shape[1] for m in masks]
    torch.testing.assert_close(targets[0].mean(-1), torch.zeros(targets[0].shape[:2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(targets[0].std(-1, unbiased=False), torch.ones(targets[0].shape[:2]),
                               atol=1e-3, rtol=0)


def test_resume_continues_the_same_sequence(tmp_path):
    straight = make_trainer(tmp_path / "a", steps=6)
    straight.fit()

    first = make_trainer(tmp_path / "b", steps=6)
    first.fit(until=3)
    first.save()
    del first
    resumed = make_trainer(tmp_path / "b", steps=6, seed=0)
    torch.manual_seed(1234)  # a different global RNG must not matter: it is restored from the checkpoint
    assert resumed.resume() == 3
    resumed.fit()

    assert resumed.progress == straight.progress
    for (name, a), b in zip(straight.student.state_dict().items(), resumed.student.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, msg=name)
    for a, b in zip(straight.teacher.state_dict().values(), resumed.teacher.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_resumed_optimiser_keeps_this_machines_kernel_choice():
    saved = make_trainer().state_dict()
    for group in saved["optimizer"]["param_groups"]:
        group["fused"] = None  # as a checkpoint saved before fused AdamW on CPU, or on a machine without it
    trainer = make_trainer()
    trainer.load_state_dict(saved)
    assert all(group["fused"] for group in trainer.optimizer.param_groups)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, steps=10, checkpoint_every=2)
    trainer.fit(until=2)
    good = trainer.store.latest()
    with torch.no_grad():
        trainer.student.predictor.predictor_proj.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="not finite at step 3.*step_00000002"):
        trainer.fit()
    assert trainer.store.latest() == good
    assert trainer.store.load()["progress"]["step"] == 2


def test_checkpoints_are_pruned_and_latest_points_at_a_complete_file(tmp_path):
    trainer = make_trainer(tmp_path, steps=6, checkpoint_every=1, keep_checkpoints=2)
    trainer.fit()
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["latest", "step_00000005", "step_00000006"]
    assert trainer.store.latest().endswith("step_00000006")
    assert (tmp_path / "ckpt" / "step_00000006" / "state.pt").is_file()


@pytest.mark.parametrize("root", ["local", "memory://leftovers/ckpt"])
def test_an_interrupted_save_is_never_resumed_from_and_its_leftovers_are_cleared(tmp_path, root):
    """A kill inside `save` leaves a temporary file, a folder without a state file, or a pointer that
    names a folder that is gone; `latest()` skips each, and the next run's `resume()` removes them."""
    url = str(tmp_path / "ckpt") if root == "local" else root
    trainer = make_trainer(store_url=url, steps=3, checkpoint_every=1, keep_checkpoints=5)
    trainer.fit()
    fs, base = fsspec.core.url_to_fs(url)
    fs.makedirs(f"{base}/step_00000004", exist_ok=True)
    fs.pipe_file(f"{base}/step_00000004/state.pt.tmp-1234abcd", b"half a checkpoint")  # killed mid-write
    fs.pipe_file(f"{base}/step_00000003/state.pt.tmp-deadbeef", b"an older leftover")
    fs.pipe_file(f"{base}/latest", b"step_00000009")  # a folder removed by hand
    assert trainer.store.latest().endswith("step_00000003")

    resumed = make_trainer(store_url=url, steps=5, checkpoint_every=1, keep_checkpoints=5)
    assert resumed.resume() == 3
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False))
    assert names == ["latest", "step_00000001", "step_00000002", "step_00000003"]
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(f"{base}/step_00000003", detail=False)] == ["state.pt"]
    resumed.fit()
    assert resumed.store.latest().endswith("step_00000005")


def test_no_complete_checkpoint_means_a_fresh_start(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    assert store.latest() is None and store.clean() == []
    (tmp_path / "ckpt" / "step_00000002").mkdir(parents=True)
    (tmp_path / "ckpt" / "latest").write_text("step_00000002")
    assert store.latest() is None
    assert store.clean() == [str(tmp_path / "ckpt" / "step_00000002")]


def test_checkpoints_and_metrics_go_through_fsspec_object_stores():
    trainer = make_trainer(store_url="memory://run/ckpt", steps=3)
    trainer.metrics = MetricsLog("memory://run/metrics.jsonl")
    trainer.fit()
    assert trainer.store.load()["progress"]["step"] == 3
    rows = read_metrics("memory://run/metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] > 0 for r in rows)


def test_tensorboard_scalars_reach_an_object_store_and_a_resumed_run_purges_later_steps():
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = make_trainer(store_url="memory://tb-run/ckpt", steps=4)
    first.metrics = MetricsLog("memory://tb-run/metrics.jsonl", tensorboard_dir="memory://tb-run/tb")
    first.fit(until=2)  # checkpointed at step 2
    first.store = None
    first.fit()  # steps 3 and 4 logged, then the run dies before its next checkpoint
    resumed = make_trainer(store_url="memory://tb-run/ckpt", steps=4)
    assert resumed.resume() == 2
    resumed.metrics = MetricsLog("memory://tb-run/metrics.jsonl", resume_step=2, tensorboard_dir="memory://tb-run/tb")
    resumed.fit()

    fs = fsspec.filesystem("memory")
    files = sorted(fs.ls("/tb-run/tb", detail=False))
    assert len(files) == 2 and all("events.out.tfevents." in f for f in files)
    with tempfile.TemporaryDirectory() as local:  # TensorBoard reads local folders without TensorFlow
        fs.get(files, local + "/")
        events = EventAccumulator(local)
        events.Reload()
        steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == [1, 2, 3, 4]  # the first run's steps 3 and 4 were purged by the resumed run's


def test_metrics_rows_past_the_resumed_step_are_dropped(tmp_path):
    url = str(tmp_path / "metrics.jsonl")
    log = MetricsLog(url)
    for s in range(1, 6):
        log.log({"step": s})
    MetricsLog(url, resume_step=3)
    assert [r["step"] for r in read_metrics(url)] == [1, 2, 3]


def test_metrics_rows_carry_schedules_throughput_and_tensorboard_events(tmp_path):
    trainer = make_trainer(tmp_path, steps=3)
    trainer.metrics = MetricsLog(str(tmp_path / "metrics.jsonl"), tensorboard_dir=str(tmp_path / "tb"))
    trainer.fit()
    rows = read_metrics(str(tmp_path / "metrics.jsonl"))
    last = rows[-1]
    assert {"loss", "loss_mask0", "loss_mask1", "lr", "wd", "momentum", "clips_per_s", "data_wait_frac",
            "samples_seen", "grad_norm"} <= last.keys()
    assert last["samples_seen"] == 3 * 2
    assert 0.998 < last["momentum"] < 1.0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_the_loop_emits_its_rows_as_events_that_feed_metrics_jsonl_from_rank_0_only(tmp_path):
    from jepa_platform.events import EventReader, Row, encode

    trainer = make_trainer(tmp_path, steps=4, log_every=2)
    trainer.metrics = MetricsLog(str(tmp_path / "metrics.jsonl"))
    lines: list[str] = []
    trainer.on_event = lambda event: lines.append(encode(event))  # what a runner's sink carries: one line each
    trainer.fit()
    reader = EventReader()
    rows = [reader.feed(line).values for line in lines]
    assert [r["step"] for r in rows] == [2, 4] and reader.last_step == 4
    assert rows == read_metrics(str(tmp_path / "metrics.jsonl"))  # the same rows, from the same emit
    other = make_trainer(tmp_path / "rank1", steps=2)
    other.rank, seen = 1, []
    other.on_event = seen.append
    other.emit(Row({"step": 1}))
    assert seen == []

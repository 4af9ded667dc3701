"""Representation-health metrics and the collapse alarm: the measures themselves, a run made to collapse
(each rule fires, is recorded and can stop the run), a healthy run (no rule fires), and resumes."""

import json

import pytest
import torch
from random_clips import RandomClips

from jepa_platform.errors import TrainingError
from jepa_platform.masks import MaskCollator, default_vjepa_maskers
from jepa_platform.models.predictor import Predictor
from jepa_platform.models.vit import video_vit
from jepa_platform.spec.monitor import CollapseRules, MonitorConfig
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.teachers.ema import EmaTeacher
from jepa_platform.train.checkpoint import CheckpointStore
from jepa_platform.train.health import (
    CollapseAlarm,
    channel_std,
    effective_rank,
    mean_cosine,
    read_alarm,
)
from jepa_platform.train.loop import JepaStudent, Trainer
from jepa_platform.train.metrics import MetricsLog, read_metrics


def test_rankme_counts_the_directions_features_spread_over():
    torch.manual_seed(0)
    assert effective_rank(torch.randn(512, 32)) > 25  # isotropic: close to the full 32
    rank_one = torch.randn(512, 1) * torch.randn(1, 32)
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-3)
    two = torch.cat([torch.randn(256, 1) * torch.eye(32)[0], torch.randn(256, 1) * torch.eye(32)[1]])
    assert 1.5 < effective_rank(two) < 2.01
    assert effective_rank(torch.zeros(8, 4)) is None and effective_rank(torch.full((8, 4), float("nan"))) is None


def test_std_and_cosine_tell_constant_tokens_from_spread_ones():
    torch.manual_seed(0)
    constant = torch.ones(64, 16)
    assert channel_std(constant) == 0.0 and mean_cosine(constant) == pytest.approx(1.0)
    spread = torch.randn(4096, 16)
    assert channel_std(spread) == pytest.approx(1.0, abs=0.05) and abs(mean_cosine(spread)) < 0.02
    assert mean_cosine(torch.eye(16)) == pytest.approx(0.0)


class CollapsingTeacher(EmaTeacher):
    """An EMA teacher whose targets become `kind` after `after` steps: 'constant' (one vector everywhere)
    or 'rank1' (every token on one direction)."""

    def __init__(self, *args, kind="constant", after=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind, self.after, self.steps_done = kind, after, 0

    def after_step(self, step):
        super().after_step(step)
        self.steps_done = step

    def targets(self, clips, masks):
        targets = super().targets(clips, masks)
        if self.steps_done < self.after:
            return targets
        if self.kind == "constant":
            return [torch.zeros_like(t) for t in targets]
        direction = torch.linspace(-1, 1, targets[0].shape[-1])
        return [t.mean(-1, keepdim=True) * 0 + torch.arange(t.shape[1]).float()[None, :, None] * direction
                for t in targets]


def make_trainer(tmp_path, steps=12, teacher_kind=None, after=0, monitor=None, name="run"):
    torch.manual_seed(0)
    encoder = video_vit("custom", img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=2, num_heads=3)
    predictor = Predictor(48, encoder.grid, predictor_embed_dim=32, depth=1, num_heads=2)
    cfg = OptimConfig(steps=steps, batch_size=2, warmup_steps=2, lr=1e-3, log_every=4, checkpoint_every=4)
    if teacher_kind:
        teacher = CollapsingTeacher(encoder, steps=steps, kind=teacher_kind, after=after)
    else:
        teacher = EmaTeacher(encoder, steps=steps)
    job = tmp_path / name
    return Trainer(JepaStudent(encoder, predictor), teacher, MaskCollator(default_vjepa_maskers(), seed=0),
                   RandomClips(), cfg, store=CheckpointStore(str(job / "checkpoints")),
                   metrics=MetricsLog(str(job / "metrics.jsonl")), monitor=monitor or MonitorConfig(every=1),
                   job_dir=str(job))


def test_constant_targets_fire_the_std_rule_after_patience_checks(tmp_path):
    trainer = make_trainer(tmp_path, steps=6, teacher_kind="constant")
    notices = []
    trainer.on_event = notices.append
    trainer.fit()
    alarm = read_alarm(str(tmp_path / "run"))
    assert alarm["rule"] == "std_targets" and (alarm["since"], alarm["step"]) == (1, 3)
    assert "std_targets 0 is below the floor 0.001" in alarm["reason"]
    said = [n.message for n in notices if hasattr(n, "message")]
    assert said == [f"collapse suspected since step 1: {alarm['reason']}"]
    rows = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert [r["step"] for r in rows if "collapse" in r] == [3]  # logged at once, though log_every is 4
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # every step is a check here (every=1)
    assert all(r["rankme_targets"] is None for r in rows)  # all-zero targets: no rank to speak of, not a crash


def test_targets_on_one_direction_fire_the_rank_rule_against_the_first_check(tmp_path):
    trainer = make_trainer(tmp_path, steps=8, teacher_kind="rank1", after=2)
    trainer.fit()
    alarm = read_alarm(str(tmp_path / "run"))
    assert alarm["rule"] == "rankme_targets" and alarm["since"] == 2 and alarm["step"] == 4  # checks after step 2
    assert "below 0.2 x its value at step 1" in alarm["reason"]


def test_stop_on_collapse_ends_the_run_after_a_checkpoint(tmp_path):
    monitor = MonitorConfig(every=1, collapse=CollapseRules(stop=True, patience=2))
    trainer = make_trainer(tmp_path, steps=10, teacher_kind="constant", monitor=monitor)
    with pytest.raises(TrainingError, match="stopped .monitor.collapse.stop.: collapse suspected since step 1"):
        trainer.fit()
    assert trainer.store.latest().endswith("step_00000002")


def test_a_healthy_run_fires_nothing_and_logs_every_health_figure(tmp_path):
    trainer = make_trainer(tmp_path, steps=24, monitor=MonitorConfig(every=8))
    trainer.flops_per_step = 1e9
    trainer.fit()
    assert read_alarm(str(tmp_path / "run")) is None
    rows = {r["step"]: r for r in read_metrics(str(tmp_path / "run" / "metrics.jsonl"))}
    checked = rows[24]
    for key in ("rankme_targets", "rankme_context", "rankme_predictions", "std_targets", "std_predictions",
                "cos_targets", "cos_context", "teacher_distance", "step_time", "flop_rate"):
        assert isinstance(checked[key], float), key
    assert checked["rankme_targets"] > 5 and 0 < checked["teacher_distance"] < 1
    assert "rankme_targets" not in rows[4] and "rankme_targets" in rows[16]  # logged every 4, checked every 8
    assert sorted(rows) == [1, 4, 8, 12, 16, 20, 24]  # step 1, the alarm's baseline, is a check and is logged
    assert "collapse" not in json.dumps(list(rows.values()))


def test_health_checks_leave_training_unchanged_and_the_baseline_survives_a_resume(tmp_path):
    with_checks = make_trainer(tmp_path, steps=8, monitor=MonitorConfig(every=2), name="a")
    with_checks.fit()
    without = make_trainer(tmp_path, steps=8, monitor=MonitorConfig(every=0), name="b")
    without.fit()
    for p, q in zip(with_checks.student.parameters(), without.student.parameters(), strict=True):
        assert torch.equal(p, q)
    resumed = make_trainer(tmp_path, steps=12, monitor=MonitorConfig(every=2), name="a")
    assert resumed.resume() == 8
    assert resumed.alarm.first == with_checks.alarm.first and resumed.alarm.first["rankme_targets"][0] == 1


def test_the_alarm_fires_each_rule_once():
    alarm = CollapseAlarm(CollapseRules(patience=1))
    assert alarm.check(1, {"std_targets": 0.0}).rule == "std_targets"
    assert alarm.check(2, {"std_targets": 0.0}) is None


def test_knn_accuracy_is_leave_one_out_and_tells_clusters_from_noise():
    from jepa_platform.train.knn import knn_accuracy

    torch.manual_seed(0)
    labels = torch.arange(6).repeat_interleave(8)
    centres = torch.randn(6, 32) * 5
    assert knn_accuracy(centres[labels] + torch.randn(48, 32), labels, k=5) == 1.0
    assert knn_accuracy(torch.randn(48, 32), labels, k=5) < 0.5
    assert knn_accuracy(torch.randn(2, 4), torch.tensor([0, 1]), k=20) == 0.0  # its only neighbour disagrees


def test_the_knn_rule_fires_after_warmup_when_no_better_than_random():
    alarm = CollapseAlarm(CollapseRules(patience=2), warmup=10)
    poor = {"knn_top1": 0.15, "knn_top1_random": 0.2}
    assert alarm.check(5, poor) is None and alarm.check(10, poor) is None  # in warmup: not counted
    assert alarm.check(20, poor) is None
    assert alarm.check(25, {"std_targets": 0.5}) is None  # a health check in between keeps the k-NN streak
    fired = alarm.check(30, poor)
    assert fired.rule == "knn_top1" and fired.since == 20 and "no better than the randomly initialised" in fired.reason


def test_a_run_with_data_val_evaluates_its_encoder_beside_a_random_one(tmp_path, synthetic_dataset):
    from jepa_platform.spec import validate_spec
    from jepa_platform.train.job import run_training

    spec = validate_spec({
        "name": "knn", "storage": {"output": str(tmp_path)},
        "backbone": {"kind": "vit", "params": {"size": "custom", "embed_dim": 48, "depth": 1, "num_heads": 3,
                                               "patch_size": 8}},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "data": {"train": str(synthetic_dataset), "val": str(synthetic_dataset), "frames": 4, "stride": 2,
                 "resolution": 32, "loader_workers": 0},
        "optim": {"batch_size": 2, "steps": 5, "warmup_steps": 0, "log_every": 5},
        "monitor": {"every": 2, "eval_every": 2},
    })
    events = []
    run_training(spec, on_event=events.append)
    phases = [e.values["phase"] for e in events if "phase" in getattr(e, "values", {})]
    assert phases == ["building the model and reading data.val", "reading the last checkpoint", "counting FLOPs",
                      "waiting for the first batch"]  # named while they run, before the first step's row
    assert "phase" in events[0].values and events[len(phases)].values["step"] == 1
    rows = {r["step"]: r for r in read_metrics(str(tmp_path / "knn" / "metrics.jsonl"))}
    assert sorted(rows) == [1, 2, 4, 5]  # health checks at 1, 2, 4; evaluations at 2, 4 and the last step
    for step in (2, 4, 5):
        assert 0 <= rows[step]["knn_top1"] <= 1 and rows[step]["eval_seconds"] > 0
    assert len({rows[s]["knn_top1_random"] for s in (2, 4, 5)}) == 1  # evaluated once, logged with each


def test_a_missing_val_set_is_refused_at_validation_naming_the_field(tmp_path):
    from jepa_platform.spec import SpecError, validate_spec

    with pytest.raises(SpecError, match=r"data\.val: .*no such file or folder: .*nowhere\.csv"):
        validate_spec({"name": "x", "data": {"train": "t.csv", "val": str(tmp_path / "nowhere.csv")}})


def test_an_unlabelled_val_set_is_refused_before_training(tmp_path, synthetic_dataset):
    from jepa_platform.errors import ConfigError
    from jepa_platform.train.knn import KnnEvaluator

    lines = synthetic_dataset.read_text().splitlines()
    flat = synthetic_dataset.parent / "flat.csv"  # its video paths are relative to the manifest
    flat.write_text("".join(f"{line.split()[0]} 0\n" for line in lines))
    with pytest.raises(ConfigError, match="data.val: every clip of .*flat.csv has the same label"):
        KnnEvaluator(str(flat), frames=4, stride=2, resolution=32)


def test_the_rank_rule_watches_the_targets_and_the_context_only_when_asked():
    default = CollapseAlarm(CollapseRules(patience=1))
    assert default.check(1, {"rankme_context": 30.0}) is None and default.check(2, {"rankme_context": 2.0}) is None
    both = CollapseAlarm(CollapseRules(patience=1, rank_of=["targets", "context"]))
    assert both.check(1, {"rankme_context": 30.0}) is None
    assert both.check(2, {"rankme_context": 2.0}).rule == "rankme_context"

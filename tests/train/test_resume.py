"""Resubmitting a job resumes its run only when the spec still describes that run (issue 21.2)."""

import logging

import pytest
import yaml
from typer.testing import CliRunner

from jepa_platform.cli import app
from jepa_platform.errors import ConfigError, TrainingError
from jepa_platform.events import Error, EventReader, Row, encode
from jepa_platform.layout import SPEC_FILE
from jepa_platform.runners.local import worker_error_message
from jepa_platform.spec import load_spec
from jepa_platform.train.job import run_training
from jepa_platform.train.metrics import read_metrics
from jepa_platform.train.resume import check_resume

runner = CliRunner()


@pytest.fixture
def trained(tmp_path, synthetic_dataset):
    """A 3-step run of a tiny model, checkpointed at step 2 and 3, and its spec file."""
    raw = {
        "name": "first",
        "backbone": {"kind": "vit", "params": {"size": "custom", "embed_dim": 48, "depth": 2, "num_heads": 3,
                                               "patch_size": 16}},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "teacher": {"kind": "ema"},
        "optim": {"steps": 3, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 2},
        "data": {"train": str(synthetic_dataset), "frames": 4, "stride": 2, "resolution": 32, "loader_workers": 0},
        "storage": {"output": str(tmp_path / "runs")},
    }
    path = tmp_path / "first.yaml"
    path.write_text(yaml.safe_dump(raw))
    run_training(load_spec(path))
    return path


def test_a_new_job_and_an_unchanged_one_resume_without_notes(trained, tmp_path):
    fresh = check_resume(load_spec(trained, ["name=other"]))
    assert fresh.step is None and not fresh.refused and not fresh.notes
    operational = ["optim.log_every=5", "optim.keep_checkpoints=4", "resources.max_failures=2", "target=ray"]
    same = check_resume(load_spec(trained, operational))
    assert same.step == 3 and not same.refused and not same.notes


def test_architecture_masks_teacher_and_data_shape_changes_are_refused_naming_each_field(trained):
    check = check_resume(load_spec(trained, [
        "backbone.params.depth=3", "masks[0].params.num_blocks=4", "teacher.params.momentum=[0.99,1.0]",
        "data.frames=8",
    ]))
    assert check.step == 3
    assert check.refused == [
        "backbone.params.depth: 2 -> 3", "data.frames: 4 -> 8", "masks[0].params.num_blocks: 8 -> 4",
        "teacher.params.momentum: [0.998, 1.0] -> [0.99, 1.0]",
    ]
    with pytest.raises(ConfigError) as e:
        check.raise_if_refused()
    assert "holds a different run (checkpointed at step 3)" in str(e.value)
    assert "name=first-2" in str(e.value)


def test_a_longer_run_is_allowed_and_says_what_happens_to_the_schedules(trained):
    check = check_resume(load_spec(trained, ["optim.steps=8", "optim.lr=0.002"]))
    assert not check.refused
    assert check.notes == [
        "optim.lr: 0.000625 -> 0.002, optim.steps: 3 -> 8: the learning-rate, weight-decay and EMA-momentum "
        "schedules are recomputed over 10 steps (were 4) and followed from step 3 on: there, lr 0.000157 -> "
        "0.00177 and weight decay 0.347 -> 0.114"]
    assert check_resume(load_spec(trained, ["optim.betas=[0.9,0.95]"])).notes == [
        "optim.betas: [0.9, 0.999] -> [0.9, 0.95] (from step 3 on)"]
    shorter = check_resume(load_spec(trained, ["optim.steps=2"]))
    assert "has reached step 3 already; nothing is trained" in shorter.notes[-1]


def test_validate_dry_run_and_submit_refuse_before_anything_runs(trained, tmp_path):
    before = (tmp_path / "runs" / "first" / "metrics.jsonl").read_text()
    for command in (["validate"], ["submit", "--dry-run"], ["submit"]):
        result = runner.invoke(app, [*command, str(trained), "predictor.params.depth=2"])
        assert result.exit_code == 2, (command, result.output)
        assert "predictor.params.depth: 1 -> 2" in result.output
        assert "Submit under a new name" in result.output
    assert (tmp_path / "runs" / "first" / "metrics.jsonl").read_text() == before
    listed = runner.invoke(app, ["list", "--json"])
    assert "first" not in listed.stdout  # no job was recorded


def test_validate_and_dry_run_say_what_a_longer_run_does(trained):
    valid = runner.invoke(app, ["validate", str(trained), "optim.steps=6"])
    assert valid.exit_code == 0 and "schedules are recomputed over 8 steps" in valid.output
    dry = runner.invoke(app, ["submit", "--dry-run", str(trained), "optim.steps=6"])
    assert dry.exit_code == 0, dry.output
    assert "would resume from step 3" in dry.output and "followed from step 3" in dry.output


def test_a_checkpoint_of_another_model_fails_with_the_whole_loader_message(trained, tmp_path):
    """Without the spec file (a run of an older version) only loading finds the change; its message is
    shown from its start, with the missing keys."""
    (tmp_path / "runs" / "first" / SPEC_FILE).unlink()
    spec = load_spec(trained, ["backbone.params.depth=3", "optim.steps=4"])
    assert not check_resume(spec).refused
    with pytest.raises(TrainingError) as e:
        run_training(spec)
    text = str(e.value)
    assert text.startswith("checkpoint ") and "does not fit this job's model" in text
    assert 'Missing key(s) in state_dict: "encoder.blocks.2.' in text
    assert "submit under a new name" in text


def test_worker_errors_are_never_cut_at_the_start():
    class WorkerGroupError(Exception):  # what Ray Train raises, holding each worker's exception
        __module__ = "ray.train.v2.api.exceptions"

        def __init__(self, failures):
            super().__init__("Training failed due to worker errors")
            self.worker_failures = failures

    inner = RuntimeError('Error(s) in loading state_dict:\n\tMissing key(s): "a.b".\n\tsize mismatch for c')
    assert worker_error_message(WorkerGroupError({0: inner})) == (
        'RuntimeError: Error(s) in loading state_dict:\n\tMissing key(s): "a.b".\n\tsize mismatch for c')
    as_text = Exception("Traceback ...\njepa_platform.errors.TrainingError: checkpoint x does not fit:\nMissing a")
    assert worker_error_message(as_text) == "checkpoint x does not fit:\nMissing a"


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(trained, tmp_path, caplog):
    metrics = tmp_path / "runs" / "first" / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write('{"clips_per_s": 3.1, "loss": 0.5')  # what a kill during an append leaves
    assert [r["step"] for r in read_metrics(str(metrics))] == [1, 2, 3]
    notes = check_resume(load_spec(trained, ["optim.steps=5"])).notes  # what `submit` shows before it starts
    assert f"{metrics}: 1 unreadable line(s), what a kill during an append leaves, are dropped" in notes
    with caplog.at_level(logging.WARNING):
        row = run_training(load_spec(trained, ["optim.steps=5"]))
    assert row["resumed_from"] == 3
    assert "dropped 1 unreadable line(s)" in caplog.text
    assert [r["step"] for r in read_metrics(str(metrics))] == [1, 2, 3, 4, 5]


def test_an_unreadable_newest_checkpoint_gives_way_and_all_unreadable_stop_the_run(trained, tmp_path, caplog):
    ckpt = tmp_path / "runs" / "first" / "checkpoints"
    (ckpt / "step_00000003" / "state.pt").write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert run_training(load_spec(trained, ["optim.steps=4"]))["resumed_from"] == 2
    assert "step_00000003 cannot be read" in caplog.text

    for state in ckpt.glob("step_*/state.pt"):
        state.write_bytes(b"\x00" * 10)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs").rglob("*"))
    with pytest.raises(TrainingError) as e:
        run_training(load_spec(trained, ["optim.steps=6"]))
    assert str(e.value).startswith(f"{ckpt}: none of its 2 checkpoints can be read: step_00000004 (")
    assert "Nothing was deleted. Submit under a new name to start afresh" in str(e.value)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs").rglob("*")) == before


def test_a_multi_line_error_crosses_a_cluster_log_whole():
    """In-cluster drivers write errors into the job's log, which the client reads line by line: one event
    carries the whole message; an older driver's `error: ` lines are joined back."""
    message = "runs/x holds a different run (checkpointed at step 3). Changed:\n  backbone.params.depth: 2 -> 3"
    log = [encode(Row({"step": 1, "loss": 0.5})), encode(Error("an earlier failure")), "stage x: resuming at step 3",
           encode(Error(message)), "done"]
    reader = EventReader()
    for line in log:
        reader.feed(line)
    assert reader.last_error == message and reader.last_step == 1
    legacy = EventReader()
    for line in ["step=2 loss=0.4", *(f"error: {line}" for line in message.splitlines()), "done"]:
        legacy.feed(line)
    assert legacy.last_error == message and legacy.last_step == 2

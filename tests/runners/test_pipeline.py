"""Pipeline specs: stages expand, run in order, skip when complete, resume when interrupted."""

import hashlib
import json
from pathlib import Path

import pytest

from jepa_platform.errors import ConfigError, TrainingError
from jepa_platform.layout import TEACHER_PIN
from jepa_platform.runners import run_stages
from jepa_platform.runners.local import RunResult, latest_step
from jepa_platform.spec import SpecError, validate_spec
from jepa_platform.train.job import run_training
from jepa_platform.train.resume import check_stages


class InProcessRunner:
    """Runs each stage with the plain-PyTorch trainer in this process (the local runner does the same
    inside Ray Train); records the order stages ran in."""

    def __init__(self, fail_at: str | None = None):
        self.ran: list[str] = []
        self.fail_at = fail_at

    def submit(self, spec, on_row=None):
        self.ran.append(spec.name)
        if spec.name == self.fail_at:
            run_training(spec.model_copy(update={"optim": spec.optim.model_copy(update={"steps": 2})}))
            return RunResult(spec.name, spec.job_dir, "FAILED", 2, {}, None, error="stopped")
        row = run_training(spec)
        return RunResult(spec.name, spec.job_dir, "SUCCEEDED", row["step"], row, latest_step(spec)[1])


def salt_raw(tmp_path, manifest):
    tiny = {"size": "custom", "embed_dim": 48, "depth": 2, "num_heads": 3, "patch_size": 16}
    return {
        "name": "salt",
        "backbone": {"kind": "vit", "params": tiny},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "optim": {"steps": 3, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 1},
        "data": {"train": str(manifest), "frames": 4, "stride": 2, "resolution": 32, "loader_workers": 0},
        "storage": {"output": str(tmp_path / "runs")},
        "stages": [
            {"name": "teacher", "teacher": {"kind": "pixel", "params": {"decoder_dim": 32, "decoder_depth": 1,
                                                                          "decoder_heads": 2}}},
            {"name": "student", "optim": {"steps": 4},
             "backbone": {"params": {"embed_dim": 64, "num_heads": 4}},
             "teacher": {"kind": "frozen", "params": {"checkpoint": "stage:teacher",
                                                      "backbone": {"kind": "vit", "params": tiny}}}},
        ],
    }


def test_stages_merge_over_the_job_and_refer_to_earlier_stages(tmp_path):
    spec = validate_spec(salt_raw(tmp_path, "train.csv"))
    teacher, student = spec.pipeline()
    assert teacher.job_dir == str(tmp_path / "runs" / "salt" / "teacher")
    assert student.optim.steps == 4 and student.optim.batch_size == 2  # merged, not replaced
    assert student.backbone.params["embed_dim"] == 64 and student.backbone.params["depth"] == 2
    assert student.teacher.params["checkpoint"] == str(tmp_path / "runs" / "salt" / "teacher" / "checkpoints")


def test_a_reference_to_a_later_stage_is_refused(tmp_path):
    raw = salt_raw(tmp_path, "train.csv")
    raw["stages"].reverse()
    with pytest.raises(SpecError, match=r"stages\[0\]\.teacher\.params\.checkpoint: 'stage:teacher' must name an "):
        validate_spec(raw)


def test_stage_errors_carry_the_stage_path(tmp_path):
    raw = salt_raw(tmp_path, "train.csv")
    raw["stages"][1]["optim"] = {"steps": "lots"}
    with pytest.raises(SpecError, match=r"stages\[1\]\.optim\.steps: Input should be a valid integer"):
        validate_spec(raw)


def test_pipeline_runs_in_order_skips_completed_and_resumes_a_failed_stage(tmp_path, synthetic_dataset):
    spec = validate_spec(salt_raw(tmp_path, synthetic_dataset))
    teacher, student = spec.pipeline()

    broken = InProcessRunner(fail_at="student")
    results = run_stages(spec, broken)
    assert broken.ran == ["teacher", "student"]
    assert [r.status for r in results] == ["SUCCEEDED", "FAILED"]
    assert latest_step(student)[0] == 2

    events = []
    again = InProcessRunner()
    results = run_stages(spec, again, on_stage=lambda s, event, step: events.append((s.name, event, step)))
    assert again.ran == ["student"]
    assert events == [("teacher", "skipped", 3), ("student", "resuming", 2)]
    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"]
    assert latest_step(student)[0] == 4

    only = InProcessRunner()
    run_stages(spec, only, stage="teacher")
    assert only.ran == []  # complete, so skipped even when asked for alone
    with pytest.raises(ConfigError, match="no stage 'probe'"):
        run_stages(spec, only, stage="probe")


def test_each_stage_records_its_flops_and_the_student_counts_the_teacher_stage(tmp_path, synthetic_dataset):
    import json

    from jepa_platform.train.metrics import read_metrics

    spec = validate_spec(salt_raw(tmp_path, synthetic_dataset))
    run_stages(spec, InProcessRunner())
    teacher, student = spec.pipeline()
    t_info = json.loads((tmp_path / "runs/salt/teacher/flops.json").read_text())
    s_info = json.loads((tmp_path / "runs/salt/student/flops.json").read_text())
    assert t_info["per_step"]["teacher_forward"] == 0  # pixel targets cost no model FLOPs
    assert s_info["per_step"]["teacher_forward"] > 0
    assert s_info["upstream_flops"] == t_info["run_flops"] == t_info["per_step"]["total"] * 3
    last = read_metrics(str(tmp_path / "runs/salt/student/metrics.jsonl"))[-1]
    assert last["flops"] == pytest.approx(4 * s_info["per_step"]["total"])
    assert last["pipeline_flops"] == pytest.approx(t_info["run_flops"] + last["flops"])


def test_a_probe_stage_evaluates_the_student_it_names_and_is_skipped_once_done(tmp_path, synthetic_dataset):
    from jepa_platform.eval import run_probe
    from jepa_platform.runners.local import probe_results, probe_settings

    class ProbingRunner(InProcessRunner):
        def submit(self, spec, on_row=None):
            if spec.probe is None:
                return super().submit(spec, on_row)
            self.ran.append(spec.name)
            report = run_probe(probe_settings(spec))
            return RunResult(spec.name, spec.job_dir, "SUCCEEDED", spec.probe.epochs, {"top1": report.best_result.top1},
                             None)

    raw = salt_raw(tmp_path, synthetic_dataset)
    raw["stages"].append({"name": "probe", "probe": {
        "checkpoint": "stage:student", "train": str(synthetic_dataset), "val": str(synthetic_dataset),
        "epochs": 2, "batch_size": 4, "workers": 0, "probe": {"kind": "attentive", "params": {"num_heads": 4}}}})
    spec = validate_spec(raw)
    probe = spec.pipeline()[2]
    assert probe.probe.checkpoint == str(tmp_path / "runs" / "salt" / "student" / "checkpoints")
    assert probe.length == 2

    runner = ProbingRunner()
    run_stages(spec, runner)
    assert runner.ran == ["teacher", "student", "probe"]
    results = probe_results(probe)
    assert results is not None and 0.0 <= results["results"][results["best"]]["top1"] <= 1.0
    assert (tmp_path / "runs/salt/probe/confusion.png").is_file()
    again = ProbingRunner()
    run_stages(spec, again)
    assert again.ran == []


def test_a_student_stays_pinned_to_the_teacher_checkpoint_it_started_with(tmp_path, synthetic_dataset):
    """Issue 21.2: the teacher stage trains on (or its file is rewritten); resuming the student refuses,
    naming both checkpoints, until the user accepts the new teacher with `follow_checkpoint`."""
    raw = salt_raw(tmp_path, synthetic_dataset)
    raw["stages"][1]["optim"] = {"steps": 2}
    run_stages(validate_spec(raw), InProcessRunner())
    student_dir = tmp_path / "runs" / "salt" / "student"
    pin = json.loads((student_dir / TEACHER_PIN).read_text())
    assert pin["step"] == 3 and pin["checkpoint"].endswith("salt/teacher/checkpoints/step_00000003/state.pt")
    assert pin["sha256"] == hashlib.sha256(Path(pin["checkpoint"]).read_bytes()).hexdigest()

    # both stages lengthened: the teacher would train on under the student, so nothing runs
    raw["stages"][0]["optim"] = {"steps": 5}
    raw["stages"][1]["optim"] = {"steps": 4}
    runner = InProcessRunner()
    with pytest.raises(ConfigError, match=r"stages\[1\].teacher.params.checkpoint: stage teacher trains on from "
                       r"step 3 to 5, but stage student started with its step-3 checkpoint"):
        run_stages(validate_spec(raw), runner)
    assert runner.ran == [] and latest_step(validate_spec(raw).pipeline()[0])[0] == 3

    # the teacher trains on by itself; then the student's own check refuses, before and inside the run
    run_stages(validate_spec(raw), InProcessRunner(), stage="teacher")
    spec = validate_spec(raw)
    refused = [c.refused for c in check_stages(spec, spec.pipeline())]
    assert refused[0] == [] and len(refused[1]) == 1 and "moved on to step 5" in refused[1][0]
    assert "set stages[1].teacher.params.follow_checkpoint=true" in refused[1][0]
    student = spec.pipeline()[1]
    with pytest.raises(TrainingError, match=r"started with the teacher at step 3 .*moved on to step 5"):
        run_training(student)  # what the worker checks, in case the teacher moved after the submission's check
    assert latest_step(student)[0] == 2  # the student did not train

    raw["stages"][1]["teacher"]["params"]["follow_checkpoint"] = True
    spec = validate_spec(raw)
    assert [c.refused for c in check_stages(spec, spec.pipeline())] == [[], []]
    run_stages(spec, InProcessRunner())
    assert latest_step(student)[0] == 4
    assert json.loads((student_dir / TEACHER_PIN).read_text())["step"] == 5

    # same file name, other content (the teacher stage deleted and trained again): found by its hash
    teacher_ckpt = tmp_path / "runs" / "salt" / "teacher" / "checkpoints"
    older = (teacher_ckpt / "step_00000004" / "state.pt").read_bytes()
    (teacher_ckpt / "step_00000005" / "state.pt").write_bytes(older)
    raw["stages"][1]["teacher"]["params"]["follow_checkpoint"] = False
    raw["stages"][1]["optim"] = {"steps": 5}
    with pytest.raises(TrainingError, match=r"at step 5 .* has been rewritten"):
        run_stages(validate_spec(raw), InProcessRunner())

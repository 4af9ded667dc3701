"""The `jepa` command line, without starting any job (those are in test_local_runner.py)."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from jepa_platform.cli import app

runner = CliRunner()


def spec_file(tmp_path, **changes):
    (tmp_path / "train.csv").touch()  # a local manifest must exist to validate (its videos are read when it runs)
    raw = {"name": "cli-job", "data": {"train": str(tmp_path / "train.csv")}, **changes}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_validate_prints_the_resolved_spec_and_exits_zero(tmp_path):
    result = runner.invoke(app, ["validate", str(spec_file(tmp_path)), "optim.steps=50"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout)
    assert resolved["optim"]["steps"] == 50
    assert resolved["masks"][0]["params"]["num_blocks"] == 8


def test_spec_errors_are_one_message_with_exit_code_2(tmp_path):
    result = runner.invoke(app, ["validate", str(spec_file(tmp_path)), "masks[1].params.num_blocks=x"])
    assert result.exit_code == 2
    assert "masks[1].params.num_blocks: Input should be a valid integer" in result.stderr
    assert "Traceback" not in result.output


def test_missing_spec_file_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["submit", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "no such spec file" in result.stderr


def test_unknown_target_is_refused_before_anything_runs(tmp_path):
    result = runner.invoke(app, ["submit", str(spec_file(tmp_path)), "--target", "nowhere"])
    assert result.exit_code == 2
    assert "unknown runners kind 'nowhere'" in result.stderr


def test_dry_run_reports_target_and_output_without_running(tmp_path):
    path = spec_file(tmp_path, storage={"output": str(tmp_path / "runs")})
    result = runner.invoke(app, ["submit", str(path), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["target"] == "local" and info["resume_from"] is None
    assert info["job_dir"] == str(tmp_path / "runs" / "cli-job")
    assert not (tmp_path / "runs").exists()


def test_components_lists_builtins_with_provider_and_defaults():
    result = runner.invoke(app, ["components", "maskers", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["multiblock"]["provider"] == "builtin"
    assert rows["multiblock"]["params"]["num_blocks"] == 8
    assert {"tube", "random"} <= rows.keys()
    assert runner.invoke(app, ["components", "gadgets"]).exit_code == 2
    everything = runner.invoke(app, ["components", "--json"])
    assert "PydanticUndefined" not in everything.stdout  # required params and default factories read plainly
    rows = {(r["family"], r["name"]): r["params"] for r in json.loads(everything.stdout)}
    assert rows["teachers", "frozen"]["checkpoint"] == "(required)"
    assert rows["runners", "kubernetes"]["secrets"] == {"env_from": [], "env": {}, "gcs_key": None}


def test_plugins_lists_the_builtin_plugin_and_its_hooks():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert "jepa_register_maskers" in plugins["builtin"]["hooks"]
    assert "vit" in plugins["builtin"]["components"]["backbones"]


def test_schema_is_json_schema_of_the_spec():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "optim" in schema["properties"] and "x-jepa-components" in schema


def test_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and "jepa-platform" in result.stdout


def test_status_of_unknown_job_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA_HOME", str(tmp_path))
    result = runner.invoke(app, ["status", "nope"])
    assert result.exit_code == 2
    assert "no job 'nope'" in result.stderr


def test_flops_prints_per_stage_and_total_before_launch(tmp_path):
    from pathlib import Path

    example = Path(__file__).parent.parent / "examples" / "salt-quickstart.yaml"
    result = runner.invoke(app, ["flops", str(example), f"storage.output={tmp_path}", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    stages = report["stages"]
    assert list(stages) == ["teacher", "student"]
    assert stages["teacher"]["per_step"]["teacher_forward"] == 0
    assert stages["student"]["per_step"]["teacher_forward"] > 0  # estimated from teacher.params.backbone
    assert stages["student"]["steps"] == 60
    assert report["total"] == sum(s["schedule"]["total"] for s in stages.values())


def test_a_detached_cluster_job_exits_130_with_how_to_follow_it(tmp_path, monkeypatch):
    import jepa_platform.runners as runners
    from jepa_platform.errors import JobDetached

    def detach(*args, **kwargs):
        raise JobDetached("cli-job-1", "Ray job cli-job-1")

    monkeypatch.setattr(runners, "submit", detach)
    result = runner.invoke(app, ["submit", str(spec_file(tmp_path, storage={"output": str(tmp_path / "runs")}))])
    assert result.exit_code == 130
    assert result.stderr.startswith("detached: stopped following job cli-job-1")
    assert "error" not in result.stderr and "Traceback" not in result.output


def test_progress_off_a_terminal_is_timestamped_lines_written_as_rows_come(tmp_path):
    import io
    import re

    from rich.console import Console

    from jepa_platform.cli import StageProgress
    from jepa_platform.spec import validate_spec

    spec = validate_spec({"name": "lines", "data": {"train": str(tmp_path / "t.csv")},
                          "optim": {"steps": 20, "warmup_steps": 0}})
    buffer = io.StringIO()
    with StageProgress(enabled=True, console=Console(file=buffer, width=200)) as progress:
        progress.on_stage(spec, "starting", None)
        progress.on_row({"phase": "building the model"})
        progress.on_row({"step": 10, "loss": 0.5, "clips_per_s": 3.0, "rankme_targets": 41.5})
        written = buffer.getvalue()  # already there, before the job ends
        progress.on_row({"step": 20, "loss": 0.4, "clips_per_s": 3.1,
                         "collapse": "collapse suspected since step 10: std_targets 0 is below the floor 0.001"})
    lines = buffer.getvalue().splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), lines
    assert "lines: building the model" in lines[1]
    assert "lines step 10/20 loss 0.5000 3.0 clips/s rankme_targets 41.5" in written
    assert "warning: lines step 20: collapse suspected since step 10" in lines[3]


def test_status_says_since_which_step_and_why_a_run_is_thought_collapsed(tmp_path, monkeypatch):
    import json

    from jepa_platform.runners.jobstore import JobRecord, JobStore

    monkeypatch.setenv("JEPA_HOME", str(tmp_path))
    (tmp_path / "runs" / "sick").mkdir(parents=True)
    (tmp_path / "runs" / "sick" / "collapse.json").write_text(json.dumps(
        {"since": 40, "step": 60, "rule": "rankme_targets", "reason": "rankme_targets 1.2 is below 0.1 x ..."}))
    store = JobStore()
    store.save(JobRecord("sick-1", "sick", "local", str(tmp_path / "runs" / "sick"), status="SUCCEEDED", step=100))
    result = runner.invoke(app, ["status", "sick-1"])
    assert result.exit_code == 0, result.output
    assert "warning: sick: collapse suspected since step 40: rankme_targets 1.2" in result.stderr
    assert json.loads(runner.invoke(app, ["status", "sick-1", "--json"]).stdout)["collapse"]["sick"]["since"] == 40


def test_progress_on_a_terminal_shows_the_phase_then_the_bar(tmp_path):
    import io

    from rich.console import Console

    from jepa_platform.cli import StageProgress
    from jepa_platform.spec import validate_spec

    spec = validate_spec({"name": "bar", "data": {"train": str(tmp_path / "t.csv")},
                          "optim": {"steps": 20, "warmup_steps": 0}})
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    with StageProgress(enabled=True, console=console) as progress:
        progress.on_stage(spec, "starting", None)
        progress.on_row({"phase": "starting Ray"})
        assert progress.progress.tasks[0].description == "bar (starting Ray)"
        progress.on_row({"step": 10, "loss": 0.5, "clips_per_s": 3.0, "rankme_targets": 41.5})
        task = progress.progress.tasks[0]
        assert (task.description, task.completed, task.fields["rank"]) == ("bar", 10, "41.5")


def test_an_unlabelled_val_set_is_refused_at_validation_naming_the_field(tmp_path, synthetic_dataset):
    flat = synthetic_dataset.parent / "all-zero.csv"
    flat.write_text("".join(f"{line.split()[0]} 0\n" for line in synthetic_dataset.read_text().splitlines()))
    result = runner.invoke(app, ["validate", str(spec_file(tmp_path)), f"data.val={flat}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "data.val: every video of" in result.stderr and "same label" in result.stderr
    assert runner.invoke(app, ["validate", str(spec_file(tmp_path)), f"data.val={synthetic_dataset}"]).exit_code == 0


def one_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2 and lines[0].startswith("error:"), result.stderr  # a spec's "is invalid:" + its line
    return result.stderr


@pytest.mark.parametrize("content,expected", [
    (bytes(range(256)) * 2, "is not UTF-8 text"),
    (b"\x1f\x8b\x08\x00" + bytes(40), "is gzip-compressed"),
    ("name: caf\u00e9\n".encode("latin-1"), "is not UTF-8 text"),
    (b"name: a\x00\n", "is binary"),
    (b"a: " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b"name: a\nname: b\ndata: {train: x}\n", "line 2, column 1: not valid YAML: key 'name' is given twice"),
    (b"name: [a\n", "line 2, column 1: not valid YAML"),
])
def test_a_spec_file_that_is_not_one_gets_one_line_and_exit_2(tmp_path, content, expected):
    (tmp_path / "bad.yaml").write_bytes(content)
    assert expected in one_line(runner.invoke(app, ["validate", str(tmp_path / "bad.yaml")]))


def test_a_folder_given_as_the_spec_and_overrides_into_values_get_one_line(tmp_path):
    (tmp_path / "spec.yaml").mkdir()
    assert "is a folder" in one_line(runner.invoke(app, ["validate", str(tmp_path / "spec.yaml")]))
    (tmp_path / "x").mkdir()
    spec = spec_file(tmp_path / "x")
    assert "optim.steps" in one_line(runner.invoke(app, ["validate", str(spec), "optim.steps.x=1"]))
    assert "name is a value" in one_line(runner.invoke(app, ["validate", str(spec), "name[0]=x"]))
    assert "optim.lr: Input should be a finite number" in one_line(
        runner.invoke(app, ["validate", str(spec), "optim.lr=inf"]))
    assert "monitor.collapse.std_floor: Input should be a finite number" in one_line(
        runner.invoke(app, ["validate", str(spec), "monitor.collapse.std_floor=nan"]))


def test_what_would_fail_at_the_first_batch_is_refused_by_validate(tmp_path):
    spec = spec_file(tmp_path)
    result = runner.invoke(app, ["validate", str(spec), f"data.train={tmp_path / 'nothere.csv'}"])
    assert f"data.train: no such file or folder: {tmp_path / 'nothere.csv'}" in one_line(result)
    whole = "masks=[{kind: multiblock, params: {num_blocks: 4, spatial_scale: [1.0, 1.0], aspect_ratio: [1.0, 1.0]}}]"
    result = runner.invoke(app, ["validate", str(spec), whole, "data.resolution=64", "data.frames=4"])
    assert "masks[0].params:" in one_line(result) and "leaving no context" in result.stderr

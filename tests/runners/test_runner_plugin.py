"""A runner from a plugin package (the example plugin's `inprocess`) is chosen by `target` and driven by
the same commands as the built-in ones: `jepa submit` (waiting and detached), `status`, `logs`, `cancel`."""

import json
import time

import yaml
from typer.testing import CliRunner

from jepa_platform.cli import app
from jepa_platform.runners import session_members
from jepa_platform.spec import validate_spec
from jepa_platform.train.metrics import read_metrics

cli = CliRunner()


def spec_file(tmp_path, manifest, name, steps, **target):
    raw = {
        "name": name,
        "target": {"kind": "inprocess", "params": target} if target else "inprocess",
        "backbone": {"kind": "vit", "params": {"size": "custom", "embed_dim": 48, "depth": 2, "num_heads": 3,
                                               "patch_size": 16}},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "optim": {"steps": steps, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 2},
        "data": {"train": str(manifest), "frames": 4, "stride": 2, "resolution": 32, "loader_workers": 0},
        "storage": {"output": str(tmp_path / "runs")},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_target_names_a_plugin_runner_whose_params_its_own_model_validates(tmp_path):
    spec = validate_spec({"name": "x", "data": {"train": "x.csv"}, "target": {"kind": "inprocess"}})
    assert spec.target.model_dump() == {"kind": "inprocess", "params": {"device": "cpu"}}
    assert validate_spec({"name": "x", "data": {"train": "x.csv"}, "target": "k8s"}).target.kind == "kubernetes"
    bad = cli.invoke(app, ["validate", str(spec_file(tmp_path, "x.csv", "x", 2, devic="cuda"))])
    assert bad.exit_code == 2 and "target.params.devic: Extra inputs are not permitted" in bad.output
    unknown = cli.invoke(app, ["validate", str(spec_file(tmp_path, "x.csv", "x", 2)), "target=nowhere"])
    assert unknown.exit_code == 2 and "target.kind: unknown runners kind 'nowhere'" in unknown.output


def test_submit_status_logs_and_cancel_drive_a_plugin_runner(tmp_path, synthetic_dataset):
    done = cli.invoke(app, ["submit", str(spec_file(tmp_path, synthetic_dataset, "here", 3)), "--quiet"])
    assert done.exit_code == 0, done.output
    status = json.loads(cli.invoke(app, ["status", "here", "--json"]).stdout)
    assert (status["target"], status["status"], status["step"]) == ("inprocess", "SUCCEEDED", 3)
    assert [r["step"] for r in read_metrics(str(tmp_path / "runs" / "here" / "metrics.jsonl"))] == [1, 2, 3]
    assert "step=3" in cli.invoke(app, ["logs", "here"]).stdout

    started = cli.invoke(app, ["submit", str(spec_file(tmp_path, synthetic_dataset, "away", 100_000)),
                               "--no-wait", "--json"])
    assert started.exit_code == 0, started.output
    pid = json.loads(started.stdout)["pid"]
    metrics = tmp_path / "runs" / "away" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and read_metrics(str(metrics))):
        assert time.time() < deadline, cli.invoke(app, ["logs", "away"]).stdout
        time.sleep(0.2)
    assert json.loads(cli.invoke(app, ["status", "away", "--json"]).stdout)["status"] == "RUNNING"
    cancelled = cli.invoke(app, ["cancel", "away"])
    assert cancelled.exit_code == 0 and "CANCELLED" in cancelled.stdout
    assert session_members(pid) == []

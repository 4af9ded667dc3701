"""`jepa submit` on the local target: embedded Ray, Ray Train TorchTrainer, real videos."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

from jepa_platform.cli import app
from jepa_platform.runners import session_members
from jepa_platform.train.metrics import read_metrics

pytestmark = pytest.mark.slow
runner = CliRunner()


def tiny_spec(tmp_path, manifest, name="job", **optim):
    raw = {
        "name": name,
        "backbone": {"kind": "vit", "params": {"size": "custom", "embed_dim": 48, "depth": 2, "num_heads": 3,
                                               "patch_size": 16}},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "optim": {"steps": 4, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 2, **optim},
        "data": {"train": str(manifest), "frames": 4, "stride": 2, "resolution": 32, "loader_workers": 0},
        "storage": {"output": str(tmp_path / "runs")},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_submit_trains_through_ray_train_and_resubmitting_resumes(tmp_path, synthetic_dataset):
    spec = tiny_spec(tmp_path, synthetic_dataset)
    sigint = signal.getsignal(signal.SIGINT)
    first = runner.invoke(app, ["submit", str(spec)])
    assert first.exit_code == 0, first.output
    assert signal.getsignal(signal.SIGINT) is sigint  # Ray Train's own Ctrl-C handler does not outlive the run
    job_dir = tmp_path / "runs" / "job"
    assert [r["step"] for r in read_metrics(str(job_dir / "metrics.jsonl"))] == [1, 2, 3, 4]
    assert (job_dir / "checkpoints" / "step_00000004" / "state.pt").is_file()
    assert yaml.safe_load((job_dir / "spec.resolved.yaml").read_text())["optim"]["steps"] == 4
    logged = runner.invoke(app, ["logs", "job"]).output.splitlines()  # the loop's events, through Ray
    counted = json.loads(runner.invoke(app, ["flops", str(spec), "--json"]).stdout)["stages"]["job"]["per_step"]
    written = json.loads((job_dir / "flops.json").read_text())["per_step"]
    assert counted == written  # counted once for the stage, as `jepa flops` counts it, and handed down
    assert [r["flops"] for r in read_metrics(str(job_dir / "metrics.jsonl"))] == [
        pytest.approx(s * counted["total"]) for s in (1, 2, 3, 4)]
    stamped = [line.split()[2] for line in logged if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d step=", line)]
    assert stamped == [f"step={i}" for i in (1, 2, 3, 4)]  # each event line with the time it was said

    second = runner.invoke(app, ["submit", str(spec), "optim.steps=6"])
    assert second.exit_code == 0, second.output
    assert "Resuming job from step 4" in second.output
    rows = read_metrics(str(job_dir / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]

    third = runner.invoke(app, ["submit", str(spec), "optim.steps=6"])
    assert third.exit_code == 0 and "already completed 6/6" in third.output

    listed = runner.invoke(app, ["status", "job", "--json"])
    assert '"SUCCEEDED"' in listed.stdout


def test_two_workers_train_with_ddp_and_resume(tmp_path, synthetic_dataset):
    spec = tiny_spec(tmp_path, synthetic_dataset, name="ddp")
    result = runner.invoke(app, ["submit", str(spec), "resources.workers=2", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = read_metrics(str(tmp_path / "runs" / "ddp" / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["workers"] == 2 for r in rows)
    assert (tmp_path / "runs" / "ddp" / "checkpoints" / "step_00000004" / "state.pt").is_file()

    again = runner.invoke(app, ["submit", str(spec), "resources.workers=2", "optim.steps=6"])
    assert again.exit_code == 0, again.output
    assert "Resuming ddp from step 4" in again.output
    assert [r["step"] for r in read_metrics(str(tmp_path / "runs" / "ddp" / "metrics.jsonl"))] == [1, 2, 3, 4, 5, 6]


def test_a_probe_job_runs_through_ray_train_on_two_workers(tmp_path, synthetic_dataset):
    import json

    raw = yaml.safe_load(tiny_spec(tmp_path, synthetic_dataset, name="probe").read_text())
    raw["resources"] = {"workers": 2}
    raw["probe"] = {"checkpoint": None, "backbone": raw["backbone"], "train": str(synthetic_dataset),
                    "val": str(synthetic_dataset), "frames": 4, "stride": 2, "resolution": 32, "epochs": 2,
                    "batch_size": 2, "workers": 0, "probe": {"kind": "attentive", "params": {"num_heads": 3}}}
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["submit", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "runs" / "probe" / "results.json").read_text())
    assert results["val_items"] == 12 and 0.0 <= results["results"][0]["top1"] <= 1.0
    assert (tmp_path / "runs" / "probe" / "confusion.csv").is_file()


def test_a_failing_job_exits_1_with_the_workers_message(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    manifest = tmp_path / "bad.csv"
    manifest.write_text("".join(f"bad.mp4 {i % 2}\n" for i in range(6)))
    spec = tiny_spec(tmp_path, manifest, name="broken")
    result = runner.invoke(app, ["submit", str(spec), "--quiet"])
    assert result.exit_code == 1
    assert "bad.mp4" in result.stderr
    assert "Traceback" not in result.output


def test_no_wait_job_can_be_followed_and_cancelled(tmp_path, synthetic_dataset):
    spec = tiny_spec(tmp_path, synthetic_dataset, name="background", steps=100000, checkpoint_every=1000)
    jepa = [sys.executable, "-m", "jepa_platform.cli"]
    out = subprocess.run([*jepa, "submit", str(spec), "--no-wait", "--json"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    deadline = time.time() + 120
    while time.time() < deadline:
        logs = subprocess.run([*jepa, "logs", "background"], capture_output=True, text=True).stdout
        if "step=2 " in logs:
            break
        time.sleep(1)
    assert "step=2 " in logs
    status = subprocess.run([*jepa, "status", "background"], capture_output=True, text=True).stdout
    assert "RUNNING" in status
    cancelled = subprocess.run([*jepa, "cancel", "background"], capture_output=True, text=True)
    assert cancelled.returncode == 0 and "CANCELLED" in cancelled.stdout
    time.sleep(2)
    final = json.loads(subprocess.run([*jepa, "status", "background", "--json"], capture_output=True,
                                      text=True).stdout)
    assert final["status"] == "CANCELLED"
    assert final["step"] >= 2 and final["error"] == f"cancelled at step {final['step']}; submitting again resumes"
    listed = subprocess.run([*jepa, "list"], capture_output=True, text=True).stdout
    assert "background" in listed


def _latest_checkpoint_step(job_dir) -> int:
    pointer = job_dir / "checkpoints" / "latest"
    try:
        return int(pointer.read_text().strip().rsplit("_", 1)[-1])
    except (FileNotFoundError, ValueError):
        return 0


def _run_detached_until(jepa, spec, job_dir, step: int, timeout: float = 180) -> int:
    """Starts `spec` with --no-wait and returns its pid once a checkpoint at or past `step` exists."""
    out = subprocess.run([*jepa, "submit", str(spec), "--no-wait", "--json"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    pid = int(yaml.safe_load(out.stdout)["pid"])
    deadline = time.time() + timeout
    while _latest_checkpoint_step(job_dir) < step:
        assert time.time() < deadline, f"no checkpoint at step {step} within {timeout} s"
        time.sleep(0.2)
    return pid


def test_a_run_past_the_pruning_limit_resumes_after_cancel_kill_and_extension(tmp_path, synthetic_dataset):
    """Issue 10.1: more checkpoints than `keep_checkpoints`, then cancel, kill -9 and a longer schedule.

    Each resume must work and the end result must be the weights of a run that was never interrupted.
    """
    import torch

    jepa = [sys.executable, "-m", "jepa_platform.cli"]
    steps = 150  # about 15 s of training: long enough that cancel and kill land mid-run
    reference = tiny_spec(tmp_path, synthetic_dataset, name="straight", steps=steps, checkpoint_every=1)
    done = runner.invoke(app, ["submit", str(reference), "--quiet"])
    assert done.exit_code == 0, done.output

    spec = tiny_spec(tmp_path, synthetic_dataset, name="bumpy", steps=steps, checkpoint_every=1)
    job_dir = tmp_path / "runs" / "bumpy"
    session = _run_detached_until(jepa, spec, job_dir, step=4)  # keep_checkpoints=2: steps 1, 2 pruned by now
    cancelled = subprocess.run([*jepa, "cancel", "bumpy"], capture_output=True, text=True, timeout=60)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert session_members(session) == []  # Ray's workers too: nothing writes to the folder any more
    reached = _latest_checkpoint_step(job_dir)
    time.sleep(2)
    assert _latest_checkpoint_step(job_dir) == reached

    pid = _run_detached_until(jepa, spec, job_dir, step=reached + 4)
    os.killpg(pid, signal.SIGKILL)  # the driver and its group; Ray's workers (groups of their own) die after it
    deadline = time.time() + 60
    while session_members(pid):
        assert time.time() < deadline, "processes of the killed job are still running"
        time.sleep(0.2)
    killed_at = _latest_checkpoint_step(job_dir)
    assert killed_at < steps, "the run finished before it could be killed; the test proves nothing"

    resumed = runner.invoke(app, ["submit", str(spec)])
    assert resumed.exit_code == 0, resumed.output
    assert f"Resuming bumpy from step {killed_at}" in resumed.output
    assert sorted(p.name for p in (job_dir / "checkpoints").iterdir()) == [
        "latest", f"step_{steps - 1:08d}", f"step_{steps:08d}"]
    rows = read_metrics(str(job_dir / "metrics.jsonl"))
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # no gap, no duplicate

    final = f"step_{steps:08d}/state.pt"
    ours = torch.load(job_dir / "checkpoints" / final, weights_only=True)["student"]
    theirs = torch.load(tmp_path / "runs" / "straight" / "checkpoints" / final, weights_only=True)["student"]
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key

    extended = runner.invoke(app, ["submit", str(spec), f"optim.steps={steps + 2}", "--quiet"])
    assert extended.exit_code == 0, extended.output
    assert [r["step"] for r in read_metrics(str(job_dir / "metrics.jsonl"))][-3:] == [steps, steps + 1, steps + 2]

"""A Ray Train worker killed mid-run: with `max_failures` the workers restart, the user is told, and the run
resumes to its end with metrics free of gaps and duplicates; without, the job fails with one line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner
from user_facing import tiny_training

from jepa_platform.cli import app
from jepa_platform.runners import session_members
from jepa_platform.train.metrics import read_metrics

pytestmark = pytest.mark.slow


def train_worker_pids(session: int) -> list[int]:
    """Processes of Ray Train's worker actors in the job's session (not another job's on this machine)."""
    found = []
    for pid in session_members(session):
        try:
            if b"RayTrainWorker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def run_and_kill_a_worker(tmp_path, manifest, name, max_failures, steps=40):
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(tiny_training(name, manifest, tmp_path / "runs", steps, optim={
        "checkpoint_every": 2}, resources={"max_failures": max_failures})))
    env = {**os.environ, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "jepa_platform.cli", "submit", str(spec)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = tmp_path / "runs" / name / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and len(read_metrics(str(metrics))) >= 4):
        assert time.monotonic() < deadline and proc.poll() is None, "the run did not reach step 4"
        time.sleep(0.1)
    victims = train_worker_pids(proc.pid)
    assert victims, "no Ray Train worker process found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err, read_metrics(str(metrics))


def test_a_killed_worker_restarts_and_the_run_resumes_when_failures_are_allowed(tmp_path, synthetic_dataset):
    code, out, err, rows = run_and_kill_a_worker(tmp_path, synthetic_dataset, "restarts", max_failures=2)
    assert code == 0, out + err
    assert "a worker failed and Ray Train restarted the workers (restart 1)" in out
    assert [r["step"] for r in rows] == list(range(1, 41))  # resumed from its checkpoint: no gap, no duplicate
    status = CliRunner().invoke(app, ["status", "restarts"])
    assert "SUCCEEDED" in status.stdout and "worker restarts: 1" in status.stderr


def test_a_killed_worker_fails_the_job_with_one_line_when_no_failure_is_allowed(tmp_path, synthetic_dataset):
    code, out, err, rows = run_and_kill_a_worker(tmp_path, synthetic_dataset, "no-restarts", max_failures=0)
    assert code == 1, out + err
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no-restarts" in errors[0], err
    assert rows and rows[-1]["step"] < 40

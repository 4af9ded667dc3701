"""Checkpoints under faults: a write that fails is said and retried while the run goes on; kill -9 at random
moments, inside a checkpoint write too, loses nothing, and the resumed run ends with the weights of a run
that was never interrupted, its metrics without gaps or duplicates."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from user_facing import tiny_training

from jepa_platform.errors import TrainingError
from jepa_platform.events import Notice, Row
from jepa_platform.spec import validate_spec
from jepa_platform.train.checkpoint import CheckpointStore
from jepa_platform.train.job import run_training
from jepa_platform.train.metrics import read_metrics


def raw_spec(tmp_path, manifest, name, steps=8):
    return tiny_training(name, manifest, tmp_path / "runs", steps, optim={"keep_checkpoints": 3})


def test_a_checkpoint_that_cannot_be_written_is_said_and_retried_and_the_run_goes_on(
        tmp_path, synthetic_dataset, monkeypatch):
    real = CheckpointStore.save
    failing = {4}

    def flaky(self, step, state):
        if step in failing:
            raise OSError(28, "No space left on device")
        return real(self, step, state)

    monkeypatch.setattr(CheckpointStore, "save", flaky)
    events = []
    run_training(validate_spec(raw_spec(tmp_path, synthetic_dataset, "flaky", steps=6)), on_event=events.append)
    rows = {e.values["step"]: e.values for e in events if isinstance(e, Row) and "step" in e.values}
    assert "could not be written (OSError: [Errno 28] No space left on device)" in rows[5]["checkpoint_failed"]
    assert "checkpoint_failed" not in rows[4] and "checkpoint_failed" not in rows[6]  # said once, in the next row
    assert [e.message for e in events if isinstance(e, Notice)] == [rows[5]["checkpoint_failed"]]
    store = CheckpointStore(str(tmp_path / "runs" / "flaky" / "checkpoints"))
    assert store.latest().endswith("step_00000006")

    failing.update({7, 8})  # the last checkpoint fails: the run cannot say it succeeded
    with pytest.raises(TrainingError, match="the checkpoint of step 8 could not be written"):
        run_training(validate_spec(raw_spec(tmp_path, synthetic_dataset, "flaky", steps=8)))
    assert store.latest().endswith("step_00000006")  # the last good one kept


KILLABLE = textwrap.dedent("""
    import json, os, sys, time
    import jepa_platform.train.checkpoint as checkpoint
    from jepa_platform.spec import validate_spec
    from jepa_platform.train.job import run_training

    raw, hold_at = json.loads(sys.argv[1]), int(sys.argv[2])
    real = checkpoint.write_bytes_atomic

    def slow_write(url, data):  # at the held step, half the state file is on disk when the kill comes
        if url.endswith(f"step_{hold_at:08d}/state.pt"):
            tmp = url + ".tmp-killed00"
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data[: len(data) // 2])
            open(sys.argv[3], "w").close()
            time.sleep(600)
        real(url, data)

    checkpoint.write_bytes_atomic = slow_write
    run_training(validate_spec(raw))
""")


@pytest.mark.slow
def test_kill_9_at_random_moments_and_inside_a_checkpoint_write_loses_nothing(tmp_path, synthetic_dataset):
    steps = 12
    straight = validate_spec(raw_spec(tmp_path, synthetic_dataset, "straight", steps))
    run_training(straight)
    raw = raw_spec(tmp_path, synthetic_dataset, "killed", steps)
    job = tmp_path / "runs" / "killed"
    rng = random.Random(28)
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    kills = []
    for hold_at in (rng.randint(2, 5), None, rng.randint(8, 11)):  # inside a write, at a random time, inside again
        ready = tmp_path / f"held-{len(kills)}"
        proc = subprocess.Popen([sys.executable, str(script), json.dumps(raw), str(hold_at or 0), str(ready)],
                                start_new_session=True)
        deadline = time.monotonic() + 120
        if hold_at:
            while not ready.exists():
                assert time.monotonic() < deadline and proc.poll() is None, "the held write was never reached"
                time.sleep(0.05)
        else:
            while CheckpointStore(str(job / "checkpoints")).latest() == kills[-1]:  # until it trains on
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.1))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        latest = CheckpointStore(str(job / "checkpoints")).latest()
        if hold_at:  # the half-written checkpoint is on disk, and never taken for one
            assert (job / "checkpoints" / f"step_{hold_at:08d}" / "state.pt.tmp-killed00").exists()
            assert latest.endswith(f"step_{hold_at - 1:08d}")
        kills.append(latest)
        for folder in (job / "checkpoints").glob("step_*"):  # every complete checkpoint loads
            if (folder / "state.pt").exists():
                torch.load(folder / "state.pt", weights_only=True)
    assert len(set(kills)) == 3  # each attempt got further

    run_training(validate_spec(raw))
    rows = read_metrics(str(job / "metrics.jsonl"))
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # no gap, no duplicate
    assert not list((job / "checkpoints").glob("**/*.tmp-*"))  # what the kills left is gone
    final = f"step_{steps:08d}/state.pt"
    ours = torch.load(job / "checkpoints" / final, weights_only=True)["student"]
    theirs = torch.load(tmp_path / "runs" / "straight" / "checkpoints" / final, weights_only=True)["student"]
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key

"""Workers that can never be scheduled end with one line, within a bounded time, instead of a job that sits
at step 0 for ever."""

import time

import pytest
import yaml
from typer.testing import CliRunner

from jepa_platform.cli import app
from jepa_platform.errors import TrainingError
from jepa_platform.runners import local
from jepa_platform.runners.jobstore import JobStore
from jepa_platform.spec.model import ResourcesSpec


@pytest.mark.slow
def test_more_workers_than_this_machine_has_is_refused_in_seconds(tmp_path, synthetic_dataset):
    spec = tmp_path / "greedy.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "greedy", "data": {"train": str(synthetic_dataset), "frames": 4, "resolution": 32},
        "backbone": {"kind": "vit", "params": {"size": "tiny"}}, "resources": {"workers": 64},
        "storage": {"output": str(tmp_path / "runs")}}))
    started = time.monotonic()
    result = CliRunner().invoke(app, ["submit", str(spec)])
    assert result.exit_code == 2, result.output
    assert time.monotonic() - started < 120
    assert "resources: 64 workers x 1 CPU need 64, there are" in result.stderr and "Traceback" not in result.output
    record = JobStore().get("greedy")
    assert record.status == "FAILED" and "64 workers" in record.error


def test_on_a_cluster_missing_resources_are_waited_for_then_named(monkeypatch):
    """An autoscaler may add nodes: the job waits `schedule_timeout_s`, then fails saying what is missing."""
    calls = []
    monkeypatch.setattr(local, "missing_resources", lambda r: calls.append(1) or ["8 workers x 1 GPU need 8"])
    started = time.monotonic()
    with pytest.raises(TrainingError, match=r"after 0.5 s the cluster still lacks .* 8 workers x 1 GPU need 8"):
        local.check_resources(ResourcesSpec(workers=8, gpus_per_worker=1, schedule_timeout_s=0.5), joined=True)
    assert 0.5 <= time.monotonic() - started < 5 and len(calls) >= 2
    polls = []  # the nodes come on the third look: it goes on
    monkeypatch.setattr(local, "missing_resources", lambda r: [] if len(polls) == 2 else polls.append(1) or ["x"])
    monkeypatch.setattr(local.time, "sleep", lambda s: None)
    local.check_resources(ResourcesSpec(schedule_timeout_s=30), joined=True)
    assert len(polls) == 2

"""The same kind of failure ends `jepa submit` with the same exit code whichever runner has the job (the
README's table, `jepa_platform.errors`)."""

from __future__ import annotations

import socket
import time

import pytest
import yaml
from fake_k8s import FakeKubernetes
from typer.testing import CliRunner

from jepa_platform.cli import app
from jepa_platform.plugins.manager import registry

IMAGE = "registry.example/jepa-platform:0.1.0"
cli = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def spec_file(tmp_path):
    """A small CPU job whose data and outputs are in a bucket, so that every target would accept it."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "name": "codes", "data": {"train": "s3://videos/train.csv"}, "storage": {"output": "s3://bucket/runs"},
        "optim": {"steps": 20, "warmup_steps": 2}, "resources": {"workers": 1, "cpus_per_worker": 1},
    }))
    return str(path)


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return tmp_path


def test_a_runner_param_that_is_wrong_exits_2_on_every_target(spec_file, jobs):
    for kind in registry("runners").names():
        result = cli.invoke(app, ["submit", spec_file, f"target.kind={kind}", "target.params.no_such_param=1"])
        assert result.exit_code == 2, (kind, result.output)
        assert "target.params.no_such_param: Extra inputs are not permitted" in result.output, kind


def test_a_cluster_that_cannot_be_reached_exits_3_on_every_cluster_target(spec_file, jobs, monkeypatch):
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    ray = cli.invoke(app, ["submit", spec_file, "--target", "ray", "--address", f"http://{closed}"])
    assert ray.exit_code == 3 and "cannot reach the Ray cluster" in ray.output, ray.output
    kubeconfig = FakeKubernetes().write_kubeconfig(jobs / "kubeconfig", server=f"http://{closed}")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    k8s = cli.invoke(app, ["submit", spec_file, "--target", "k8s", f"kubernetes.image={IMAGE}"])
    assert k8s.exit_code == 3 and "cannot reach the Kubernetes API server" in k8s.output, k8s.output
    status = cli.invoke(app, ["status", "codes", "--json"])  # the refusal is recorded, as on every target
    assert '"FAILED"' in status.output, status.output


def test_a_failed_cluster_job_exits_1_and_its_own_error_is_shown(spec_file, jobs, monkeypatch):
    with FakeKubernetes() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.write_kubeconfig(jobs / "kubeconfig")))

        def operator(fake, ns, name):  # KubeRay: cluster up, the driver fails, the job ends
            time.sleep(0.2)
            fake.set_rayjob_status(ns, name, "Running", "RUNNING")
            fake.add_submitter_pod(ns, name, 'jepa-event {"v": 1, "type": "row", "values": {"step": 3}}\n'
                                   'jepa-event {"v": 1, "type": "error", "message": "codes failed: loss is nan"}\n')
            time.sleep(0.2)
            fake.set_rayjob_status(ns, name, "Complete", "FAILED")

        api.on_create = operator
        result = cli.invoke(app, ["submit", spec_file, "--target", "k8s", f"kubernetes.image={IMAGE}", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "codes failed: loss is nan" in result.output


def test_ctrl_c_on_a_job_run_here_exits_130_and_records_where_it_stopped(spec_file, jobs, monkeypatch):
    """A runner whose stages run from this machine (`HostJobs`): interrupted after step 7, the record says
    so, not FAILED with a bare exit status."""
    from jepa_platform.runners import local
    from jepa_platform.runners import stages as stage_runner
    from jepa_platform.train.resume import ResumeCheck

    def interrupted(self, spec, on_row=None):
        on_row({"step": 7, "loss": 0.5})
        raise KeyboardInterrupt

    monkeypatch.setattr(local.LocalRunner, "submit", interrupted)
    unchecked = lambda job, stages, **_: [ResumeCheck(s.job_dir, None) for s in stages]  # noqa: E731 - no bucket
    monkeypatch.setattr(stage_runner, "check_stages", unchecked)
    monkeypatch.setattr(stage_runner, "latest_step", lambda spec: (None, None))
    monkeypatch.setattr("jepa_platform.runners.check_stages", unchecked)
    result = cli.invoke(app, ["submit", spec_file, "--quiet"])
    assert result.exit_code == 130, result.output
    status = cli.invoke(app, ["status", "codes"])
    assert "CANCELLED step 7/20" in status.output and "interrupted at step 7; submitting again resumes" in status.output

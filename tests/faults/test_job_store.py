"""A corrupt job store, job names that would leave it, and a kubeconfig that is not one: one line each, a
non-zero exit, and no record left behind for a job that never started."""

import json

import pytest
from typer.testing import CliRunner
from user_facing import one_error_line

from jepa_platform.cli import app
from jepa_platform.runners.jobstore import JobRecord, JobStore

runner = CliRunner()


@pytest.mark.parametrize("content", [b"{\"id\": \"broken-1\", \"na", b"\xff\xfe\x00garbage", b"[1, 2, 3]",
                                     b"{\"unexpected\": true}"])
def test_a_corrupt_record_is_one_line_and_the_other_jobs_still_list(content):
    store = JobStore()
    store.save(JobRecord("fine-20261207-000000-aaaa", "fine", "local", "/tmp/x", status="SUCCEEDED"))
    store.path("broken-1").write_bytes(content)
    line = one_error_line(runner.invoke(app, ["status", "broken-1"]))
    assert "job record" in line and "broken-1.json cannot be read" in line and "delete it" in line
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "fine" in listed.output
    assert runner.invoke(app, ["status", "fine"]).exit_code == 0


@pytest.mark.parametrize("name", ["../evil", "a/b", "/etc/passwd", "..", "UPPER", ""])
def test_job_names_that_would_leave_the_store_name_no_job(tmp_path, name):
    (JobStore().root.parent / "evil.json").write_text(json.dumps({"id": "evil", "name": "evil"}))
    for command in (["status", name], ["logs", name], ["cancel", name]):
        line = one_error_line(runner.invoke(app, command))
        assert "no job" in line


def test_a_corrupt_kubeconfig_is_one_line_and_leaves_no_job_record(tmp_path, monkeypatch):
    (tmp_path / "train.csv").touch()
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: kube-job\ndata: {train: s3://videos/train.csv}\nstorage: {output: s3://bucket/runs}\n"
                    "kubernetes: {image: registry.example/jepa:1}\n")
    for content in ("apiVersion: v1\nclusters: [\x00garbage", "apiVersion: v1\nkind: Config\ncontexts: 12\n"):
        (tmp_path / "kubeconfig").write_text(content)
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        line = one_error_line(runner.invoke(app, ["submit", str(spec), "--target", "k8s"]))
        assert f"kubeconfig {tmp_path / 'kubeconfig'} cannot be read" in line
        assert [r for r in JobStore().all() if r.name == "kube-job"] == []

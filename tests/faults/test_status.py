"""Status that matches reality when things break: a cluster job that dies without an error event still says
why, and a stage whose store cannot be read after the run is FAILED in one line."""

from jepa_platform.events import Error, EventReader, encode
from jepa_platform.runners import local
from jepa_platform.runners.cluster import failure_reason
from jepa_platform.spec import validate_spec


def test_a_failed_cluster_job_gives_its_error_else_the_clusters_message_else_its_last_line():
    silent = EventReader()
    assert failure_reason("SUCCEEDED", silent, "", ["done"]) is None
    assert failure_reason("FAILED", silent, "", ["MemoryError"]) == "MemoryError"  # a driver that could not say
    assert failure_reason("FAILED", silent, "Job entrypoint command failed with exit code 137", ["x"]) \
        == "Job entrypoint command failed with exit code 137"
    assert "without saying why" in failure_reason("FAILED", silent, "", [])
    said = EventReader()
    said.feed(encode(Error("data.train: no such file or folder: /data/train.csv")))
    assert failure_reason("FAILED", said, "exit 1", ["x"]) == "data.train: no such file or folder: /data/train.csv"


def test_a_store_unreadable_after_the_run_fails_the_stage_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "train.csv").touch()
    spec = validate_spec({"name": "gone", "data": {"train": str(tmp_path / "train.csv")},
                          "storage": {"output": str(tmp_path / "runs")}})

    def unreachable(url):
        raise ConnectionError("Could not connect to the endpoint URL: 'http://minio:9000/bucket'\nmore detail")

    monkeypatch.setattr(local, "read_metrics", unreachable)
    result = local.stage_result(spec, None, None)
    assert result.status == "FAILED" and "\n" not in result.error
    assert result.error.startswith(f"its outputs in {spec.job_dir} cannot be read (ConnectionError: Could not")
    result = local.stage_result(spec, "the worker died", None)
    assert result.error.startswith("the worker died; its outputs")


def test_jepa_status_sums_what_went_wrong_from_the_jobs_log():
    from typer.testing import CliRunner

    from jepa_platform.cli import app
    from jepa_platform.events import Notice, Row
    from jepa_platform.runners.jobstore import JobRecord, JobStore

    store = JobStore()
    store.save(JobRecord("rough-20261207-000000-abcd", "rough", "local", "/nowhere", status="SUCCEEDED", step=3,
                         steps=3))
    rows = [Row({"step": 1, "skipped_videos": 2, "skipped": "a.mp4 (x); b.mp4 (y)"}), Notice("skipped a.mp4"),
            Row({"phase": "a worker failed and Ray Train restarted the workers (restart 1)", "restarts": 1}),
            Row({"step": 2, "skipped_videos": 0, "checkpoint_failed": "the checkpoint of step 1 could not be written"}),
            Row({"step": 3, "skipped_videos": 1})]
    store.log_path("rough-20261207-000000-abcd").write_text("".join(encode(e) + "\n" for e in rows))
    assert store.faults("rough-20261207-000000-abcd") == {"skipped_videos": 3, "checkpoint_failures": 1,
                                                          "restarts": 1}
    result = CliRunner().invoke(app, ["status", "rough"])
    assert result.exit_code == 0
    assert ("unreadable videos skipped: 3, checkpoints that could not be written: 1, worker restarts: 1"
            in result.stderr)

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

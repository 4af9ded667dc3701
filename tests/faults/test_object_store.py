"""An object store (moto's S3 server) behind a proxy that can refuse connections or stop answering: a run
whose checkpoints and metrics live there says what failed, goes on, and ends as an uninterrupted run would
once the store is back; a store that stays frozen ends the run with one line in bounded time. The store is
reached through `storage.endpoint_url` alone (no environment variable)."""

import socket
import threading
import time

import fsspec
import pytest
import torch
from user_facing import tiny_training

from jepa_platform.errors import TrainingError
from jepa_platform.events import Notice, Row
from jepa_platform.spec import validate_spec
from jepa_platform.train.job import run_training
from jepa_platform.train.metrics import read_metrics


class FlakyProxy:
    """A TCP proxy to `target` ("host:port"): `up`, `down` (connections refused at once, open ones cut) or
    `frozen` (connections accepted, nothing ever answered)."""

    def __init__(self, target: str):
        self.target = target.rsplit(":", 1)
        self.mode = "up"
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.open: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode != "up":
            for s in self.open:
                try:
                    s.close()
                except OSError:
                    pass
            self.open.clear()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
                continue
            self.open.append(client)
            if self.mode == "frozen":
                continue  # held open, never answered
            upstream = socket.create_connection((self.target[0], int(self.target[1])))
            self.open.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()
        self.set("down")


@pytest.fixture
def proxy(_moto_endpoint, monkeypatch):
    import s3fs

    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    p = FlakyProxy(_moto_endpoint.removeprefix("http://"))
    s3fs.S3FileSystem.clear_instance_cache()
    fsspec.filesystem("s3", endpoint_url=_moto_endpoint).mkdir(f"faults-{id(p)}")
    p.bucket = f"faults-{id(p)}"
    yield p
    p.close()
    fsspec.config.conf.pop("s3", None)
    s3fs.S3FileSystem.clear_instance_cache()


def raw_spec(proxy, manifest, name, steps=8):
    return tiny_training(name, manifest, f"s3://{proxy.bucket}/runs", steps, storage={
        "endpoint_url": proxy.url, "region": "us-east-1", "timeout_s": 1})


@pytest.mark.slow
def test_a_store_that_goes_away_and_comes_back_costs_two_checkpoints_not_the_run(proxy, synthetic_dataset):
    straight = run_training(validate_spec(raw_spec(proxy, synthetic_dataset, "straight")))
    events = []

    def watch(event):
        events.append(event)
        if isinstance(event, Row) and event.values.get("step") == 3:
            proxy.set("down")  # before step 3's checkpoint
        if isinstance(event, Row) and event.values.get("step") == 5:
            proxy.set("up")

    last = run_training(validate_spec(raw_spec(proxy, synthetic_dataset, "bumpy")), on_event=watch)
    warnings = [e.message for e in events if isinstance(e, Notice)]
    assert len(warnings) == 2 and "checkpoint of step 3 could not be written" in warnings[0]
    assert "checkpoint of step 4" in warnings[1]
    assert last["step"] == straight["step"] == 8
    rows = read_metrics(f"s3://{proxy.bucket}/runs/bumpy/metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 9))  # the rows of the down time were written later
    assert rows[3]["checkpoint_failed"].startswith("the checkpoint of step 3")
    fs = fsspec.filesystem("s3")
    with fs.open(f"{proxy.bucket}/runs/bumpy/checkpoints/step_00000008/state.pt") as f:
        ours = torch.load(f, weights_only=True)["student"]
    with fs.open(f"{proxy.bucket}/runs/straight/checkpoints/step_00000008/state.pt") as f:
        theirs = torch.load(f, weights_only=True)["student"]
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.slow
def test_a_store_that_stops_answering_ends_the_run_in_bounded_time_with_one_line(proxy, synthetic_dataset):
    def freeze(event):
        if isinstance(event, Row) and event.values.get("step") == 2:
            proxy.set("frozen")

    started = time.monotonic()
    with pytest.raises(TrainingError) as e:
        run_training(validate_spec(raw_spec(proxy, synthetic_dataset, "frozen", steps=6)), on_event=freeze)
    assert time.monotonic() - started < 90  # 3 uploads given up after 8 x timeout_s each, and the steps
    assert "could not be written" in str(e.value) and "3 failed in a row" in str(e.value)
    assert "\n" not in str(e.value)

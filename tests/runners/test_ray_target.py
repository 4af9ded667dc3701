"""Target `ray`: jobs submitted to a real Ray head (started here, on loopback, with token auth on)
through the Ray Jobs API, run there by the local runner, followed, listed and stopped."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from jepa_platform.errors import ClusterError, ConfigError, JobDetached
from jepa_platform.events import EventReader, Row, Stage, format_row, parse_row
from jepa_platform.plugins.manager import set_plugins
from jepa_platform.runners import ray_jobs
from jepa_platform.runners.jobstore import TERMINAL, JobNotFound, JobRecord, JobStore
from jepa_platform.runners.ray_jobs import (
    RayJobsRunner,
    plugin_packages,
    resolve_address,
    sync_iter,
)
from jepa_platform.spec import ComponentSpec, validate_spec
from jepa_platform.train.metrics import read_metrics

slow = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    address: str
    token: str


def kill_processes_of(temp_dir: str) -> None:
    """SIGKILL to every process whose command line names this cluster's temp dir: ours, no other Ray's."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if temp_dir.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):  # gone already, or not ours to read
            continue


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    """A Ray head with its dashboard on 127.0.0.1, 2 CPUs, token auth on with a token of its own.

    `ray start --block` in a session of its own, so stopping it stops only this cluster's processes
    (never `ray stop`, which would stop every Ray on the machine). Its own temp dir keeps
    `ray_current_cluster` away from the default one, so in-process `ray.init()`s elsewhere don't join it.
    """
    temp_dir = tempfile.mkdtemp(prefix="jr", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    token = secrets.token_hex(32)
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")  # SIGTERM would otherwise wait 30 s to drain
    ports = {flag: free_port() for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                            "runtime-env-agent-port", "metrics-export-port",
                                            "ray-client-server-port", "node-manager-port", "object-manager-port")}
    log = open(Path(temp_dir) / "ray-start.log", "w")
    proc = subprocess.Popen(
        [str(Path(bin_dir) / "ray"), "start", "--head", "--block", "--port=0", f"--dashboard-port={port}",
         "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=true", f"--temp-dir={temp_dir}", "--disable-usage-stats",
         "--object-store-memory=100000000", *(f"--{flag}={p}" for flag, p in ports.items())],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(f"{address}/api/version", headers={"Authorization": f"Bearer {token}"},
                                timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("the test Ray head did not start:\n" + (Path(temp_dir) / "ray-start.log").read_text())
            time.sleep(0.5)
        yield Cluster(address, token)
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` then stops the processes it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        kill_processes_of(temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def ctrl_c():
    """Sends this process a real SIGINT after `delay` s, with Python's own handler installed meanwhile (so it
    raises KeyboardInterrupt in the main thread whatever else in the session replaced it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timers: list[threading.Timer] = []

    def press(delay: float) -> None:
        timers.append(threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)))
        timers[-1].start()

    yield press
    for timer in timers:
        timer.cancel()
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def cluster(ray_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    monkeypatch.setenv("JEPA_RAY_TOKEN", ray_cluster.token)
    return ray_cluster


PLUGIN_CODE = """
from jepa_platform.plugins import hookimpl
from jepa_platform.masks.plugin import MultiBlockParams, build_multiblock


@hookimpl
def jepa_register_maskers(register):
    register({kind!r}, build_multiblock, MultiBlockParams)
"""


@pytest.fixture
def client_only_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`make(name, kind, local=True)`: a plugin installed only in this test process (not on the cluster),
    registering the multiblock masker as `kind`; `local` = installed from a folder, else from an index."""

    def make(name: str, kind: str, local: bool = True) -> None:
        site = tmp_path / f"site-{name}"
        module = name.replace("-", "_") + "_pkg"
        package = site / module
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(PLUGIN_CODE.format(kind=kind))
        info = site / f"{name}-0.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
        (info / "entry_points.txt").write_text(f"[jepa_platform]\n{name} = {module}\n")
        if local:
            (info / "direct_url.json").write_text(f'{{"dir_info": {{"editable": true}}, "url": "file://{site}"}}')
        monkeypatch.syspath_prepend(str(site))
        set_plugins(None)

    yield make
    set_plugins(None)


def tiny_raw(tmp_path: Path, manifest: Path, name: str = "job", mask: str = "multiblock", **optim) -> dict:
    return {
        "name": name,
        "backbone": {"kind": "vit", "params": {"size": "custom", "embed_dim": 48, "depth": 2, "num_heads": 3,
                                               "patch_size": 16}},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "masks": [{"kind": mask, "params": {"num_blocks": 2, "spatial_scale": [0.3, 0.3]}}],
        "optim": {"steps": 3, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 3, **optim},
        "data": {"train": str(manifest), "frames": 4, "stride": 2, "resolution": 32, "loader_workers": 0},
        "storage": {"output": str(tmp_path / "runs")},
        "target": "ray",
    }


def new_record(store: JobStore, spec, stage: str | None = None) -> JobRecord:
    return store.save(JobRecord(store.new_id(spec.name), spec.name, "ray", spec.job_dir, spec=spec.resolved(),
                                steps=spec.optim.steps, stage=stage))


def wait_for(runner: RayJobsRunner, sid: str, timeout: float = 240) -> ray_jobs.RayJobState:
    deadline = time.time() + timeout
    while (state := runner.status(sid)).status not in TERMINAL:
        assert time.time() < deadline, f"job {sid} still {state.status} after {timeout} s"
        time.sleep(0.5)
    return state


# -- on the cluster -------------------------------------------------------------------------------------
@slow
def test_a_job_trains_on_the_cluster_with_a_plugin_only_the_client_has(
    cluster, tmp_path, synthetic_dataset, client_only_plugin
):
    client_only_plugin("shipped-masks", "shipped_multiblock")
    spec = validate_spec(tiny_raw(tmp_path, synthetic_dataset, name="rayjob", mask="shipped_multiblock"))
    store = JobStore()
    rows: list[dict] = []
    stages: list[tuple[str, str]] = []
    record = RayJobsRunner(cluster.address).run_record(
        spec, new_record(store, spec), store, on_row=rows.append,
        on_stage=lambda s, event, step: stages.append((s.name, event)),
    )

    assert record.status == "SUCCEEDED", record.error
    assert record.remote_id == record.id and record.address == cluster.address and record.step == 3
    phases = [r["phase"] for r in rows if "step" not in r]  # start-up phases, named on the client as they run
    rows = [r for r in rows if "step" in r]
    assert phases[0] == "starting Ray" and phases[-1] == "waiting for the first batch"
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] > 0 for r in rows)
    assert stages == [("rayjob", "starting")]
    job_dir = tmp_path / "runs" / "rayjob"  # the cluster shares this machine's disk
    assert [r["step"] for r in read_metrics(str(job_dir / "metrics.jsonl"))] == [1, 2, 3]
    assert (job_dir / "checkpoints" / "step_00000003" / "state.pt").is_file()
    reader = EventReader()
    logged = [reader.feed(line) for line in store.log_path(record.id).read_text().splitlines()]
    assert [e.values["step"] for e in logged if isinstance(e, Row) and "step" in e.values] == [1, 2, 3]

    runner = RayJobsRunner(cluster.address)
    assert runner.status(record.remote_id).status == "SUCCEEDED"
    assert Stage("rayjob", "starting") in [EventReader().feed(line) for line in runner.logs(record.remote_id)]
    listed = {j.submission_id: j for j in runner.list()}
    assert listed[record.remote_id].name == "rayjob" and listed[record.remote_id].status == "SUCCEEDED"


@slow
def test_jepa_embed_runs_on_the_cluster_and_reports_progress_on_the_client(cluster, tmp_path, synthetic_dataset):
    from typer.testing import CliRunner

    from jepa_platform.cli import app
    from jepa_platform.embed import read_embeddings

    out = tmp_path / "features"
    result = CliRunner().invoke(app, [
        "embed", "random", "--data", str(synthetic_dataset), "--out", str(out), "--backbone", "vit",
        "--backbone-params", "{size: tiny}", "--frames", "4", "--resolution", "32", "--shard-size", "4",
        "--set", "workers=0", "--target", "ray", "--address", cluster.address])
    assert result.exit_code == 0, result.output
    assert "12/12 videos (shard 3/3)" in result.output  # the cluster job's rows, followed from here
    assert "12 of 12 videos embedded (192-d, 3 parquet shards)" in result.output
    assert read_embeddings(str(out)).vectors.shape == (12, 192)  # the cluster shares this machine's disk


@slow
def test_a_failing_job_fails_with_the_workers_own_message(cluster, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(os.urandom(2000))
    manifest = tmp_path / "bad.csv"
    manifest.write_text("".join(f"bad.mp4 {i % 2}\n" for i in range(6)))
    spec = validate_spec(tiny_raw(tmp_path, manifest, name="broken"))
    result = RayJobsRunner(cluster.address).submit(spec)  # the runner contract, as run_stages calls it
    assert result.status == "FAILED" and result.step == 0
    assert "bad.mp4" in result.error and "Traceback" not in result.error and "\n" not in result.error


@slow
def test_cancelling_a_running_job_stops_it_and_records_cancelled(cluster, tmp_path, synthetic_dataset):
    spec = validate_spec(tiny_raw(tmp_path, synthetic_dataset, name="long", steps=100000, checkpoint_every=1000))
    store = JobStore()
    runner = RayJobsRunner(cluster.address)
    record = runner.run_record(spec, new_record(store, spec), store, wait=False)
    assert record.status == "PENDING" and record.remote_id == record.id
    logs = runner.logs(record.remote_id, follow=True)
    for line in logs:
        event = EventReader().feed(line)
        if isinstance(event, Row) and event.values.get("step") == 1:
            break
    logs.close()
    refreshed = runner.refresh(store.get(record.id), store, strict=True)
    assert refreshed.status == "RUNNING" and refreshed.step >= 1

    assert runner.stop(refreshed, store).status == "CANCELLED"
    state = wait_for(runner, record.remote_id, timeout=60)
    assert state.status == "CANCELLED"
    assert runner.cancel(record.remote_id) is False  # already ended


@slow
def test_ctrl_c_while_following_detaches_and_the_job_goes_on(cluster, tmp_path, synthetic_dataset, ctrl_c):
    spec = validate_spec(tiny_raw(tmp_path, synthetic_dataset, name="detach", steps=2000, checkpoint_every=1000))
    store = JobStore()
    runner = RayJobsRunner(cluster.address)
    record = new_record(store, spec)
    rows = []

    def first_row(row: dict) -> None:
        rows.append(row)
        if len(rows) == 1:
            ctrl_c(0.5)  # lands while the log is tailed, as a user's Ctrl-C would

    with pytest.raises(JobDetached, match=f"follow it with `jepa logs {record.id} --follow`"):
        runner.run_record(spec, record, store, on_row=first_row)
    assert runner.status(record.id).status in ("PENDING", "RUNNING")
    assert runner.stop(runner.refresh(store.get(record.id), store, strict=True), store).status == "CANCELLED"
    assert wait_for(runner, record.id, timeout=60).status == "CANCELLED"


@slow
@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_a_missing_or_wrong_token_is_reported_with_the_variable_to_set(ray_cluster, token, monkeypatch):
    for name in ("JEPA_RAY_TOKEN", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    # An in-process Ray started earlier in this session may have turned Ray's own token lookup on here.
    monkeypatch.setattr(ray_jobs, "ray_default_headers", dict)
    if token:
        monkeypatch.setenv("JEPA_RAY_TOKEN", token)
    with pytest.raises(ClusterError) as e:
        RayJobsRunner(ray_cluster.address).list()
    expected = (f"the Ray cluster at {ray_cluster.address} rejected the token from $JEPA_RAY_TOKEN" if token
                else f"the Ray cluster at {ray_cluster.address} requires a token: set JEPA_RAY_TOKEN")
    assert str(e.value).startswith(expected)


@slow
def test_an_unknown_submission_id_is_job_not_found(cluster):
    runner = RayJobsRunner(cluster.address)
    for call in (runner.status, runner.cancel, lambda sid: list(runner.logs(sid, follow=True))):
        with pytest.raises(JobNotFound, match=f"no job 'nope' on the Ray cluster at {cluster.address}"):
            call("nope")


# -- without a cluster ----------------------------------------------------------------------------------
def test_an_unreachable_address_fails_fast_with_one_clear_line():
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.time()
    with pytest.raises(ClusterError) as e:
        RayJobsRunner(address).list()
    assert time.time() - start < 5 and e.value.exit_code == 3
    assert str(e.value) == f"cannot reach the Ray cluster at {address}: [Errno 111] Connection refused"


def test_the_address_comes_from_the_flag_then_the_spec_then_the_environment(monkeypatch):
    from jepa_platform.runners import target_params

    monkeypatch.setenv("JEPA_RAY_ADDRESS", "env-head:8265")
    spec = validate_spec({"name": "x", "data": {"dataset": "synthetic"}, "cluster": {"address": "spec:8265"}})
    assert target_params(spec, "ray", {"address": "http://flag:8265/"}) == {"address": "http://flag:8265/"}
    assert resolve_address(target_params(spec, "ray")["address"]) == "http://spec:8265"
    on_target = spec.model_copy(update={"target": ComponentSpec(kind="ray", params={"address": "own:8265"})})
    assert target_params(on_target, "ray") == {"address": "own:8265"}  # target.params win over cluster.address
    assert target_params(spec, "kubernetes") == {}
    assert resolve_address() == "http://env-head:8265"
    monkeypatch.delenv("JEPA_RAY_ADDRESS")
    with pytest.raises(ConfigError, match="pass --address http://HOST:8265, set cluster.address in the spec"):
        resolve_address()
    with pytest.raises(ConfigError, match="not a ray:// client address"):
        resolve_address("ray://head:10001")


def test_a_runner_builds_without_an_address_and_says_so_on_first_use(monkeypatch):
    monkeypatch.delenv("JEPA_RAY_ADDRESS", raising=False)
    runner = RayJobsRunner()  # the runner contract: building has no side effects
    with pytest.raises(ConfigError, match="target ray needs the cluster's dashboard address"):
        runner.status("any")


def test_interrupting_the_wait_stops_following_and_leaves_the_job_running(tmp_path, synthetic_dataset, monkeypatch):
    spec = validate_spec(tiny_raw(tmp_path, synthetic_dataset))
    store = JobStore()
    record = new_record(store, spec)
    cancelled = []

    def logs(self, submission_id, follow=False):
        yield format_row({"step": 1, "loss": 0.5}) + "\n"
        raise KeyboardInterrupt

    monkeypatch.setattr(RayJobsRunner, "launch", lambda self, *args, **kwargs: kwargs["submission_id"])
    monkeypatch.setattr(RayJobsRunner, "logs", logs)
    monkeypatch.setattr(RayJobsRunner, "cancel", lambda self, sid: cancelled.append(sid))
    runner = RayJobsRunner("http://127.0.0.1:8265")
    with pytest.raises(JobDetached, match=f"it goes on as Ray job {record.id} on http://127.0.0.1:8265: follow it "
                                          f"with `jepa logs {record.id} --follow`, stop it with `jepa cancel"):
        runner.run_record(spec, record, store)
    assert cancelled == []
    kept = store.get(record.id)
    assert kept.status == "PENDING" and kept.remote_id == record.id
    assert "step=1" in store.log_path(record.id).read_text()


def test_a_job_the_cluster_cannot_take_is_recorded_failed(tmp_path, synthetic_dataset):
    spec = validate_spec(tiny_raw(tmp_path, synthetic_dataset))
    store = JobStore()
    record = new_record(store, spec)
    with pytest.raises(ClusterError, match="cannot reach the Ray cluster"):
        RayJobsRunner(f"http://127.0.0.1:{free_port()}").run_record(spec, record, store)
    failed = store.get(record.id)
    assert failed.status == "FAILED" and failed.error.startswith("cannot reach the Ray cluster")


def test_plugins_ship_as_pip_requirements_or_as_local_modules(tmp_path, client_only_plugin, synthetic_dataset):
    client_only_plugin("indexed-masks", "indexed_multiblock", local=False)
    client_only_plugin("local-masks", "local_multiblock", local=True)
    raw = tiny_raw(tmp_path, synthetic_dataset)
    raw["masks"] = [{"kind": k, "params": {"num_blocks": 1}} for k in ("indexed_multiblock", "local_multiblock",
                                                                     "multiblock")]
    pip, modules = plugin_packages(validate_spec(raw), tmp_path / "scratch")
    assert pip == ["indexed-masks==0.3"]  # the built-in multiblock needs nothing
    assert modules[0] == str(tmp_path / "site-local-masks" / "local_masks_pkg")
    info = Path(modules[1])
    assert info.name == "local_masks-0.3.dist-info"
    assert (info / "entry_points.txt").read_text() == "[jepa_platform]\nlocal-masks = local_masks_pkg\n"


def test_log_lines_parse_back_into_metrics_rows():
    row = {"clips_per_s": 23.15, "loss": 0.83302, "step": 12, "workers": 1}
    assert parse_row(format_row(row) + "\n") == row
    assert parse_row("stage job: starting") is None
    assert parse_row("2026-11-25 13:43:49,407 INFO job_manager.py:581 -- Runtime env is setting up.") is None


def test_the_entrypoint_without_a_spec_explains_itself(capsys):
    from jepa_platform.runners import driver

    assert driver.main([], environ={}) == 2
    assert "$JEPA_SPEC is not set: this command runs jobs sent to a cluster by `jepa submit`" in capsys.readouterr().out
    assert driver.main([], environ={"JEPA_SPEC": "bm90IGd6aXA="}) == 2  # base64, but no spec inside
    assert "$JEPA_SPEC does not hold a job spec" in capsys.readouterr().out


def test_ctrl_c_while_tailing_a_log_raises_keyboard_interrupt_and_closes_the_stream(ctrl_c):
    closed = []

    async def tail():
        try:
            yield "line 1\n"
            await asyncio.sleep(30)  # the websocket waiting for the next chunk
            yield "never\n"
        finally:
            closed.append(True)

    lines = sync_iter(tail())
    assert next(lines) == "line 1\n"
    ctrl_c(0.2)
    with pytest.raises(KeyboardInterrupt):
        next(lines)
    assert closed == [True]

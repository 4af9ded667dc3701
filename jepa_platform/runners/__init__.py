"""Where jobs run. `submit` is what `jepa submit` calls: it records the job and hands it to a runner."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from jepa_platform.plugins.manager import registry
from jepa_platform.runners.jobstore import TERMINAL, JobRecord, JobStore
from jepa_platform.runners.local import RunResult
from jepa_platform.runners.stages import StageEvent, run_stages, select_stages
from jepa_platform.spec import JobSpec
from jepa_platform.train.checkpoint import join
from jepa_platform.train.layout import METRICS_FILE
from jepa_platform.train.metrics import format_error, format_row, format_stage_event, read_metrics
from jepa_platform.train.resume import check_stages

__all__ = ["StageEvent", "cancel", "refresh", "resolve_target", "run_stages", "select_stages", "submit"]

TARGET_ALIASES = {"k8s": "kubernetes"}


def resolve_target(spec: JobSpec, target: str | None) -> str:
    return TARGET_ALIASES.get(target or spec.target, target or spec.target)


def submit(  # noqa: C901 - one branch per built-in target until runners are components (issue 23)
    spec: JobSpec,
    *,
    target: str | None = None,
    stage: str | None = None,
    wait: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_stage: StageEvent | None = None,
    on_line: Callable[[str], None] | None = None,
    store: JobStore | None = None,
    address: str | None = None,
    working_dir: str | None = None,
    plugins: list[str] | None = None,
) -> JobRecord:
    """Run (or, with wait=False, start) the job; returns its record, final when waited for.

    On a cluster target (ray, kubernetes) one cluster job runs every stage, resuming; `on_line` gets the
    log lines that are not metrics rows. `address`, `working_dir` and `plugins` are for the ray target."""
    store = store or JobStore()
    target = resolve_target(spec, target)
    component = registry("runners").get(target)  # an unknown target fails here, naming the known ones
    stages = select_stages(spec, stage)
    for check in check_stages(spec, stages, tolerate_unreachable=target != "local"):  # a cluster's store may
        check.raise_if_refused()  # be out of reach from here; its driver checks again
    if target == "ray":  # address, reachability and token are checked before anything is recorded
        from jepa_platform.runners.ray_jobs import RayJobsRunner

        runner = RayJobsRunner.for_spec(spec, address)
        runner.check()
    else:
        runner = component.build({})
    record = store.save(
        JobRecord(store.new_id(spec.name), spec.name, target, spec.job_dir, spec=spec.resolved(),
                  steps=sum(s.length for s in stages), stage=stage)
    )
    if target == "ray":
        return runner.run_record(spec, record, store, wait=wait, working_dir=working_dir, plugins=plugins,
                                 on_row=on_row, on_stage=on_stage)
    if target == "kubernetes":  # one RayJob runs (and resumes) the stages in the cluster
        return runner.run_record(spec, record, store, wait=wait, on_row=on_row, on_stage=on_stage, on_line=on_line)
    if not wait:
        return start_detached(record, store)
    store.update(record.id, status="RUNNING", pid=os.getpid())
    log = store.log_path(record.id).open("a")

    def log_row(row: dict[str, Any]) -> None:
        log.write(format_row(row) + "\n")
        log.flush()
        if on_row:
            on_row(row)

    def log_stage(s: JobSpec, event: str, step: int | None) -> None:
        log.write(format_stage_event(s.name, event, step) + "\n")
        log.flush()
        if on_stage:
            on_stage(s, event, step)

    try:
        results = run_stages(spec, runner, stage=stage, on_row=log_row, on_stage=log_stage)
    except BaseException as e:
        store.update(record.id, status="CANCELLED" if isinstance(e, KeyboardInterrupt) else "FAILED", error=str(e))
        raise
    finally:
        log.close()
    return finish(record, results, store)


def finish(record: JobRecord, results: list[RunResult], store: JobStore) -> JobRecord:
    last = results[-1]
    if last.error:
        with store.log_path(record.id).open("a") as f:
            f.write(format_error(last.error) + "\n")
    return store.update(record.id, status=last.status, step=sum(r.step for r in results), error=last.error)


def start_detached(record: JobRecord, store: JobStore) -> JobRecord:
    """A background process, in its own session so `cancel` can stop it and every child it started."""
    log = store.log_path(record.id).open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jepa_platform.runners.detached", record.id, str(store.root)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    return store.update(record.id, status="RUNNING", pid=proc.pid)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def refresh(record: JobRecord, store: JobStore, strict: bool = False) -> JobRecord:
    """Current state of a job: a local one's step from metrics.jsonl (FAILED if its process vanished); a
    cluster one's from its cluster, when it answers (with `strict`, an unreachable Ray cluster is an error)."""
    if record.target == "ray":
        from jepa_platform.runners.ray_jobs import refresh_record as refresh_ray

        return refresh_ray(record, store, strict=strict)
    if record.target == "kubernetes":
        from jepa_platform.runners.kubernetes import refresh_record

        return refresh_record(record, store)
    if record.target != "local" or record.status in TERMINAL:
        return record
    rows = read_metrics(join(record.job_dir, METRICS_FILE))
    changes: dict[str, Any] = {"step": rows[-1]["step"]} if rows else {}
    if record.status == "RUNNING" and not pid_alive(record.pid):
        current = store.get(record.id)  # it may have finished between our two reads
        if current.status in TERMINAL:
            return current
        changes.update(status="FAILED", error="the job's process exited without recording a result")
    return store.update(record.id, **changes) if changes else record


def cancel(record: JobRecord, store: JobStore, delete: bool = False) -> JobRecord:
    """Stops a job; on Kubernetes suspends its RayJob, or with delete removes it and all it made."""
    if record.status in TERMINAL and not (delete and record.target == "kubernetes"):
        return record
    if record.target == "ray":
        from jepa_platform.runners.ray_jobs import cancel_record as cancel_ray

        return cancel_ray(record, store)
    if record.target == "kubernetes":
        from jepa_platform.runners.kubernetes import cancel_record

        return cancel_record(record, store, delete=delete)
    if record.pid and pid_alive(record.pid):
        try:
            if record.pid == os.getsid(record.pid):  # a detached job: its session holds every process it started
                stop_session(record.pid)
            elif record.pid == os.getpgid(record.pid):
                os.killpg(record.pid, signal.SIGTERM)
            else:
                os.kill(record.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return store.update(record.id, status="CANCELLED")


def session_members(sid: int) -> list[int]:
    """Processes of session `sid` (Linux /proc); elsewhere only the leader's process group is known."""
    if not os.path.isdir("/proc"):
        return [sid]
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) != sid:
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):  # gone meanwhile, or not ours to look at
                continue
            if state != "Z":  # a zombie has stopped; it waits only for its parent to reap it
                members.append(int(entry))
    return members


def stop_session(sid: int, grace: float = 15.0) -> None:
    """SIGTERM to every process of a detached job's session, then SIGKILL to what is left after `grace` s.

    Ray gives its workers process groups of their own, so signalling the job's group alone left a training
    worker running (and checkpointing) for seconds after `cancel` returned; a resubmission in that window
    would have had two writers in one job folder. Returns when none is left.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        members = session_members(sid)
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not [pid for pid in session_members(sid) if pid_alive(pid)]:
                return
            time.sleep(0.1)

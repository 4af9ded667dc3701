"""The record-level side of a runner whose stages run from this machine (the `local` target, and any
plugin runner that subclasses `HostJobs` and gives `submit`): in this process while `jepa submit`
waits, or in a detached background process; the job store's log file is the job's log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from jepa_platform.events import Error, Row, Stage, encode
from jepa_platform.layout import JobLayout
from jepa_platform.runners.jobstore import TERMINAL, JobRecord, JobStore
from jepa_platform.runners.stages import RunResult, StageEvent, run_stages
from jepa_platform.spec import JobSpec
from jepa_platform.train.metrics import read_metrics


class HostJobs:
    """`run_record`, `refresh`, `stop` and `read_log` for jobs run by this machine's processes; the class
    that mixes it in provides `submit(spec, on_row)` (one stage, to its end)."""

    def run_record(
        self,
        spec: JobSpec,
        record: JobRecord,
        store: JobStore,
        *,
        wait: bool = True,
        on_row: Callable[[dict[str, Any]], None] | None = None,
        on_stage: StageEvent | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> JobRecord:
        """Runs the recorded job's stages here, logging to the job store, or (without wait) starts a
        detached process that does."""
        if not wait:
            return start_detached(record, store)
        store.update(record.id, status="RUNNING", pid=os.getpid())
        last = {"step": record.step}
        with store.log_path(record.id).open("a") as log:

            def log_row(row: dict[str, Any]) -> None:
                log.write(encode(Row(row)) + "\n")
                log.flush()
                last["step"] = row.get("step", last["step"])
                if on_row:
                    on_row(row)

            def log_stage(s: JobSpec, event: str, step: int | None) -> None:
                log.write(encode(Stage(s.name, event, step)) + "\n")
                log.flush()
                if on_stage:
                    on_stage(s, event, step)

            try:
                results = run_stages(spec, self, stage=record.stage, on_row=log_row, on_stage=log_stage)
            except KeyboardInterrupt:  # Ctrl-C: the checkpoints stay, and submitting again resumes from them
                unit = "shard" if spec.embed is not None else "step"
                store.update(record.id, status="CANCELLED", step=last["step"],
                             error=f"interrupted at {unit} {last['step'] or 0}; submitting again resumes")
                raise
            except BaseException as e:
                store.update(record.id, status="FAILED", error=str(e) or type(e).__name__)
                raise
        return finish(record, results, store)

    def refresh(self, record: JobRecord, store: JobStore, strict: bool = False) -> JobRecord:
        """The step from metrics.jsonl; FAILED when the job's process vanished without recording a result."""
        if record.status in TERMINAL:
            return record
        rows = read_metrics(JobLayout(record.job_dir).metrics)
        changes: dict[str, Any] = {"step": rows[-1]["step"]} if rows else {}
        if record.status == "RUNNING" and not pid_alive(record.pid):
            current = store.get(record.id)  # it may have finished between our two reads
            if current.status in TERMINAL:
                return current
            changes.update(status="FAILED", error="the job's process exited without recording a result")
        return store.update(record.id, **changes) if changes else record

    def stop(self, record: JobRecord, store: JobStore, delete: bool = False) -> JobRecord:
        """Stops the job's process and every process it started; its checkpoints stay."""
        if record.status in TERMINAL:
            return record
        if record.pid and pid_alive(record.pid):
            try:
                if record.pid == os.getsid(record.pid):  # a detached job: its session holds all it started
                    stop_session(record.pid)
                elif record.pid == os.getpgid(record.pid):
                    os.killpg(record.pid, signal.SIGTERM)
                else:
                    os.kill(record.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        current = store.get(record.id)
        if current.status in TERMINAL:  # it ended on its own meanwhile: that is what happened
            return current
        step = last_logged_step(record)
        return store.update(record.id, status="CANCELLED", step=step,
                            error=f"cancelled at step {step or 0}; submitting again resumes")

    def read_log(self, record: JobRecord, store: JobStore, follow: bool = False) -> Iterator[str]:
        """The job store's log, and with follow what is appended to it until the job ends."""
        path = store.log_path(record.id)
        pos, partial = 0, ""
        while True:
            ended = not follow or self.refresh(store.get(record.id), store).status in TERMINAL
            if path.exists():
                with path.open() as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
                lines = (partial + chunk).splitlines(keepends=True)
                partial = lines.pop() if lines and not lines[-1].endswith("\n") else ""  # still being written
                yield from lines
            if ended:
                if partial:
                    yield partial
                return
            time.sleep(0.5)


def finish(record: JobRecord, results: list[RunResult], store: JobStore, log_error: bool = True) -> JobRecord:
    """Records the stages' outcome (and, with log_error, writes the error to the job's log)."""
    last = results[-1]
    if last.error and log_error:
        with store.log_path(record.id).open("a") as f:
            f.write(encode(Error(last.error)) + "\n")
    return store.update(record.id, status=last.status, step=sum(r.step for r in results), error=last.error)


def start_detached(record: JobRecord, store: JobStore) -> JobRecord:
    """A background process, in its own session so `cancel` can stop it and every child it started."""
    log = store.log_path(record.id).open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jepa_platform.runners.detached", record.id, str(store.root)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    return store.update(record.id, status="RUNNING", pid=proc.pid, running_as=f"pid {proc.pid} on this machine")


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


def last_logged_step(record: JobRecord) -> int | None:
    """The job's last step in its metrics.jsonl (what a cancelled job reached), else the record's."""
    try:
        rows = read_metrics(JobLayout(record.job_dir).metrics)
    except Exception:  # noqa: BLE001 - a store out of reach: the record's step is the best known
        return record.step
    return rows[-1]["step"] if rows else record.step


def stop_session(sid: int, grace: float = 15.0) -> None:
    """SIGTERM to every process of a detached job's session, then SIGKILL to what is left after `grace` s.

    Ray gives its workers process groups of their own, so signalling the job's group alone left a training
    worker running (and checkpointing) for seconds after `cancel` returned; a resubmission in that window
    would have had two writers in one job folder. Returns when none is left.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in session_members(sid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not [pid for pid in session_members(sid) if pid_alive(pid)]:
                return
            time.sleep(0.1)

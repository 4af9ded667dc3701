"""What every cluster runner does the same way: one cluster job per submission (all its stages, or one),
driven there by `python -m jepa_platform.runners.driver`, recorded in the job store, followed through its
log, detached from on Ctrl-C, refreshed and cancelled.

A runner built on `ClusterJobs` says only how to talk to its cluster (`start`, `state`, `lines`, `recent`,
`halt`, `attached`); the record keeping, the log copy, the events read from it and the semantics
(what a refusal, a failure, a detach and a cancel record) live here once, so they are the same on every
cluster target.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jepa_platform.errors import JepaError, JobDetached
from jepa_platform.events import PREFIX, EventReader, Row, Stage
from jepa_platform.runners.jobstore import TERMINAL, JobNotFound, JobRecord, JobStore, new_job_id
from jepa_platform.runners.stages import RunResult, StageEvent
from jepa_platform.spec import JobSpec

SETTLE_S = 0.5  # a job's log can end a moment before its status does


@dataclass
class Started:
    """A cluster job just created: its id there, the cluster's address (what `attached` needs to reach it
    again), how to name it to a person, and one line for the log and the terminal."""

    remote_id: str
    address: str | None
    running_as: str
    note: str


class ClusterJobs:
    """The record-level side (`contracts.Runner`) of a runner whose jobs run in a cluster.

    Subclasses give: `start(spec, stage, job_id) -> Started`; `state(remote_id) -> (status, message)` with
    status one of PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED; `lines(remote_id, follow)`, the job's
    log lines (following, until the job ends); `recent(remote_id)`, the end of its log as text;
    `halt(remote_id, delete) -> status` (CANCELLED, or the state it had already ended in); `attached(record)`,
    a runner that reaches the cluster a record's job was sent to. `refusal(e, store)` may reword an error
    of `start`.
    """

    # what a subclass gives -------------------------------------------------------------------------------
    def start(self, spec: JobSpec, stage: str | None, job_id: str) -> Started:
        raise NotImplementedError

    def state(self, remote_id: str) -> tuple[str, str]:
        raise NotImplementedError

    def lines(self, remote_id: str, follow: bool = False) -> Iterator[str]:
        raise NotImplementedError

    def recent(self, remote_id: str) -> str:
        raise NotImplementedError

    def halt(self, remote_id: str, delete: bool = False) -> str:
        raise NotImplementedError

    def attached(self, record: JobRecord) -> ClusterJobs:
        raise NotImplementedError

    def refusal(self, e: JepaError, store: JobStore) -> JepaError:
        return e

    # the same for every cluster --------------------------------------------------------------------------
    def follow(self, remote_id: str, on_line: Callable[[str], None]) -> tuple[str, str]:
        """Hands each log line to `on_line` until the job ends; returns its final (status, message)."""
        for line in self.lines(remote_id, follow=True):
            on_line(line)
        state = self.state(remote_id)
        while state[0] not in TERMINAL:
            time.sleep(SETTLE_S)
            state = self.state(remote_id)
        return state

    def submit(self, spec: JobSpec, on_row: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
        """The runner contract (`run_stages`): runs one stage as one cluster job, to its end."""
        started = self.start(spec, None, new_job_id(spec.name))
        reader = EventReader()
        rows: list[dict[str, Any]] = []

        plain: list[str] = []

        def on_line(line: str) -> None:
            event = reader.feed(line)
            if isinstance(event, Row):
                rows.append(event.values)
                if on_row:
                    on_row(event.values)
            elif event is None and line.strip() and not line.startswith(PREFIX):
                plain[:] = [line.strip()]

        status, message = self.follow(started.remote_id, on_line)
        return RunResult(spec.name, spec.job_dir, status, reader.last_step or 0, rows[-1] if rows else {}, None,
                         None, failure_reason(status, reader, message, plain))

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
        """Starts the recorded job (its `stage`, else every stage) as one cluster job and records it; with
        wait, copies its log into the job store's, hands rows, stage events and the driver's other output to
        the callbacks, and records the outcome. A refused job is recorded FAILED. Interrupted, it stops
        following and the job goes on (JobDetached says how to follow or stop it)."""
        try:
            started = self.start(spec, record.stage, record.id)
        except JepaError as e:
            store.update(record.id, status="FAILED", error=str(e))
            raise self.refusal(e, store) from None
        record = store.update(record.id, status="PENDING", remote_id=started.remote_id, address=started.address,
                              running_as=started.running_as)
        with store.log_path(record.id).open("a") as log:
            log.write(started.note + "\n")
            if not wait:
                return record
            if on_line:
                on_line(started.note)
            stages = {s.name: s for s in spec.pipeline()}
            reader = EventReader(last_step=record.step)
            plain: list[str] = []  # the last line of the driver's own output

            def take(line: str) -> None:
                line = line.rstrip("\n")
                log.write(line + "\n")
                log.flush()
                event = reader.feed(line)
                if isinstance(event, Row) and on_row:
                    on_row(event.values)
                elif isinstance(event, Stage) and on_stage and event.name in stages:
                    on_stage(stages[event.name], event.event, event.step)
                elif event is None and not line.startswith(PREFIX):  # the driver's plain output
                    plain[:] = [line.strip()] if line.strip() else plain
                    if on_line:
                        on_line(line)

            try:
                status, message = self.follow(started.remote_id, take)
            except KeyboardInterrupt:
                raise JobDetached(record.id, started.running_as) from None
        return store.update(record.id, status=status, step=reader.last_step,
                            error=failure_reason(status, reader, message, plain))

    def refresh(self, record: JobRecord, store: JobStore, strict: bool = False) -> JobRecord:
        """The recorded job with the cluster's state and the last step in its log; unchanged when the cluster
        cannot be asked (unless strict)."""
        if record.status in TERMINAL or not record.remote_id:
            return record
        try:
            runner = self.attached(record)
            status, message = runner.state(record.remote_id)
            step = EventReader.read(runner.recent(record.remote_id)).last_step
        except JepaError:
            if strict:
                raise
            return record
        return store.update(record.id, status=status, step=record.step if step is None else step,
                            error=message if status in ("FAILED", "CANCELLED") else None)

    def stop(self, record: JobRecord, store: JobStore, delete: bool = False) -> JobRecord:
        """Stops the job (with delete, removes it and all it made there, even once finished). A job that had
        already ended keeps the state the cluster gives it; checkpoints stay, and submitting again resumes."""
        if record.status in TERMINAL and not delete:
            return record
        status = self.attached(record).halt(self.remote_id(record), delete=delete)
        return store.update(record.id, status=record.status if record.status in TERMINAL else status)

    def read_log(self, record: JobRecord, store: JobStore, follow: bool = False) -> Iterator[str]:
        return self.attached(record).lines(self.remote_id(record), follow=follow)

    @staticmethod
    def remote_id(record: JobRecord) -> str:
        if not record.remote_id:
            raise JobNotFound(f"job {record.id} was never started on its cluster (status {record.status})")
        return record.remote_id


def failure_reason(status: str, reader: EventReader, message: str | None, plain: list[str]) -> str | None:
    """Why a cluster job did not succeed: the error it said, else the cluster's message, else the last line
    it printed (a driver killed before it could say anything), never an empty reason."""
    if status == "SUCCEEDED":
        return None
    return (reader.last_error or message or (plain[-1] if plain else None)
            or f"the cluster job ended {status} without saying why; see `jepa logs`")

"""A small record of the jobs submitted from this machine, so `jepa list/status/logs/cancel` can find them.

One JSON file per job (and its log) under the user's data directory, or `$JEPA_HOME` when set.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from jepa_platform.errors import EXIT_USAGE, JepaError, NotFound
from jepa_platform.events import EventReader, Row

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class JobNotFound(NotFound):
    """No job of that id in the job store, or on the cluster it was sent to."""


@dataclass
class JobRecord:
    id: str
    name: str
    target: str
    job_dir: str
    status: str = "PENDING"
    created: float = field(default_factory=time.time)
    ended: float | None = None
    pid: int | None = None
    step: int | None = None
    steps: int | None = None
    error: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    remote_id: str | None = None  # the cluster's job id for the ray and kubernetes targets
    address: str | None = None
    stage: str | None = None  # only this stage of a pipeline
    running_as: str | None = None  # where the job runs, for people: "pid 123", "RayJob ns/name", ...


def jobs_home() -> Path:
    home = os.environ.get("JEPA_HOME")
    root = Path(home) if home else Path(platformdirs.user_data_dir("jepa-platform"))
    path = root / "jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_job_id(name: str) -> str:
    """`NAME-YYYYmmdd-HHMMSS-xxxx`: a job's id here, and the id of the job it becomes on a cluster."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


REF = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")  # a job's name or id (NAME-YYYYmmdd-HHMMSS-xxxx)


def checked_ref(ref: str) -> str:
    """`ref` when it can name a job; a name that could reach outside the store (`../x`, `a/b`) names none."""
    if not isinstance(ref, str) or not REF.match(ref):
        raise JobNotFound(f"no job {ref!r} (job names are lowercase letters, digits and '-'; see `jepa list`)")
    return ref


class CorruptRecord(JepaError):
    """A job record that is not one (a truncated or edited file)."""

    exit_code = EXIT_USAGE


class JobStore:
    def __init__(self, root: Path | None = None):
        self.root = root or jobs_home()

    def new_id(self, name: str) -> str:
        return new_job_id(name)

    def path(self, job_id: str) -> Path:
        return self.root / f"{checked_ref(job_id)}.json"

    def log_path(self, job_id: str) -> Path:
        return self.root / f"{checked_ref(job_id)}.log"

    def save(self, record: JobRecord) -> JobRecord:
        tmp = self.path(record.id).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1))
        os.replace(tmp, self.path(record.id))
        return record

    def update(self, job_id: str, **changes: Any) -> JobRecord:
        record = self.get(job_id)
        for k, v in changes.items():
            setattr(record, k, v)
        if record.status in TERMINAL and record.ended is None:
            record.ended = time.time()
        return self.save(record)

    def remove(self, job_id: str) -> None:
        """Forgets a job that never started (its record and log)."""
        for path in (self.path(job_id), self.log_path(job_id)):
            path.unlink(missing_ok=True)

    def faults(self, job_id: str) -> dict[str, int]:
        """What went wrong along the way, from the job's log: videos skipped, checkpoints that could not be
        written, worker-group restarts (each also said where it happened)."""
        found = {"skipped_videos": 0, "checkpoint_failures": 0, "restarts": 0}
        path = self.log_path(job_id)
        if not path.exists():
            return found
        reader = EventReader()
        for line in path.read_text(errors="replace").splitlines():
            event = reader.feed(line)
            if not isinstance(event, Row):
                continue
            found["skipped_videos"] += int(event.values.get("skipped_videos") or 0)
            found["checkpoint_failures"] += int(bool(event.values.get("checkpoint_failed")))
            found["restarts"] = max(found["restarts"], int(event.values.get("restarts") or 0))
        return found

    def all(self) -> list[JobRecord]:
        records = []
        for p in self.root.glob("*.json"):
            try:
                records.append(JobRecord(**json.loads(p.read_text())))
            except (ValueError, TypeError):
                continue
        return sorted(records, key=lambda r: r.created)

    def get(self, ref: str) -> JobRecord:
        """A job by id, or the newest job with that name."""
        path = self.path(ref)
        if path.exists():
            try:
                return JobRecord(**json.loads(path.read_text()))
            except (ValueError, TypeError) as e:  # not JSON, not UTF-8, not a record's fields
                raise CorruptRecord(f"job record {path} cannot be read ({type(e).__name__}: {e}); delete it to "
                                    f"forget the job (its outputs stay where they are)") from None
        named = [r for r in self.all() if r.name == ref]
        if not named:
            raise JobNotFound(f"no job {ref!r} (see `jepa list`)")
        return named[-1]

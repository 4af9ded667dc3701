"""Entry point of a job started with `jepa submit --no-wait`: drives the recorded spec to its end, its
output (events, one per line) going to the job store's log."""

from __future__ import annotations

import sys
from pathlib import Path

from jepa_platform.events import Error, Event
from jepa_platform.plugins.manager import registry
from jepa_platform.runners.driver import drive, emit
from jepa_platform.runners.host import finish
from jepa_platform.runners.jobstore import JobStore
from jepa_platform.spec import resolved_spec


def main(job_id: str, root: str) -> int:
    store = JobStore(Path(root))
    record = store.get(job_id)
    errors: list[str] = []

    def on_event(event: Event) -> None:
        emit(event)
        if isinstance(event, Error):
            errors.append(event.message)

    try:
        spec = resolved_spec(record.spec, source=f"job {job_id}")  # validated where it was submitted
        runner = registry("runners").get(record.target).build({})
        code, results = drive(spec, runner, record.stage, on_event=on_event)
    except Exception as e:  # the record must not stay RUNNING, whatever ended the job
        store.update(job_id, status="FAILED", error=str(e))
        emit(Error(str(e)))
        return getattr(e, "exit_code", 1)
    if not results:  # refused before a stage ran; drive wrote the error
        store.update(job_id, status="FAILED", error=errors[-1] if errors else "refused before any stage ran")
    elif store.get(job_id).status != "CANCELLED":
        finish(record, results, store, log_error=False)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""Entry point of a job started with `jepa submit --no-wait`: runs the recorded spec to completion."""

from __future__ import annotations

import sys
from pathlib import Path

from jepa_platform.plugins.manager import registry
from jepa_platform.runners import finish, run_stages
from jepa_platform.runners.events import Error, Row, Stage, encode
from jepa_platform.runners.jobstore import JobStore
from jepa_platform.spec import validate_spec


def main(job_id: str, root: str) -> int:
    store = JobStore(Path(root))
    record = store.get(job_id)
    try:
        spec = validate_spec(record.spec, source=f"job {job_id}")
        runner = registry("runners").get(record.target).build({})
        results = run_stages(
            spec, runner, stage=record.stage,
            on_row=lambda row: print(encode(Row(row)), flush=True),
            on_stage=lambda s, event, step: print(encode(Stage(s.name, event, step)), flush=True),
        )
    except Exception as e:
        store.update(job_id, status="FAILED", error=str(e))
        print(encode(Error(str(e))), flush=True)
        return 1
    if store.get(job_id).status != "CANCELLED":
        record = finish(record, results, store)
    return 0 if results[-1].status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

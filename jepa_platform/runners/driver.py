"""The job driver: runs a resolved spec's stages and writes what happens as events, one per line.

`python -m jepa_platform.runners.driver [--stage NAME]` is the one entrypoint of a job inside a cluster,
whichever runner sent it there: the Ray job of runner `ray` and the RayJob of runner `kubernetes` both run
it. It reads the resolved spec from `$JEPA_SPEC` (`encode_spec`: gzip+base64 of its JSON, small enough for
an environment variable, `spec.travelling`), reads it back without validating it again, and runs its
stages with the `local` runner,
whose `ray.init()` joins the cluster (Ray sets `RAY_ADDRESS` for a job's driver); a stage resumes from the
job's checkpoints. A detached local job (`jepa submit --no-wait`) is driven by `drive` too.

It exits with the codes of `jepa submit` (`jepa_platform.errors`): 0 the job succeeded, 1 it failed, 2 the
spec is missing or invalid.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from jepa_platform.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, JepaError
from jepa_platform.events import Done, Error, Event, Row, Stage, encode
from jepa_platform.runners.stages import RunResult, run_stages
from jepa_platform.spec import JobSpec

SPEC_ENV = "JEPA_SPEC"
MODULE = "jepa_platform.runners.driver"


def encode_spec(resolved: dict[str, Any]) -> str:
    """gzip+base64 of the spec's compact JSON: how it travels in env vars and large annotations."""
    raw = json.dumps(resolved, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode()


def decode_spec(text: str) -> dict[str, Any]:
    return json.loads(gzip.decompress(base64.b64decode(text)))


def command(stage: str | None = None) -> list[str]:
    """The driver's command line, as a cluster runs it."""
    return ["python", "-m", MODULE, *(["--stage", stage] if stage else [])]


def emit(event: Event) -> None:
    print(encode(event), flush=True)


def drive(spec: JobSpec, runner: Any, stage: str | None = None, *,
          on_event: Callable[[Event], None] = emit) -> tuple[int, list[RunResult]]:
    """Runs the spec's stages (or `stage`) with `runner`, handing each row, stage event, error and the final
    `done` to `on_event`; returns (exit code, the stages' results)."""
    try:
        results = run_stages(spec, runner, stage=stage, on_row=lambda row: on_event(Row(row)),
                             on_stage=lambda s, event, step: on_event(Stage(s.name, event, step)))
    except JepaError as e:
        on_event(Error(str(e)))
        return e.exit_code, []
    last = results[-1]
    if last.status != "SUCCEEDED":
        on_event(Error(f"{last.name} {last.status.lower()}: {last.error}"))
        return EXIT_FAILED, results
    on_event(Done(spec.name, spec.job_dir))
    return EXIT_OK, results


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    """Runs the spec in `$JEPA_SPEC` (all stages, or `--stage NAME`) with the local runner."""
    from jepa_platform.plugins.manager import registry
    from jepa_platform.spec import resolved_spec

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--stage", default=None, help="Run only this stage of a pipeline spec.")
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    if SPEC_ENV not in environ:
        emit(Error(f"${SPEC_ENV} is not set: this command runs jobs sent to a cluster by `jepa submit`"))
        return EXIT_USAGE
    try:
        raw = decode_spec(environ[SPEC_ENV])
        if not isinstance(raw, dict):
            raise ValueError(f"a JSON {type(raw).__name__}, not an object")
        spec = resolved_spec(raw, source=f"job {raw.get('name')}")  # validated where it was submitted
        spec.storage.configure()
        runner = registry("runners").get("local").build({})
    except JepaError as e:
        emit(Error(str(e)))
        return e.exit_code
    except (ValueError, OSError, EOFError) as e:  # not base64, not gzip, not JSON
        emit(Error(f"${SPEC_ENV} does not hold a job spec ({type(e).__name__}: {e})"))
        return EXIT_USAGE
    return drive(spec, runner, args.stage)[0]


if __name__ == "__main__":
    sys.exit(main())

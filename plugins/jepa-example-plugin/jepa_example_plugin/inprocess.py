"""A runner plugin: `target: inprocess` trains each stage in the submitting process with the plain
PyTorch trainer, without Ray (a notebook, a debugger, a machine where Ray cannot start).

The job-store side (`jepa status`, `jepa logs`, `jepa cancel`, `--no-wait`) comes from
`jepa_platform.runners.host.HostJobs`; a runner only has to run one stage to its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jepa_platform.runners.host import HostJobs
from jepa_platform.runners.stages import RunResult, latest_step


class InProcessRunner(HostJobs):
    """Runs stages here, one process, no Ray."""

    def __init__(self, device: str = "cpu"):
        self.device = device

    def submit(self, spec, on_row: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
        from jepa_platform.errors import JepaError
        from jepa_platform.events import Row
        from jepa_platform.train.job import run_training

        def on_event(event) -> None:  # the loop's events: here, only its metrics rows matter
            if isinstance(event, Row) and on_row:
                on_row(event.values)

        resumed, _ = latest_step(spec)
        try:
            row = run_training(spec, device=self.device, on_event=on_event)
        except JepaError as e:
            step, ckpt = latest_step(spec)
            return RunResult(spec.name, spec.job_dir, "FAILED", step or 0, {}, ckpt, resumed, str(e))
        step, ckpt = latest_step(spec)
        return RunResult(spec.name, spec.job_dir, "SUCCEEDED", row["step"], row, ckpt, resumed)

"""Where jobs run. `submit` is what `jepa submit` calls: it records the job and hands it to a runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jepa_platform.errors import EXIT_USAGE, JepaError
from jepa_platform.plugins.contracts import Prepares
from jepa_platform.plugins.manager import registry
from jepa_platform.runners.host import HostJobs, finish, pid_alive, session_members, start_detached, stop_session
from jepa_platform.runners.jobstore import JobRecord, JobStore
from jepa_platform.runners.stages import StageEvent, run_stages, select_stages
from jepa_platform.spec import TARGET_ALIASES, JobSpec, travelling
from jepa_platform.train.resume import ResumeCheck, check_stages

__all__ = [
    "TARGET_ALIASES", "StageEvent", "cancel", "finish", "pid_alive", "read_log", "refresh", "resolve_target",
    "run_stages", "runner_for", "select_stages", "session_members", "start_detached", "stop_session", "submit",
    "target_params",
]


def resolve_target(spec: JobSpec, target: str | None) -> str:
    """The runner kind: `target` (a --target option) when given, else the spec's."""
    return TARGET_ALIASES.get(target, target) if target else spec.target.kind


def target_params(spec: JobSpec, target: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The runner's params: the spec's for that runner (`JobSpec.runner_params`), then `params` over them."""
    return {**spec.runner_params(target), **(params or {})}


def runner_for(target: str, params: dict[str, Any] | None = None) -> Any:
    """The registered runner `target` (an alias such as k8s resolved), built with its params; an unknown
    target fails naming the known ones."""
    return registry("runners").get(TARGET_ALIASES.get(target, target)).build(params or {})


def submit(
    spec: JobSpec,
    *,
    target: str | None = None,
    stage: str | None = None,
    wait: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_stage: StageEvent | None = None,
    on_line: Callable[[str], None] | None = None,
    store: JobStore | None = None,
    params: dict[str, Any] | None = None,
    on_check: Callable[[JobSpec, ResumeCheck], None] | None = None,
) -> JobRecord:
    """Run (or, with wait=False, start) the job on its target's runner; returns its record, final when
    waited for. `params` are the runner's own (e.g. the ray runner's address, working_dir, plugins).

    On a cluster target one cluster job runs every stage, resuming; `on_line` gets the log lines that are
    not metrics rows. Each stage is first checked against the run in its folder (refused, or handed to
    `on_check` with its notes)."""
    store = store or JobStore()
    spec.storage.configure()
    target = resolve_target(spec, target)
    runner = runner_for(target, target_params(spec, target, params))
    stages = select_stages(spec, stage)
    remote = not isinstance(runner, HostJobs)  # a cluster's store may be out of reach from here
    checks = check_stages(spec, stages, tolerate_unreachable=remote)
    for s, check in zip(stages, checks, strict=True):
        check.raise_if_refused()  # (a remote driver checks again where it runs)
        if on_check:
            on_check(s, check)
    if isinstance(runner, Prepares):  # e.g. a cluster's address, reachability and token
        runner.prepare(spec)
    record = store.save(
        JobRecord(store.new_id(spec.name), spec.name, target, spec.job_dir, spec=travelling(spec),
                  steps=sum(c.length or s.length for s, c in zip(stages, checks, strict=True)), stage=stage)
    )
    try:
        return runner.run_record(spec, record, store, wait=wait, on_row=on_row, on_stage=on_stage, on_line=on_line)
    except BaseException as e:
        never_started(record.id, store, e)
        raise


def never_started(job_id: str, store: JobStore, error: BaseException) -> None:
    """Forgets a job that was never started anywhere: one left PENDING, or refused for the user's own
    configuration (a corrupt kubeconfig) before any cluster saw it. Its record would otherwise say for ever
    that it waits to run, or list a job that never was."""
    try:
        current = store.get(job_id)
    except JepaError:
        return
    unsent = current.pid is None and current.remote_id is None
    if unsent and (current.status == "PENDING" or getattr(error, "exit_code", None) == EXIT_USAGE):
        store.remove(job_id)


def refresh(record: JobRecord, store: JobStore, strict: bool = False) -> JobRecord:
    """Current state of a job, from where it runs (with `strict`, an unreachable cluster is an error)."""
    return runner_for(record.target).refresh(record, store, strict=strict)


def cancel(record: JobRecord, store: JobStore, delete: bool = False) -> JobRecord:
    """Stops a job; its checkpoints stay (with delete, a Kubernetes RayJob and all it made are removed)."""
    return runner_for(record.target).stop(record, store, delete=delete)


def read_log(record: JobRecord, store: JobStore, follow: bool = False):
    """The job's log lines (metrics rows, stage events, errors), from where it keeps them."""
    return runner_for(record.target).read_log(record, store, follow=follow)

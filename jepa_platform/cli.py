"""`jepa`: a thin command line over the library. Parses, calls one library function, prints.

Exit codes: those of `jepa_platform.errors` (0 success, 1 the job failed, 2 refused before anything ran,
3 the cluster unreachable or refusing, 130 interrupted), the same on every target.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from jepa_platform.errors import EXIT_FAILED, EXIT_INTERRUPTED, ConfigError, JepaError, JobDetached
from jepa_platform.version import __version__

app = typer.Typer(
    name="jepa", help="Self-supervised video representation learning: V-JEPA and SALT from one YAML spec.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: make synthetic videos for quickstarts and tests.", no_args_is_help=True)
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True)

def user_errors(fn):
    """One line and an exit code for errors a user can cause; tracebacks are for our bugs only."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except JobDetached as e:  # Ctrl-C while following a cluster job: not a failure, the job goes on
            err.print(f"[yellow]detached:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except JepaError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:  # a job run here stops; its checkpoints stay, and submitting again resumes
            err.print("[yellow]interrupted[/]", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, default=str) + "\n")


SpecArg = Annotated[Path, typer.Argument(help="Job spec (YAML).", show_default=False)]
Overrides = Annotated[list[str] | None, typer.Argument(help="key.path=value overrides, e.g. optim.steps=100")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final line.")]


def load(spec: Path, overrides: list[str] | None):
    """The validated spec, checked for what would fail at its first batch (`preflight`); its notes for the
    writer go to stderr."""
    from jepa_platform.spec import load_spec
    from jepa_platform.train.preflight import preflight

    job = load_spec(spec, overrides or [])
    job.storage.configure()  # its object stores, for the checks below
    for note in job.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    preflight(job, str(spec))
    return job


def check_resumes(job, stages, show: bool = True) -> dict[str, int | None]:
    """Refuses (exit 2) a spec that would resume into a different run; says what allowed changes do.
    Returns each stage's resume step. (A real submission checks inside `runners.submit`, `on_check`.)"""
    from jepa_platform.train.resume import check_stages

    checks = check_stages(job, stages, tolerate_unreachable=True)
    for c in checks:
        c.raise_if_refused()
    for s, c in zip(stages, checks, strict=True):
        if show:
            show_check(s, c)
    return {s.name: c.step for s, c in zip(stages, checks, strict=True)}


def show_check(stage, check) -> None:
    """The notes of a stage's resume check: allowed changes and what they do, or a store out of reach."""
    if check.unread:
        err.print(f"[yellow]note:[/] {stage.name}: could not read {stage.job_dir} from here ({check.unread}); the "
                  f"job checks it again where it runs", highlight=False, soft_wrap=True)
    for note in check.notes:
        err.print(f"[yellow]note:[/] {stage.name}: {note}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def submit(
    spec: SpecArg,
    overrides: Overrides = None,
    target: Annotated[str | None, typer.Option(help="local | ray | k8s (default: the spec's target).")] = None,
    stage: Annotated[str | None, typer.Option(help="Run only this stage of a pipeline spec.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show what would run (k8s: the RayJob, "
                                          "nothing sent).")] = False,
    server_dry_run: Annotated[bool, typer.Option("--server-dry-run", help="k8s: the API server validates and "
                                                 "admits the RayJob; nothing is created.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job to its end.")] = True,
    address: Annotated[str | None, typer.Option(
        help="Target ray: the cluster's dashboard, e.g. http://HOST:8265 (default: the spec's cluster.address, "
        "else $JEPA_RAY_ADDRESS; token from $JEPA_RAY_TOKEN).")] = None,
    working_dir: Annotated[Path | None, typer.Option(
        "--working-dir", help="Target ray: a folder shipped as the job's working directory.")] = None,
    plugin: Annotated[list[str] | None, typer.Option(
        "--plugin", help="Target ray: also ship this pip requirement or local path (repeatable); the plugins "
        "the spec's components come from are shipped without it.")] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a job: validate the spec, then train on the chosen target (resuming a job of the same name)."""
    from jepa_platform.plugins.contracts import Renders
    from jepa_platform.runners import resolve_target, runner_for, select_stages, target_params

    job = load(spec, overrides)
    tgt = resolve_target(job, target)
    stages = select_stages(job, stage)
    params = {k: v for k, v in {"address": address, "working_dir": str(working_dir) if working_dir else None,
                                "plugins": plugin}.items() if v}
    runner = runner_for(tgt, target_params(job, tgt, params))
    if server_dry_run and not isinstance(runner, Renders):
        raise ConfigError(f"--server-dry-run: target {tgt} has no API server to ask (kubernetes has)")
    if dry_run or server_dry_run:  # a real submission checks inside `submit_job` (on_check)
        resume_from = check_resumes(job, stages, show=not as_json)
    if (dry_run or server_dry_run) and isinstance(runner, Renders):
        manifest, what = runner.render(job, stage=stage, server=server_dry_run)
        if server_dry_run and not as_json:
            err.print(f"[green]valid[/] the API server admits {what}")
        return emit_manifest(manifest, as_json)
    if dry_run:
        return print_plan(job, stages, tgt, resume_from, as_json)
    follow_job(job, tgt, params, stage=stage, wait=wait, quiet=quiet, as_json=as_json)


def follow_job(job, target: str, params: dict[str, Any], *, stage: str | None = None, wait: bool = True,
               quiet: bool = False, as_json: bool = False):
    """Submits the validated job to `target` and, with `wait`, follows it to its end (exit 1 unless it
    succeeded); returns its record."""
    from jepa_platform.runners import submit as submit_job

    show = not (quiet or as_json)
    with StageProgress(enabled=show and wait) as progress:
        record = submit_job(job, target=target, stage=stage, wait=wait, on_row=progress.on_row,
                            on_stage=progress.on_stage if show else None,
                            on_line=progress.say if show else None,
                            on_check=None if as_json else show_check, params=params)
    if as_json:
        emit_json(record.__dict__ | {"spec": None})
    elif not wait:
        where = record.running_as or record.remote_id or f"pid {record.pid}"
        out.print(f"Submitted {record.id}, running as {where}; follow with `jepa logs {record.id} --follow`")
    elif record.status == "SUCCEEDED":
        output = job.embed.output if job.embed is not None else job.job_dir
        out.print(f"{stamp()} [green]done[/] {job.name}: outputs in {output}", highlight=False)
    else:
        err.print(f"[bold red]error:[/] job {record.id} {record.status.lower()}: {record.error}", highlight=False)
    if wait and record.status != "SUCCEEDED":
        raise typer.Exit(EXIT_FAILED)
    return record


def print_plan(job, stages, target: str, resume_from: dict[str, int | None], as_json: bool) -> None:
    """What `submit --dry-run` would run: each stage's target, steps, folder and resume step."""
    from jepa_platform.runners.local import latest_step

    plan = [{"stage": s.name, "job_dir": s.job_dir, "steps": s.length,
             "resume_from": resume_from[s.name] if s.trains else latest_step(s)[0]}
            for s in stages]
    if as_json:
        return emit_json({"target": target, "job_dir": job.job_dir, "resume_from": plan[0]["resume_from"],
                          "stages": plan, "spec": job.resolved()})
    for p in plan:
        out.print(f"[green]valid[/] {p['stage']}: target {target}, {p['steps']} steps, output {p['job_dir']}"
                  + (f", would resume from step {p['resume_from']}" if p["resume_from"] else ""), soft_wrap=True)


def emit_manifest(obj: dict[str, Any], as_json: bool) -> None:
    import yaml

    sys.stdout.write(json.dumps(obj, indent=1) + "\n" if as_json else yaml.safe_dump(obj, sort_keys=False))


@app.command()
@user_errors
def render(
    spec: SpecArg,
    overrides: Overrides = None,
    target: Annotated[str, typer.Option(help="k8s: the KubeRay RayJob.")] = "k8s",
    stage: Annotated[str | None, typer.Option(help="Run only this stage of a pipeline spec.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print what a cluster target would be sent (k8s: the RayJob manifest), contacting nothing."""
    from jepa_platform.plugins.contracts import Renders
    from jepa_platform.runners import resolve_target, runner_for, select_stages, target_params

    job = load(spec, overrides)
    kind = resolve_target(job, target)
    runner = runner_for(kind, target_params(job, kind))
    if not isinstance(runner, Renders):
        raise ConfigError(f"--target: {target!r} sends nothing that could be rendered (kubernetes does)")
    select_stages(job, stage)
    emit_manifest(runner.render(job, stage=stage)[0], as_json)


def stamp() -> str:
    return time.strftime("%H:%M:%S")


class StageProgress:
    """What a job says while it runs, one stage after another: a progress bar (step, loss, clips/s, ETA) on a
    terminal; elsewhere (a file, CI, `kubectl logs`) a timestamped plain line per metrics row, written as it
    comes. Every line gets a timestamp; a collapse alarm in a row is printed as a warning. Quiet when
    disabled."""

    def __init__(self, enabled: bool, console: Console | None = None):
        self.enabled = enabled
        self.console = console or out
        self.progress: Progress | None = None
        self.task = None
        self.name = ""
        self.total: int | None = None

    def say(self, text: str) -> None:
        self.console.print(f"{stamp()} {text}", highlight=False, markup=False, soft_wrap=True)

    def __enter__(self) -> StageProgress:
        if self.enabled and self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), TextColumn("step {task.completed}/{task.total}"),
                BarColumn(), TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} clips/s"),
                TextColumn("rank {task.fields[rank]}"),
                TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
            )
            self.progress.start()
        return self

    def on_stage(self, spec, event: str, step: int | None) -> None:
        self.name, self.total = spec.name, spec.length
        if event == "skipped":
            done = "is complete" if spec.embed is not None else f"already completed {step}/{spec.length} steps"
            self.say(f"{spec.name} {done}; skipped")
            return
        if spec.embed is not None:
            self.total = None  # videos: known once the first shards are done
            self.say(f"{'Resuming' if event == 'resuming' else 'Starting'} {spec.name}: embedding the videos of "
                     f"{spec.embed.data} into {spec.embed.output}")
        elif event == "resuming":
            self.say(f"Resuming {spec.name} from step {step} ({spec.job_dir}/checkpoints)")
        else:
            unit = "epochs of probing" if spec.probe is not None else "steps"
            self.say(f"Starting {spec.name}: {spec.length} {unit}, output {spec.job_dir}")
        if self.progress and spec.probe is None:
            self.task = self.progress.add_task(spec.name, total=self.total, completed=step or 0,
                                               loss="-", speed="-", rank="-")

    def on_row(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if "step" not in row:  # a start-up phase, named while it runs
            if self.progress and self.task is not None:
                self.progress.update(self.task, description=f"{self.name} ({row.get('phase', '...')})")
            elif not self.progress:
                self.say(f"{self.name}: {row.get('phase', '...')}")
            return
        if self.progress and self.task is not None:
            self.progress.update(self.task, description=self.name)
        self.warnings(row)
        if "videos" in row:  # an embedding's progress: shards and videos done
            return self.on_videos(row)
        loss, speed = row.get("loss"), row.get("clips_per_s") or 0.0
        if self.progress and self.task is not None:
            rank = {"rank": f"{row['rankme_targets']:.1f}"} if row.get("rankme_targets") else {}
            self.progress.update(self.task, completed=row["step"], loss=f"{loss:.4f}" if loss is not None else "-",
                                 speed=f"{speed:.1f}", **rank)
        elif not self.progress:
            health = f" rankme_targets {row['rankme_targets']:.1f}" if row.get("rankme_targets") else ""
            self.say(f"{self.name} step {row['step']}/{self.total} loss {loss:.4f} {speed:.1f} clips/s{health}"
                     if loss is not None else f"{self.name} step {row['step']}/{self.total}")

    def warnings(self, row: dict[str, Any]) -> None:
        """What a row says that needs saying: videos skipped (each with why; the job goes on), a collapse, a
        checkpoint that could not be written."""
        if row.get("skipped"):
            self.say(f"warning: {self.name} skipped videos that could not be read: {row['skipped']}")
        if row.get("collapse"):
            self.say(f"warning: {self.name} step {row['step']}: {row['collapse']}")
        if row.get("checkpoint_failed"):
            self.say(f"warning: {self.name}: {row['checkpoint_failed']}")

    def on_videos(self, row: dict[str, Any]) -> None:
        speed = row.get("clips_per_s") or 0.0
        if self.progress and self.task is not None:
            self.progress.update(self.task, completed=row["step"], total=row["of"], speed=f"{speed:.1f}",
                                 loss="-")
        elif not self.progress:
            skipped = f", {row['skipped_total']} skipped" if row.get("skipped_total") else ""
            self.say(f"{self.name}: {row['videos']}/{row['videos_of']} videos (shard {row['step']}/{row['of']}) "
                     f"{speed:.1f} videos/s{skipped}")

    def __exit__(self, *exc) -> bool:
        if self.progress:
            self.progress.stop()
        return False


@app.command()
@user_errors
def validate(spec: SpecArg, overrides: Overrides = None, as_json: JsonOpt = False) -> None:
    """Check a spec without running it; prints the resolved spec (defaults filled in).

    A job that already ran is checked too: a spec that would resume it as a different run is refused."""
    job = load(spec, overrides)
    check_resumes(job, job.pipeline(), show=not as_json)
    if as_json:
        emit_json(job.resolved())
    else:
        sys.stdout.write(job.to_yaml())  # not through rich: it would wrap long lines and break the YAML
        err.print(f"[green]valid[/] {spec}")


@app.command()
@user_errors
def schema() -> None:
    """Print the job spec's JSON Schema (for editor validation)."""
    from jepa_platform.spec import json_schema

    emit_json(json_schema())


@app.command()
@user_errors
def plugins(
    all_: Annotated[bool, typer.Option("--all", help="Also plugins blocked by JEPA_DISABLE_PLUGINS.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Loaded plugins: name, version, hooks, components."""
    from jepa_platform.plugins.manager import get_plugins

    infos = get_plugins().info(include_blocked=all_)
    if as_json:
        return emit_json([i.__dict__ for i in infos])
    table = Table("plugin", "version", "hooks", "components")
    for i in infos:
        comps = "; ".join(f"{fam}: {', '.join(names)}" for fam, names in i.components.items())
        table.add_row(i.name + (" (blocked)" if i.blocked else ""), i.version,
                      ", ".join(h.removeprefix("jepa_register_") for h in i.hooks), comps)
    out.print(table)


def param_default(field: Any) -> Any:
    """A param's default as a user would write it; `(required)` where there is none."""
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


@app.command()
@user_errors
def components(
    family: Annotated[str | None, typer.Argument(help="backbones, maskers, teachers, ...")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Registered components: name, provider, params with defaults."""
    from jepa_platform.plugins.manager import get_plugins
    from jepa_platform.plugins.registries import FAMILIES

    regs = get_plugins().registries
    if family and family not in regs:
        raise ConfigError(f"family: must be one of {', '.join(FAMILIES)}, got {family!r}")
    rows = []
    for fam in [family] if family else FAMILIES:
        for c in regs[fam]:
            params = {n: param_default(f) for n, f in c.config.model_fields.items()}
            rows.append({"family": fam, "name": c.name, "provider": c.provider, "params": params,
                         "description": c.description})
    if as_json:
        return emit_json(rows)
    table = Table("family", "name", "provider", "params (defaults)", "description")
    for r in rows:
        table.add_row(r["family"], r["name"], r["provider"],
                      ", ".join(f"{k}={v}" for k, v in r["params"].items()), r["description"])
    out.print(table)


@app.command("list")
@user_errors
def list_jobs(
    target: Annotated[str | None, typer.Option(help="k8s: the jepa-platform RayJobs in the cluster instead.")] = None,
    namespace: Annotated[str | None, typer.Option(help="k8s: default, the kubeconfig context's.")] = None,
    context: Annotated[str | None, typer.Option(help="k8s: kubeconfig context; default, the current one.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Jobs submitted from this machine (or, with --target k8s, the RayJobs in a cluster namespace)."""
    from jepa_platform.plugins.contracts import ListsJobs
    from jepa_platform.runners import refresh, runner_for
    from jepa_platform.runners.jobstore import JobStore

    if target:
        runner = runner_for(target)
        if not isinstance(runner, ListsJobs):
            raise ConfigError(f"--target: {target} holds no jobs of its own to list (kubernetes does)")
        found = runner.list_jobs(namespace, context)
        if as_json:
            return emit_json(found)
        table = Table(*(found[0] if found else ["job", "status"]))
        for row in found:
            table.add_row(*map(str, row.values()))
        return out.print(table)

    store = JobStore()
    records = [refresh(r, store) for r in store.all()]
    if as_json:
        return emit_json([r.__dict__ | {"spec": None} for r in records])
    table = Table("job", "target", "status", "step", "created")
    for r in records:
        table.add_row(r.id, r.target, r.status, f"{r.step or 0}/{r.steps}",
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)))
    out.print(table)


@app.command()
@user_errors
def status(job: Annotated[str, typer.Argument(help="Job id or name.")], as_json: JsonOpt = False) -> None:
    """State of one job."""
    from jepa_platform.runners import refresh
    from jepa_platform.runners.jobstore import JobStore

    store = JobStore()
    r = refresh(store.get(job), store, strict=True)
    alarms = collapse_alarms(r)
    faults = store.faults(r.id)
    if as_json:
        return emit_json(r.__dict__ | {"spec": None, "collapse": alarms, "faults": faults})
    unit = "shard" if (r.spec or {}).get("embed") else "step"
    out.print(f"{r.id}: [bold]{r.status}[/] {unit} {r.step or 0}/{r.steps} on {r.target}; outputs {r.job_dir}"
              + (f"\nerror: {r.error}" if r.error else ""), highlight=False)
    sys.stdout.flush()  # the status line first, then its warnings (stderr is not buffered)
    said = {"skipped_videos": "unreadable videos skipped", "checkpoint_failures": "checkpoints that could not be "
            "written", "restarts": "worker restarts"}
    if any(faults.values()):
        err.print("[yellow]warning:[/] " + ", ".join(f"{said[k]}: {v}" for k, v in faults.items() if v)
                  + f" (see `jepa logs {r.id}`)", highlight=False, soft_wrap=True)
    for stage, alarm in alarms.items():
        err.print(f"[yellow]warning:[/] {stage}: collapse suspected since step {alarm['since']}: {alarm['reason']}",
                  highlight=False, soft_wrap=True)


def collapse_alarms(record) -> dict[str, dict[str, Any]]:
    """{stage name: the collapse alarm it recorded} for the job's stages (or the job)."""
    from jepa_platform.spec import SpecError, resolved_spec
    from jepa_platform.train.health import read_alarm

    try:
        stages = [(s.name, s.job_dir) for s in resolved_spec(record.spec).pipeline()] if record.spec else []
    except SpecError:
        stages = []
    found = {name: read_alarm(job_dir) for name, job_dir in stages or [(record.name, record.job_dir)]}
    return {name: alarm for name, alarm in found.items() if alarm}


@app.command()
@user_errors
def logs(
    job: Annotated[str, typer.Argument(help="Job id or name.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """A job's log (metrics rows and errors)."""
    from jepa_platform.events import PREFIX, EventReader, render, timestamp
    from jepa_platform.runners import read_log
    from jepa_platform.runners.jobstore import JobStore

    store = JobStore()
    reader = EventReader()
    for line in read_log(store.get(job), store, follow=follow):
        event = reader.feed(line)
        if event is not None and line.startswith(PREFIX):  # an event: each of its lines with the time it was said
            when = timestamp(reader.last_time)
            text = "\n".join(f"{when} {part}" if when else part for part in render(event).split("\n"))
        else:
            text = line.rstrip("\n")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


@app.command()
@user_errors
def cancel(
    job: Annotated[str, typer.Argument(help="Job id or name.")],
    delete: Annotated[bool, typer.Option("--delete", help="k8s: delete the RayJob and all it made, instead of "
                                         "suspending it.")] = False,
) -> None:
    """Stop a running job (its checkpoints stay; submitting it again resumes)."""
    from jepa_platform.runners import cancel as cancel_job
    from jepa_platform.runners.jobstore import JobStore

    store = JobStore()
    r = cancel_job(store.get(job), store, delete=delete)
    out.print(f"{r.id}: {r.status}")


@app.command()
@user_errors
def flops(spec: SpecArg, overrides: Overrides = None, as_json: JsonOpt = False) -> None:
    """Training FLOPs before launch: per step and for the whole schedule, per stage and in total."""
    from jepa_platform.train.flops import format_flops, format_schedule, schedule_flops

    job = load(spec, overrides)
    reports = {s.name: schedule_flops(s) for s in job.pipeline() if s.trains}  # probes, embeddings: no pretraining
    total = sum(r["schedule"]["total"] for r in reports.values())
    if as_json:
        return emit_json({"stages": reports, "total": total})
    for name, report in reports.items():
        out.print(f"[bold]{name}[/]", highlight=False)
        out.print(format_schedule(report), highlight=False)
    if len(reports) > 1:
        out.print(f"[bold]pipeline total[/] {format_flops(total)}", highlight=False)


def settings_error(e) -> ConfigError:
    """A pydantic ValidationError of a command's settings as one line: `field: problem; ...`."""
    return ConfigError("; ".join(f"{'.'.join(map(str, x['loc'])) or 'settings'}: {x['msg']}" for x in e.errors()))


def parse_mapping(text: str | None, what: str) -> dict[str, Any]:
    import yaml

    value = yaml.safe_load(text) if text else {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: expected a YAML/JSON mapping, e.g. '{{size: tiny, depth: 4}}', got {text!r}")
    return value


@app.command()
@user_errors
def probe(
    train: Annotated[str, typer.Option(help="Training set: `path label` CSV, JSONL (path, label, label_name) or a "
                                            "folder per class (videos or images).", show_default=False)],
    val: Annotated[str, typer.Option(help="Validation set, same forms.", show_default=False)],
    checkpoint: Annotated[str | None, typer.Option(help="Encoder weights: a job, checkpoints or step folder, state.pt, "
                                                        "an official V-JEPA / V-JEPA 2 .pt, a Hugging Face V-JEPA 2 "
                                                        "folder or a jepa export, any fsspec URL; omit for a "
                                                        "random-init baseline.")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone kind, e.g. vit or timm (default: the checkpoint "
                                                      "job's).")] = None,
    backbone_params: Annotated[str | None, typer.Option(help="Backbone params, YAML, e.g. '{size: large}'.")] = None,
    probe_kind: Annotated[str | None, typer.Option("--probe", help="Probe kind: attentive or linear.")] = None,
    probe_params: Annotated[str | None, typer.Option(help="Probe params, YAML, e.g. '{depth: 3}'.")] = None,
    lr: Annotated[list[float] | None, typer.Option("--lr", help="Learning rate of the grid (repeat).")] = None,
    wd: Annotated[list[float] | None, typer.Option("--wd", help="Weight decay of the grid (repeat).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Probe epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Videos per batch per worker.")] = None,
    frames: Annotated[int | None, typer.Option(help="Frames per clip (default: the checkpoint job's).")] = None,
    resolution: Annotated[int | None, typer.Option(help="Clip side in pixels (default: the job's).")] = None,
    segments: Annotated[int | None, typer.Option(help="Clips per video, one per temporal segment.")] = None,
    views: Annotated[int | None, typer.Option(help="Spatial views at evaluation, predictions averaged.")] = None,
    output: Annotated[str | None, typer.Option(help="Output folder (metrics, confusion matrix, best probe).")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Any other setting, KEY=VALUE (YAML value), "
                                                                     "e.g. --set augment=false")] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Frozen evaluation: train a grid of probes on a checkpoint's frozen encoder and report validation accuracy."""
    import yaml
    from pydantic import ValidationError

    from jepa_platform.eval import ProbeSettings, run_probe

    raw: dict[str, Any] = {
        "train": train, "val": val, "checkpoint": checkpoint, "lrs": lr, "wds": wd, "epochs": epochs,
        "batch_size": batch_size, "frames": frames, "resolution": resolution, "num_segments": segments,
        "num_views": views, "output": output,
    }
    raw = {k: v for k, v in raw.items() if v is not None}  # unset options keep ProbeSettings' defaults
    if backbone or backbone_params:
        raw["backbone"] = {"kind": backbone or "vit", "params": parse_mapping(backbone_params, "--backbone-params")}
    if probe_kind or probe_params:
        raw["probe"] = {"kind": probe_kind or "attentive", "params": parse_mapping(probe_params, "--probe-params")}
    for item in settings or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set num_views=3")
        key, value = item.split("=", 1)
        raw[key.strip()] = yaml.safe_load(value)
    try:
        probe_settings = ProbeSettings.model_validate(raw)
    except ValidationError as e:
        raise settings_error(e) from None

    def on_epoch(rows: list[dict[str, Any]]) -> None:
        if quiet or as_json:
            return
        best = max(rows, key=lambda r: r.get("val_top1", -1))
        shown = f", best val top-1 {best['val_top1']:.3f}" if "val_top1" in best else ""
        out.print(f"epoch {rows[0]['epoch']}: train loss {min(r['train_loss'] for r in rows):.4f}{shown} "
                  f"({rows[0]['epoch_s']:.1f} s)", highlight=False)

    report = run_probe(probe_settings, on_epoch=on_epoch)
    if as_json:
        emit_json(report.to_dict())
        return
    print_probe_report(report, checkpoint)


def print_probe_report(report, checkpoint: str | None) -> None:
    table = Table(title=f"probes on {checkpoint or 'a randomly initialised encoder'} ({report.val_items} val items)")
    for column in ("probe", "top-1 last epoch", "best epoch top-1", "top-5", "val loss", "train loss"):
        table.add_column(column, justify="left" if column == "probe" else "right")
    for i, r in enumerate(report.results):
        mark = " [bold green]*best[/]" if i == report.best else ""
        table.add_row(r.name + mark, f"{r.top1:.3f}", f"{r.best_top1:.3f} (epoch {r.best_epoch})", f"{r.top5:.3f}",
                      f"{r.loss:.4f}", f"{r.train_loss:.4f}")
    out.print(table)
    out.print("*best: the probe with the highest top-1 at the last epoch (its confusion matrix and weights are "
              "written); 'best epoch top-1' is each probe's highest over the evaluated epochs, as V-JEPA 2 reports.")
    if report.groups:
        out.print("best probe by class group: " + ", ".join(f"{g} {a:.3f}" for g, a in report.groups.items()))
    if report.output:
        out.print(f"outputs in {report.output}")


@app.command()
@user_errors
def export(
    source: Annotated[str, typer.Argument(
        help="A run or checkpoint, an official V-JEPA / V-JEPA 2 .pt, a Hugging Face V-JEPA 2 folder or a jepa export; "
        "any fsspec URL.", show_default=False)],
    out_dir: Annotated[str, typer.Argument(help="New folder to write (any fsspec URL).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="hf: a transformers V-JEPA 2 folder (RoPE encoders); "
                                                      "safetensors: the encoder and a JSON config jepa reads back.")]
    = "hf",
    key: Annotated[str, typer.Option(help="Which encoder of a checkpoint: auto, teacher, student, target_encoder, "
                                          "encoder.")] = "auto",
) -> None:
    """Write an encoder out: a Hugging Face V-JEPA 2 folder or a safetensors export."""
    from jepa_platform.weights.export import export_encoder

    for note in export_encoder(source, fmt, out_dir, key):
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    out.print(f"wrote {fmt} export of {source} to {out_dir}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def embed(
    checkpoint: Annotated[str, typer.Argument(
        help="Encoder weights: a job, checkpoints or step folder, an official V-JEPA / V-JEPA 2 .pt, a Hugging Face "
        "V-JEPA 2 folder or a jepa export; any fsspec URL.", show_default=False)],
    data: Annotated[str, typer.Option(help="Videos: a folder (searched recursively), a list of `path` or `path "
                                           "label` lines, or JSONL; any fsspec URL.", show_default=False)],
    output: Annotated[str, typer.Option("--out", help="Folder to write (any fsspec URL); an unfinished one with "
                                                      "the same settings is resumed.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="parquet or npy.")] = "parquet",
    tokens: Annotated[bool, typer.Option("--tokens", help="Also write every token, not just the pooled "
                                                          "vector.")] = False,
    key: Annotated[str, typer.Option(help="Which encoder of a checkpoint: auto, teacher, student, target_encoder, "
                                          "encoder.")] = "auto",
    backbone: Annotated[str | None, typer.Option(help="Backbone kind (default: the checkpoint's).")] = None,
    backbone_params: Annotated[str | None, typer.Option(help="Backbone params, YAML, e.g. '{size: large}'.")] = None,
    frames: Annotated[int | None, typer.Option(help="Frames per clip (default: the checkpoint's).")] = None,
    resolution: Annotated[int | None, typer.Option(help="Clip side in pixels (default: the checkpoint's).")] = None,
    segments: Annotated[int | None, typer.Option(help="Clips per video, one per temporal segment.")] = None,
    shard_size: Annotated[int | None, typer.Option(help="Videos per shard (the unit of resuming).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Videos per batch per worker.")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Any other embedding setting, KEY=VALUE "
                                                                     "(YAML value), e.g. --set dtype=float16")] = None,
    name: Annotated[str | None, typer.Option(help="Job name (default: from the output folder's name).")] = None,
    target: Annotated[str, typer.Option(help="local | ray | k8s.")] = "local",
    address: Annotated[str | None, typer.Option(help="Target ray: the cluster's dashboard, e.g. "
                                                     "http://HOST:8265.")] = None,
    workers: Annotated[int, typer.Option(help="Ray Train workers; each takes its share of the shards.")] = 1,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per worker.")] = 0,
    cpus_per_worker: Annotated[float, typer.Option(help="CPUs per worker.")] = 1,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job to its end.")] = True,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a frozen encoder's features, one pooled vector (and optionally every token) per video, as Parquet
    or .npy shards; runs as a job on the chosen target and resumes where an interrupted one stopped."""
    import yaml
    from pydantic import ValidationError

    from jepa_platform.spec import validate_spec
    from jepa_platform.spec.embed import EmbedSettings

    raw: dict[str, Any] = {"checkpoint": checkpoint, "data": data, "output": output, "format": fmt,
                           "tokens": tokens, "key": key, "frames": frames, "resolution": resolution,
                           "num_segments": segments, "shard_size": shard_size, "batch_size": batch_size}
    raw = {k: v for k, v in raw.items() if v is not None}  # unset options keep EmbedSettings' defaults
    if backbone or backbone_params:
        raw["backbone"] = {"kind": backbone or "vit", "params": parse_mapping(backbone_params, "--backbone-params")}
    for item in settings or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set dtype=float16")
        field, value = item.split("=", 1)
        raw[field.strip()] = yaml.safe_load(value)
    try:  # the embedding's own settings first: one line naming the option
        EmbedSettings.model_validate(raw)
    except ValidationError as e:
        raise settings_error(e) from None
    folder, base = job_folder(output)
    job = validate_spec({
        "name": name or base, "data": {}, "embed": raw, "storage": {"output": folder}, "target": target,
        "resources": {"workers": workers, "gpus_per_worker": gpus_per_worker, "cpus_per_worker": cpus_per_worker},
        **({"cluster": {"address": address}} if address else {}),
    }, source="jepa embed")
    job.storage.configure()
    follow_job(job, job.target.kind, {"address": address} if address else {}, wait=wait, quiet=quiet,
               as_json=as_json)
    if wait and not as_json:
        show_embeddings(job.embed.output)


def show_embeddings(output: str) -> None:
    """What a finished embedding holds, and the videos it skipped, from its index (when it can be read here)."""
    from jepa_platform.embed.shards import done_shards, read_index

    try:
        index, markers = read_index(output), done_shards(output)
    except Exception:  # noqa: BLE001 - a cluster's bucket out of reach from here: the job said it is done
        return
    if not index:
        return
    skipped = [s for k in sorted(markers) for s in markers[k]["skipped"]]
    out.print(f"{index.get('written', 0)} of {index['videos']} videos embedded ({index.get('dim')}-d, "
              f"{index['shards']} {index['format']} shards){f', {len(skipped)} skipped:' if skipped else ''}",
              highlight=False)
    for s in skipped:
        out.print(f"  {s['path']}: {s['reason']}", highlight=False, soft_wrap=True)


def job_folder(output: str) -> tuple[str, str]:
    """(storage root, job name) of an embedding job writing to `output`: the job lives in the output folder
    itself when its name can be a job name, else beside it under a name made from it."""
    import posixpath
    import re

    from jepa_platform.storage import absolute_local

    output = absolute_local(output).rstrip("/")
    parent, base = posixpath.split(output)
    name = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:63].strip("-") or "embed"
    return parent or output, name


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"jepa-platform {__version__}")


@app.command()
@user_errors
def masks(
    spec: SpecArg,
    overrides: Overrides = None,
    out_path: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("masks.png"),
    samples: Annotated[int, typer.Option(min=1, help="Samples drawn per mask type.")] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Draw sampled masks of each mask type over the token grid, with their measured ratios."""
    from jepa_platform.train.build import spec_mask_picture

    stats = spec_mask_picture(load(spec, overrides), out_path, samples=samples)
    if as_json:
        return emit_json([s.__dict__ for s in stats])
    table = Table("mask", "context", "targets", "dropped by truncation")
    for s in stats:
        table.add_row(s.name, f"{s.context_ratio:.1%}", f"{s.target_ratio:.1%}", f"{s.dropped_ratio:.1%}")
    out.print(table)
    out.print(f"wrote {out_path}")


@data_app.command("synthetic")
@user_errors
def data_synthetic(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write videos and manifests into.")],
    videos_per_class: Annotated[int, typer.Option(min=1)] = 8,
    frames: Annotated[int, typer.Option(min=2)] = 32,
    size: Annotated[int, typer.Option(min=16)] = 64,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.25,
    seed: int = 0,
) -> None:
    """Write the synthetic motion/appearance video set (real H.264 mp4) with `path label` manifests."""
    from jepa_platform.data.synthetic import CLASSES, write_synthetic_dataset

    manifest = write_synthetic_dataset(out_dir, videos_per_class=videos_per_class, frames=frames, size=size,
                                       seed=seed, val_fraction=val_fraction)
    out.print(f"wrote {len(CLASSES)} classes x {videos_per_class} videos; manifest {manifest}")


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":
    main()

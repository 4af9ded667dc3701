"""Target `ray`: the job submitted to an existing Ray cluster through the Ray Jobs API.

The Ray job's entrypoint is `python -m jepa_platform.runners.ray_jobs`, run by the cluster's `python`
(jepa-platform must be installed there). It reads the resolved spec from `$JEPA_SPEC_JSON` and runs its
stages with the `local` runner; that runner's `ray.init()` joins the cluster, because Ray Jobs sets
`RAY_ADDRESS` for the entrypoint. Training rows and `stage ...`/`error: ...` lines go to the job's log.

Address: `--address`, else the spec's cluster address, else `$JEPA_RAY_ADDRESS`; always the dashboard's
HTTP address (`http://HOST:8265`), not a `ray://` client address.

Token auth (Ray 2.60: `ray start` turns it on with `RAY_AUTH_MODE=token`, or when unset and a token exists
in `$RAY_AUTH_TOKEN`, `$RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`): the token goes as `Authorization: Bearer
...`, taken from `$JEPA_RAY_TOKEN`, else `$RAY_AUTH_TOKEN`, else the file named by `$RAY_AUTH_TOKEN_PATH`;
with none of them, Ray's own lookup applies (`~/.ray/auth_token`, only when this process has
`RAY_AUTH_MODE=token`). `ray get-auth-token` on the head prints the cluster's token. The token never goes
into the job's runtime_env: the job's own processes authenticate as the cluster's processes do.

Plugins: components from the built-in plugin need nothing (they ship with jepa-platform on the cluster).
A plugin installed from a package index goes as a runtime_env `pip` requirement (`name==version`, so its
dependencies come too); one installed from a local folder (`pip install -e`) goes as `py_modules`: its
import packages plus a generated `*.dist-info` holding its entry points, so every process of the job,
Ray Train workers included, finds it the usual way. Its own dependencies must then be on the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple

from jepa_platform.errors import ConfigError, JepaError, JobDetached
from jepa_platform.runners.events import Done, Error, EventReader, Row, Stage, encode
from jepa_platform.runners.jobstore import TERMINAL, JobNotFound, JobRecord, JobStore
from jepa_platform.runners.local import RunResult
from jepa_platform.spec import JobSpec

ADDRESS_ENV = "JEPA_RAY_ADDRESS"
TOKEN_ENV = "JEPA_RAY_TOKEN"
SPEC_ENV = "JEPA_SPEC_JSON"
JOB_LABEL = "jepa.job"  # metadata key that marks our jobs on a shared cluster
STATUSES = {"PENDING": "PENDING", "RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED",
            "STOPPED": "CANCELLED"}
CONNECT_TIMEOUT_S = 10.0
EXCLUDES = [".git", ".venv", "__pycache__", "*.pyc", "runs"]


class RayJobState(NamedTuple):
    status: str  # PENDING | RUNNING | SUCCEEDED | FAILED | CANCELLED
    message: str


@dataclass
class RayJob:
    submission_id: str
    name: str
    status: str
    message: str
    started: float | None  # seconds since the epoch
    ended: float | None
    metadata: dict[str, str]


# -- address and token ----------------------------------------------------------------------------------
def resolve_address(explicit: str | None = None) -> str:
    """The dashboard URL to use: explicit (--address, else the spec's), else $JEPA_RAY_ADDRESS; `HOST:PORT`
    gets http://."""
    address = explicit or os.environ.get(ADDRESS_ENV)
    if not address:
        raise ConfigError(
            f"target ray needs the cluster's dashboard address: pass --address http://HOST:8265, set "
            f"cluster.address in the spec, or set {ADDRESS_ENV}"
        )
    address = address.strip().rstrip("/")
    if address.startswith("ray://"):
        raise ConfigError(f"{address}: target ray submits through the Ray Jobs API; give the dashboard's "
                          f"address, e.g. http://HOST:8265, not a ray:// client address")
    if "://" not in address:
        address = f"http://{address}"
    if not re.match(r"^https?://[^/\s]+", address):
        raise ConfigError(f"{address}: a Ray dashboard address looks like http://HOST:8265")
    return address


def auth_token() -> tuple[str, str] | None:
    """(token, where it came from) from $JEPA_RAY_TOKEN, $RAY_AUTH_TOKEN or $RAY_AUTH_TOKEN_PATH, if any."""
    for name in (TOKEN_ENV, "RAY_AUTH_TOKEN"):
        if os.environ.get(name, "").strip():
            return os.environ[name].strip(), f"${name}"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        try:
            return Path(path).expanduser().read_text().strip(), f"$RAY_AUTH_TOKEN_PATH ({path})"
        except OSError as e:
            raise ConfigError(f"RAY_AUTH_TOKEN_PATH: cannot read {path}: {e.strerror}") from None
    return None


def ray_default_headers() -> dict[str, str]:
    """The header Ray itself would add (RAY_AUTH_MODE=token in this process, token from its usual places)."""
    try:
        from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

        return dict(get_auth_headers_if_auth_enabled({}))
    except Exception:  # a Ray without token auth, or no token: nothing to add
        return {}


# -- plugins --------------------------------------------------------------------------------------------
def plugin_distributions() -> dict[str, metadata.Distribution]:
    """Entry-point name in the `jepa_platform` group -> the installed distribution declaring it."""
    from jepa_platform.plugins.manager import ENTRY_POINT_GROUP

    out: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                out.setdefault(ep.name, dist)
    return out


def spec_providers(spec: JobSpec) -> dict[str, list[str]]:
    """Plugin name -> the spec's components it provides (every stage's), the built-in plugin left out."""
    from jepa_platform.plugins.manager import BUILTIN, registry

    out: dict[str, list[str]] = {}
    for s in [spec, *spec.pipeline()]:
        for _, family, comp in s.components():
            provider = registry(family).get(comp.kind).provider
            if provider != BUILTIN and comp.kind not in out.setdefault(provider, []):
                out[provider].append(comp.kind)
    return out


def local_source(dist: metadata.Distribution) -> str | None:
    """The folder a distribution was installed from when that was a local path (`pip install -e .`)."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    url = json.loads(text).get("url", "")
    return url.removeprefix("file://") if url.startswith("file://") else None


def pip_requirement(dist: metadata.Distribution) -> str:
    name = dist.metadata["Name"]
    info = json.loads(dist.read_text("direct_url.json") or "{}")
    if not info.get("url"):
        return f"{name}=={dist.version}"
    vcs = info.get("vcs_info")
    if vcs:
        return f"{name} @ {vcs['vcs']}+{info['url']}@{vcs['commit_id']}"
    return f"{name} @ {info['url']}"


def import_paths(dist: metadata.Distribution) -> list[str]:
    """Folders (packages) or files (modules) of a distribution's top-level imports."""
    from jepa_platform.plugins.manager import ENTRY_POINT_GROUP

    names = (dist.read_text("top_level.txt") or "").split()
    names += [ep.value.split(":")[0].split(".")[0] for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
    paths: list[str] = []
    for name in dict.fromkeys(names):
        found = find_spec(name)
        if found is None:
            raise ConfigError(f"plugin distribution {dist.metadata['Name']}: cannot find its module {name!r}")
        path = found.submodule_search_locations[0] if found.submodule_search_locations else found.origin
        if path and path not in paths:
            paths.append(path)
    return paths


def write_dist_info(dist: metadata.Distribution, into: Path) -> str:
    """A minimal `NAME-VERSION.dist-info` folder (METADATA, entry_points.txt) that importlib.metadata finds."""
    name, version = dist.metadata["Name"], dist.version
    folder = into / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (folder / "entry_points.txt").write_text(dist.read_text("entry_points.txt") or "")
    return str(folder)


def plugin_packages(spec: JobSpec, scratch: Path) -> tuple[list[str], list[str]]:
    """(pip requirements, py_modules paths) that bring the spec's plugins to the cluster."""
    dists = plugin_distributions()
    pip: list[str] = []
    modules: list[str] = []
    for provider, kinds in spec_providers(spec).items():
        dist = dists.get(provider)
        if dist is None:
            raise ConfigError(
                f"{', '.join(kinds)}: plugin {provider!r} is not an installed distribution, so it cannot be "
                f"shipped to the Ray cluster; install it (`pip install -e PATH`) or pass it with --plugin"
            )
        if local_source(dist) is None:
            pip.append(pip_requirement(dist))
        else:
            modules += [p for p in import_paths(dist) if p not in modules]
            modules.append(write_dist_info(dist, scratch / provider))
    return pip, modules


# -- the runner -----------------------------------------------------------------------------------------
class RayJobsRunner:
    """Submits, follows and stops jobs on one Ray cluster, through its dashboard's Jobs API."""

    def __init__(self, address: str | None = None, *, working_dir: str | None = None,
                 plugins: list[str] | None = None):
        self._given = address  # resolved on first use: building the runner has no side effects
        self.working_dir, self.plugins = working_dir, plugins
        self._address: str | None = None
        self._headers: dict[str, str] | None = None
        self.token_source: str | None = None
        self._client = None

    @property
    def address(self) -> str:
        if self._address is None:
            self._address = resolve_address(self._given)
        return self._address

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            token = auth_token()
            if token:
                self._headers, self.token_source = {"Authorization": f"Bearer {token[0]}"}, token[1]
            else:
                self._headers = ray_default_headers()
                self.token_source = "~/.ray/auth_token (RAY_AUTH_MODE=token)" if self._headers else None
        return self._headers

    def prepare(self, spec: JobSpec) -> None:
        """Before a job is recorded: the cluster answers and accepts our token (`contracts.Prepares`)."""
        self.check()

    # connection ------------------------------------------------------------------------------------------
    def unreachable(self, e: BaseException) -> JepaError:
        return ConfigError(f"cannot reach the Ray cluster at {self.address}: {short(e)}")

    def auth_error(self, status: int) -> JepaError:
        if status == 401 or not self.token_source:
            return ConfigError(f"the Ray cluster at {self.address} requires a token: set {TOKEN_ENV} "
                               f"(`ray get-auth-token` on its head node prints it)")
        return ConfigError(f"the Ray cluster at {self.address} rejected the token from {self.token_source}: "
                           f"set {TOKEN_ENV} to the cluster's token (`ray get-auth-token` on its head prints it)")

    def check(self) -> str:
        """The cluster's Ray version; a clear error when it cannot be reached or refuses our token."""
        import requests

        try:
            r = requests.get(f"{self.address}/api/version", headers=self.headers,
                             timeout=(CONNECT_TIMEOUT_S, 3 * CONNECT_TIMEOUT_S))
        except requests.RequestException as e:
            raise self.unreachable(e) from None
        if r.status_code in (401, 403):
            raise self.auth_error(r.status_code)
        try:
            r.raise_for_status()
            return r.json()["ray_version"]
        except (requests.RequestException, ValueError, KeyError):
            raise ConfigError(f"{self.address} is not a Ray dashboard (GET /api/version answered "
                              f"{r.status_code}); give the dashboard's address, e.g. http://HOST:8265") from None

    @property
    def client(self):
        if self._client is None:
            self.check()
            from ray.job_submission import JobSubmissionClient

            with self.errors():
                self._client = JobSubmissionClient(self.address, headers=dict(self.headers))
        return self._client

    def errors(self, submission_id: str | None = None) -> _Errors:
        return _Errors(self, submission_id)

    # jobs ------------------------------------------------------------------------------------------------
    def runtime_env(self, spec: JobSpec, scratch: Path, working_dir: str | None = None,
                    plugins: list[str] | None = None) -> dict[str, Any]:
        """The job's runtime_env: the spec, the user's folder (if any) and the plugins the spec uses."""
        env: dict[str, Any] = {"env_vars": {SPEC_ENV: json.dumps(spec.resolved())}}
        pip, modules = plugin_packages(spec, scratch)
        for extra in plugins or []:  # a local path (folder, .py, .whl) or a pip requirement
            if Path(extra).expanduser().exists():
                modules.append(str(Path(extra).expanduser().resolve()))
            else:
                pip.append(extra)
        if working_dir:
            if "://" not in working_dir and not Path(working_dir).is_dir():
                raise ConfigError(f"--working-dir: {working_dir} is not a folder")
            env["working_dir"] = working_dir if "://" in working_dir else str(Path(working_dir).resolve())
        if pip:
            env["pip"] = pip
        if modules:
            env["py_modules"] = modules
        if working_dir or modules:
            env["excludes"] = EXCLUDES
        return env

    def launch(self, spec: JobSpec, working_dir: str | None = None, plugins: list[str] | None = None, *,
               stage: str | None = None, submission_id: str | None = None) -> str:
        """Submits the job (all its stages, or only `stage`); returns its submission id."""
        from jepa_platform import __version__

        submission_id = submission_id or new_submission_id(spec.name)
        entrypoint = "python -m jepa_platform.runners.ray_jobs" + (f" --stage {shlex.quote(stage)}" if stage else "")
        labels = {JOB_LABEL: spec.name, "jepa.version": __version__, "jepa.job_dir": spec.job_dir,
                  "jepa.stage": stage or ""}
        client = self.client
        for name in ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging"):
            logging.getLogger(name).setLevel(logging.WARNING)  # one INFO line per uploaded package
        with tempfile.TemporaryDirectory(prefix="jepa-ray-") as scratch:
            env = self.runtime_env(spec, Path(scratch), working_dir, plugins)
            with self.errors():
                return client.submit_job(entrypoint=entrypoint, submission_id=submission_id, runtime_env=env,
                                         metadata=labels)

    def status(self, submission_id: str) -> RayJobState:
        """(PENDING | RUNNING | SUCCEEDED | FAILED | CANCELLED, message); a failure's message is its error line."""
        with self.errors(submission_id):
            info = self.client.get_job_info(submission_id)
        status = STATUSES.get(str(info.status), str(info.status))
        message = (info.message or "").strip()
        if status == "FAILED":  # Ray's message quotes the log's tail; our own error line says it in one
            message = EventReader.read(self.text(submission_id)).last_error or (message.splitlines() or [""])[0]
        return RayJobState(status, message)

    def text(self, submission_id: str) -> str:
        with self.errors(submission_id):
            return self.client.get_job_logs(submission_id)

    def logs(self, submission_id: str, follow: bool = False) -> Iterator[str]:
        """The job's log lines (with their newlines); with follow, until the job ends."""
        if not follow:
            yield from self.text(submission_id).splitlines(keepends=True)
            return
        self.status(submission_id)  # a clear error for an unknown id, before the websocket's
        logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # "WebSocket closed"
        pending = ""
        with self.errors(submission_id):
            for chunk in sync_iter(self.client.tail_job_logs(submission_id)):
                lines = (pending + chunk).splitlines(keepends=True)
                pending = lines.pop() if lines and not lines[-1].endswith("\n") else ""
                yield from lines
        if pending:
            yield pending

    def cancel(self, submission_id: str) -> bool:
        """Stops the job; False when it had already ended."""
        with self.errors(submission_id):
            return self.client.stop_job(submission_id)

    def list(self) -> list[RayJob]:
        """The cluster's jobs submitted by jepa-platform (from any machine), oldest first."""
        with self.errors():
            jobs = self.client.list_jobs()
        out = [
            RayJob(j.submission_id, j.metadata[JOB_LABEL], STATUSES.get(str(j.status), str(j.status)),
                   j.message or "", j.start_time / 1000 if j.start_time else None,
                   j.end_time / 1000 if j.end_time else None, dict(j.metadata))
            for j in jobs if j.submission_id and JOB_LABEL in (j.metadata or {})
        ]
        return sorted(out, key=lambda j: j.started or 0)

    # following, and the job store --------------------------------------------------------------------------
    def follow(self, submission_id: str, on_line: Callable[[str], None]) -> RayJobState:
        """Hands each log line to `on_line` until the job ends; returns its final state. Ctrl-C stops following
        only: the job goes on in the cluster, as with `ray job submit` and the Kubernetes target."""
        for line in self.logs(submission_id, follow=True):
            on_line(line)
        state = self.status(submission_id)
        while state.status not in TERMINAL:  # the log can end a moment before the status does
            time.sleep(0.5)
            state = self.status(submission_id)
        return state

    def submit(self, spec: JobSpec, on_row: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
        """The runner contract (`run_stages`): runs one stage as one Ray job, to its end."""
        rows: list[dict[str, Any]] = []
        reader = EventReader()

        def on_line(line: str) -> None:
            event = reader.feed(line)
            if isinstance(event, Row):
                rows.append(event.values)
                if on_row:
                    on_row(event.values)

        state = self.follow(self.launch(spec), on_line)
        return RunResult(spec.name, spec.job_dir, state.status, rows[-1]["step"] if rows else 0,
                         rows[-1] if rows else {}, None, None, state.message if state.status != "SUCCEEDED" else None)

    def run_record(
        self,
        spec: JobSpec,
        record: JobRecord,
        store: JobStore,
        *,
        wait: bool = True,
        working_dir: str | None = None,
        plugins: list[str] | None = None,
        on_row: Callable[[dict[str, Any]], None] | None = None,
        on_stage: Callable[[JobSpec, str, int | None], None] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> JobRecord:
        """Submits the recorded job (its `stage`, else all stages) as one Ray job; with wait, copies its log
        into the job store's and feeds `on_row`/`on_stage` until it ends. A refused job is recorded FAILED.
        Interrupted, it stops following and the job goes on (JobDetached says how to follow or stop it)."""
        working_dir, plugins = working_dir or self.working_dir, plugins or self.plugins
        try:
            sid = self.launch(spec, working_dir, plugins, stage=record.stage, submission_id=record.id)
        except JepaError as e:
            store.update(record.id, status="FAILED", error=str(e))
            raise
        record = store.update(record.id, status="PENDING", remote_id=sid, address=self.address)
        if not wait:
            return record
        stages = {s.name: s for s in spec.pipeline()}
        reader = EventReader(last_step=record.step)

        with store.log_path(record.id).open("a") as log:
            def on_line(line: str) -> None:
                log.write(line)
                log.flush()
                event = reader.feed(line)
                if isinstance(event, Row) and on_row:
                    on_row(event.values)
                elif isinstance(event, Stage) and on_stage and event.name in stages:
                    on_stage(stages[event.name], event.event, event.step)

            try:
                state = self.follow(sid, on_line)
            except KeyboardInterrupt:
                raise JobDetached(record.id, f"Ray job {sid} on {self.address}") from None
        return store.update(record.id, status=state.status, step=reader.last_step,
                            error=state.message if state.status == "FAILED" else None)


    # the job store's records (`contracts.Runner`) ----------------------------------------------------------
    def refresh(self, record: JobRecord, store: JobStore, strict: bool = False) -> JobRecord:
        return refresh_record(record, store, strict=strict)

    def stop(self, record: JobRecord, store: JobStore, delete: bool = False) -> JobRecord:
        return cancel_record(record, store)

    def read_log(self, record: JobRecord, store: JobStore, follow: bool = False) -> Iterator[str]:
        return record_logs(record, follow=follow)


class _Errors:
    """Turns Ray SDK failures into one-line JepaErrors that name the cluster (and the job)."""

    def __init__(self, runner: RayJobsRunner, submission_id: str | None):
        self.runner, self.submission_id = runner, submission_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, e, tb) -> bool:
        if e is None or isinstance(e, JepaError) or not isinstance(e, Exception):
            return False
        import aiohttp
        import requests
        from ray.exceptions import AuthenticationError

        if isinstance(e, AuthenticationError):
            raise self.runner.auth_error(403 if str(e).startswith("Authentication failed") else 401) from None
        if isinstance(e, aiohttp.WSServerHandshakeError) and e.status in (401, 403):
            raise self.runner.auth_error(e.status) from None
        if isinstance(e, (requests.ConnectionError, requests.Timeout, ConnectionError, aiohttp.ClientConnectionError)):
            raise self.runner.unreachable(e) from None
        text = str(e)
        if self.submission_id and ("404" in text or "does not exist" in text):
            raise JobNotFound(f"no job {self.submission_id!r} on the Ray cluster at {self.runner.address}") from None
        raise JepaError(f"the Ray cluster at {self.runner.address}: {short(e)}") from None


def new_submission_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def short(e: BaseException) -> str:
    """One line for an error; for a connection failure, its cause (e.g. `[Errno 111] Connection refused`)."""
    text = str(e).strip()
    cause = re.findall(r"\[Errno -?\d+\] [^'\"()]+", text)
    if cause:
        return cause[-1].strip()
    if "timed out" in text.lower():
        return "timed out"
    return text.splitlines()[0] if text else type(e).__name__


def sync_iter(agen: AsyncIterator[str]) -> Iterator[str]:
    """An async generator stepped on a private event loop, so callers need no asyncio.

    Ctrl-C while it waits leaves the step in flight; that step is cancelled (the generator's own cleanup
    runs) before the generator is closed, and the KeyboardInterrupt goes on to the caller.
    """
    loop = asyncio.new_event_loop()
    step: asyncio.Future | None = None
    try:
        while True:
            step = asyncio.ensure_future(agen.__anext__(), loop=loop)
            try:
                yield loop.run_until_complete(step)
            except StopAsyncIteration:
                return
    finally:
        if step is not None and not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                loop.run_until_complete(step)
        loop.run_until_complete(agen.aclose())
        loop.close()


# -- records of the job store (what `jepa status/logs/cancel/list` call for target ray) -----------------
def record_runner(record: JobRecord) -> RayJobsRunner:
    if not record.remote_id:
        raise JobNotFound(f"job {record.id} was never submitted to a Ray cluster (status {record.status})")
    return RayJobsRunner(record.address)


def refresh_record(record: JobRecord, store: JobStore, strict: bool = False) -> JobRecord:
    """The recorded job with the cluster's status and its last logged step; unchanged when the cluster
    cannot be asked (unless strict)."""
    if record.status in TERMINAL or not record.remote_id:
        return record
    try:
        runner = record_runner(record)
        state = runner.status(record.remote_id)
        step = EventReader.read(runner.text(record.remote_id)).last_step
    except JepaError:
        if strict:
            raise
        return record
    return store.update(record.id, status=state.status, step=step if step is not None else record.step,
                        error=state.message if state.status == "FAILED" else None)


def cancel_record(record: JobRecord, store: JobStore) -> JobRecord:
    if record.status in TERMINAL:
        return record
    if record.remote_id:
        record_runner(record).cancel(record.remote_id)
    return store.update(record.id, status="CANCELLED")


def record_logs(record: JobRecord, follow: bool = False) -> Iterator[str]:
    return record_runner(record).logs(record.remote_id, follow=follow)


# -- the entrypoint, inside the cluster -----------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Runs the spec in $JEPA_SPEC_JSON (all stages, or `--stage NAME`) with the local runner."""
    import argparse

    from jepa_platform.plugins.manager import registry
    from jepa_platform.runners.stages import run_stages
    from jepa_platform.spec import validate_spec

    parser = argparse.ArgumentParser(prog="python -m jepa_platform.runners.ray_jobs")
    parser.add_argument("--stage", default=None)
    args = parser.parse_args(argv)

    def on_stage(s: JobSpec, event: str, step: int | None) -> None:
        print(encode(Stage(s.name, event, step)), flush=True)

    if SPEC_ENV not in os.environ:
        print(f"error: ${SPEC_ENV} is not set; this entrypoint runs jobs submitted by `jepa submit --target ray`")
        return 2
    try:
        raw = json.loads(os.environ[SPEC_ENV])
        spec = validate_spec(raw, source=f"job {raw.get('name')}")
        runner = registry("runners").get("local").build({})
        results = run_stages(spec, runner, stage=args.stage, on_row=lambda row: print(encode(Row(row)), flush=True),
                             on_stage=on_stage)
    except JepaError as e:
        print(encode(Error(str(e))), flush=True)
        return 1
    last = results[-1]
    if last.error:
        print(encode(Error(last.error)), flush=True)
    if last.status == "SUCCEEDED":
        print(encode(Done(spec.name, spec.job_dir)), flush=True)
    return 0 if last.status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())

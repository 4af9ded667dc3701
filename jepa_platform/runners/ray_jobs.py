"""Runner `ray`: the job submitted to an existing Ray cluster through the Ray Jobs API.

The Ray job runs the job driver (`python -m jepa_platform.runners.driver`, with the resolved spec in its
runtime env) with the cluster's `python`, so jepa-platform must be installed there. What every cluster
runner does alike (records, following, detach, cancel) is `ClusterJobs`'; this module talks to Ray.

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
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple

from jepa_platform.errors import ClusterError, ConfigError, JepaError
from jepa_platform.events import EventReader
from jepa_platform.runners.cluster import ClusterJobs, Started
from jepa_platform.runners.driver import SPEC_ENV, command, encode_spec
from jepa_platform.runners.jobstore import JobNotFound, JobRecord, new_job_id
from jepa_platform.spec import JobSpec, travelling

ADDRESS_ENV = "JEPA_RAY_ADDRESS"
TOKEN_ENV = "JEPA_RAY_TOKEN"
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
class RayJobsRunner(ClusterJobs):
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
        return ClusterError(f"cannot reach the Ray cluster at {self.address}: {short(e)}")

    def auth_error(self, status: int) -> JepaError:
        if status == 401 or not self.token_source:
            return ClusterError(f"the Ray cluster at {self.address} requires a token: set {TOKEN_ENV} "
                               f"(`ray get-auth-token` on its head node prints it)")
        return ClusterError(f"the Ray cluster at {self.address} rejected the token from {self.token_source}: "
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
            raise ClusterError(f"{self.address} is not a Ray dashboard (GET /api/version answered "
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
        env: dict[str, Any] = {"env_vars": {SPEC_ENV: encode_spec(travelling(spec))}}
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
        from jepa_platform.version import __version__

        submission_id = submission_id or new_job_id(spec.name)
        entrypoint = shlex.join(command(stage))
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

    # what `ClusterJobs` asks of a cluster ---------------------------------------------------------------
    def start(self, spec: JobSpec, stage: str | None, job_id: str) -> Started:
        sid = self.launch(spec, self.working_dir, self.plugins, stage=stage, submission_id=job_id)
        return Started(sid, self.address, f"Ray job {sid} on {self.address}",
                       f"Ray job {sid} submitted to {self.address}")

    def state(self, remote_id: str) -> tuple[str, str]:
        return tuple(self.status(remote_id))

    def lines(self, remote_id: str, follow: bool = False) -> Iterator[str]:
        return self.logs(remote_id, follow=follow)

    def recent(self, remote_id: str) -> str:
        return self.text(remote_id)

    def halt(self, remote_id: str, delete: bool = False) -> str:
        """Stops the job; the state it had already ended in, if it had (Ray keeps finished jobs' logs)."""
        return "CANCELLED" if self.cancel(remote_id) else self.status(remote_id).status

    def attached(self, record: JobRecord) -> RayJobsRunner:
        return RayJobsRunner(record.address)


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
        raise ClusterError(f"the Ray cluster at {self.runner.address}: {short(e)}") from None


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

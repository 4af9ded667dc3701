"""Runner `kubernetes`: a job spec run as a KubeRay RayJob, through the official `kubernetes` client.

`KubernetesRunner` creates, watches, follows, stops and lists the RayJobs that `build_rayjob` describes.
Inside the cluster, the RayJob runs the job driver (`python -m jepa_platform.runners.driver`) on the
spec it carries, with the same Ray Train code path as `jepa submit --target local`, on the cluster's Ray.
What every cluster runner does alike (records, following, detach, cancel) is `ClusterJobs`'.

Every failure a user can cause or meet (no kubeconfig, unreachable API server, KubeRay not installed,
RBAC, quota, a job of that name still running) ends as one `KubernetesError` with one clear message.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jepa_platform.errors import ClusterError, ConfigError, JepaError, NotFound
from jepa_platform.runners.cluster import ClusterJobs, Started
from jepa_platform.runners.k8s_manifest import APP, APP_LABEL, GROUP, JOB_LABEL, PLURAL, VERSION, build_rayjob
from jepa_platform.runners.k8s_settings import KubernetesSettings
from jepa_platform.runners.profiles import AcceleratorProfile, load_profiles

if TYPE_CHECKING:
    from jepa_platform.runners.jobstore import JobRecord, JobStore
    from jepa_platform.spec import JobSpec

DryRun = Literal["client", "server"] | None
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
FOLLOW_READ_TIMEOUT = 300.0  # seconds a followed log may stay quiet before the stream is opened again
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
KUBERAY_INSTALL = ("helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && "
                   "helm install kuberay-operator kuberay/kuberay-operator --version 1.7.0")


class KubernetesError(ClusterError):
    """A Kubernetes API call that failed for a reason the user can act on; the message says which."""


class ClusterUnreachable(KubernetesError):
    pass


class RayJobCRDMissing(KubernetesError):
    pass


class KubernetesForbidden(KubernetesError):
    pass


class QuotaExceeded(KubernetesError):
    pass


class RayJobNotFound(NotFound, KubernetesError):
    pass


class JobAlreadyRunning(KubernetesError):
    """A RayJob of the job's name is not finished yet; `remote` is its `namespace/name`."""

    def __init__(self, message: str, remote: str, state: str):
        super().__init__(message)
        self.remote, self.state = remote, state


# -- connecting --------------------------------------------------------------------------------------
@dataclass
class Connection:
    api: Any  # kubernetes.client.ApiClient
    server: str
    context: str | None  # None in-cluster
    namespace: str  # the context's (or the pod's) namespace, else "default"


def kubeconfig_path(kubeconfig: str | None = None) -> str:
    return kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def kubeconfig_exists(path: str) -> bool:
    return any(Path(p).expanduser().is_file() for p in path.split(os.pathsep) if p)


def connect(kubeconfig: str | None = None, context: str | None = None, retries: int = 1) -> Connection:
    """An API client from the kubeconfig (`kubeconfig`, `$KUBECONFIG`, ~/.kube/config) or, in a pod, the
    in-cluster service account; ConfigError when there is neither."""
    from kubernetes import client, config

    path = kubeconfig_path(kubeconfig)
    cfg = client.Configuration()
    try:
        if kubeconfig_exists(path):
            contexts, current = config.list_kube_config_contexts(config_file=path)
            chosen = current if context is None else next((c for c in contexts if c["name"] == context), None)
            if chosen is None:
                known = ", ".join(c["name"] for c in contexts) or "none"
                raise ConfigError(f"kubernetes.context: no context {context!r} in {path} (contexts: {known})")
            config.load_kube_config(config_file=path, context=chosen["name"], client_configuration=cfg,
                                    persist_config=False)
            namespace = chosen.get("context", {}).get("namespace") or "default"
            name: str | None = chosen["name"]
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
            namespace = SA_NAMESPACE_FILE.read_text().strip() if SA_NAMESPACE_FILE.exists() else "default"
            name = None
        else:
            raise ConfigError(f"no Kubernetes configuration: no kubeconfig at {path} (set KUBECONFIG) and not "
                              "running inside a cluster")
    except config.ConfigException as e:
        raise ConfigError(f"kubeconfig {path}: {e}") from None
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a kubeconfig that is not one: YAML errors, wrong types, missing keys
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"kubeconfig {path} cannot be read ({type(e).__name__}: {reason}); fix or replace it, "
                          f"or point KUBECONFIG at another") from None
    cfg.retries = retries
    return Connection(client.ApiClient(cfg), cfg.host, name, namespace)


def kubeconfig_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace `connect` would use, read without contacting anything; 'default' when unknown."""
    try:
        return connect(kubeconfig, context).namespace
    except ConfigError:
        return "default"


# -- errors ------------------------------------------------------------------------------------------
def status_body(exc: Any) -> dict[str, Any]:
    import json

    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return {"message": (exc.body or "").strip() or str(exc.reason)}
    return body if isinstance(body, dict) else {}


def who(message: str) -> str:
    m = re.search(r'User "([^"]+)"', message)
    if not m:
        return "this user"
    user = m.group(1)
    sa = re.match(r"system:serviceaccount:([^:]+):(.+)$", user)
    return f"service account {sa.group(1)}/{sa.group(2)}" if sa else f"user {user}"


def api_error(exc: Any, *, server: str, verb: str, resource: str, namespace: str, name: str | None = None
              ) -> KubernetesError:
    """One clear message for an ApiException, from the Status object the API server sent."""
    body = status_body(exc)
    message = body.get("message") or str(exc.reason)
    details = body.get("details") or {}
    code = exc.status
    if code == 0:  # the client's own wrapper of TLS failures
        return ClusterUnreachable(f"cannot reach the Kubernetes API server at {server}: {exc.reason}")
    if code == 401:
        return KubernetesError(f"the Kubernetes API server at {server} rejected the credentials (401 Unauthorized):"
                               " log in again or refresh the kubeconfig")
    if code == 403 and "exceeded quota" in message:
        return QuotaExceeded(f"quota exceeded in namespace {namespace}: {message}")
    if code == 403:
        return KubernetesForbidden(f"forbidden: {who(message)} cannot {verb} {resource} in namespace {namespace} "
                                   "(see the chart's submitter Role)")
    if code == 404 and details.get("kind") == "namespaces":
        return KubernetesError(f"namespace {namespace} does not exist (kubectl create namespace {namespace})")
    if code == 404 and resource == PLURAL and not details.get("name"):
        return RayJobCRDMissing(f"the RayJob CRD (ray.io/v1) is not installed in the cluster at {server}: install "
                                f"the KubeRay operator ({KUBERAY_INSTALL})")
    if code == 404:
        what = "RayJob" if resource == PLURAL else resource.rstrip("s")
        return RayJobNotFound(f"no {what} {name or details.get('name')} in namespace {namespace}")
    if code == 422:
        return KubernetesError(f"the API server rejected the RayJob {name or ''}: {message}".replace("  ", " "))
    return KubernetesError(f"Kubernetes API error ({code} {body.get('reason') or exc.reason}) on {verb} {resource} "
                           f"in namespace {namespace}: {message}")


# -- RayJob state ------------------------------------------------------------------------------------
def rayjob_state(obj: dict[str, Any]) -> tuple[str, str]:
    """(PENDING|RUNNING|SUCCEEDED|FAILED|CANCELLED, detail) of a RayJob, from KubeRay's status.

    Success is jobDeploymentStatus Complete with jobStatus SUCCEEDED; a suspended or stopped job is CANCELLED.
    """
    st = obj.get("status") or {}
    deployment = st.get("jobDeploymentStatus") or ""
    job = st.get("jobStatus") or ""
    parts = [f"deployment {deployment or 'New'}", f"job {job or 'NEW'}"]
    parts += [f"{k} {st[f]}" for k, f in (("cluster", "rayClusterName"), ("reason", "reason")) if st.get(f)]
    if st.get("message"):
        parts.append(str(st["message"]).strip())
    detail = ", ".join(parts)
    if obj.get("metadata", {}).get("deletionTimestamp"):
        return "CANCELLED", f"being deleted; {detail}"
    if deployment == "Complete":
        state = {"SUCCEEDED": "SUCCEEDED", "STOPPED": "CANCELLED"}.get(job, "FAILED")
    elif deployment == "Failed":
        state = "FAILED"
    elif deployment in ("Suspending", "Suspended") or obj.get("spec", {}).get("suspend"):
        state = "CANCELLED"
    elif deployment in ("Running", "Retrying"):
        state = "RUNNING"
    else:  # New, Initializing, Waiting, Scheduling, Scheduled
        state = "PENDING"
    return state, detail


@dataclass
class Launch:
    """What `launch` did: the RayJob's name and namespace, the manifest (as the server returned it, unless
    dry_run is 'client'), and whether a finished RayJob of the same name was (or would be) replaced."""

    name: str
    namespace: str
    manifest: dict[str, Any]
    dry_run: DryRun = None
    replaced: bool = False


@dataclass
class RayJobSummary:
    name: str
    namespace: str
    job: str
    status: str
    detail: str
    created: str | None


# -- the runner --------------------------------------------------------------------------------------
class KubernetesRunner(ClusterJobs):
    """Creates and follows RayJobs. Connects on first use, so a client-side dry run needs no cluster."""

    def __init__(
        self,
        *,
        settings: KubernetesSettings | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        profiles: dict[str, AcceleratorProfile] | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        poll_interval: float = 2.0,
        replace_timeout: float = 300.0,
    ):
        self.settings = settings or KubernetesSettings()
        self.kubeconfig = kubeconfig
        self.context = context or self.settings.context
        self.profiles = profiles
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.replace_timeout = replace_timeout
        self._conn: Connection | None = None

    # -- plumbing -----------------------------------------------------------------------------------
    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = connect(self.kubeconfig, self.context)
        return self._conn

    @property
    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.conn.api)

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.conn.api)

    @contextmanager
    def calling(self, verb: str, namespace: str, name: str | None = None, resource: str = PLURAL) -> Iterator[None]:
        """Turns client exceptions into KubernetesError with one message."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except ApiException as e:
            raise api_error(e, server=self.conn.server, verb=verb, resource=resource, namespace=namespace,
                            name=name) from None
        except (HTTPError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise ClusterUnreachable(f"cannot reach the Kubernetes API server at {self.conn.server}: "
                                     f"{reason}") from None

    def profiles_for(self) -> dict[str, AcceleratorProfile]:
        if self.profiles is not None:
            return self.profiles
        extra = self.settings.profiles_file
        return load_profiles(extra=[extra] if extra else [])

    # -- jobs ---------------------------------------------------------------------------------------
    def manifest(self, spec: JobSpec, *, stage: str | None = None) -> dict[str, Any]:
        """The RayJob for the spec, namespace filled in (from the settings, else the kubeconfig context)."""
        obj = build_rayjob(spec, self.settings, self.profiles_for(), stage=stage)
        obj["metadata"].setdefault("namespace", kubeconfig_namespace(self.kubeconfig, self.context))
        return obj

    def launch(self, spec: JobSpec, dry_run: DryRun = None, *, stage: str | None = None) -> Launch:
        """Creates the job's RayJob (server: validated and admitted by the API server, not stored; client:
        built only). A finished RayJob of the same name is replaced, so the job resumes from its checkpoints;
        one still running is an error."""
        obj = self.manifest(spec, stage=stage)
        name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
        if dry_run == "client":
            return Launch(name, ns, obj, dry_run)
        server_dry = "All" if dry_run == "server" else None
        from kubernetes.client.exceptions import ApiException

        with self.calling("create", ns, name):
            try:
                return Launch(name, ns, self._create(obj, ns, server_dry), dry_run)
            except ApiException as e:
                if e.status != 409:  # AlreadyExists: the job was submitted before
                    raise
        existing = self.get(name, ns)
        self._check_replaceable(existing, spec, name, ns)
        if dry_run == "server":  # validate the new object under a generated name; leave the finished one be
            probe = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "name"}}
            probe["metadata"]["generateName"] = f"{name[:40]}-"
            with self.calling("create", ns, name):
                created = self._create(probe, ns, server_dry)
            created["metadata"]["name"] = name
            return Launch(name, ns, created, dry_run, replaced=True)
        self._delete_and_wait(name, ns)
        with self.calling("create", ns, name):
            return Launch(name, ns, self._create(obj, ns, None), dry_run, replaced=True)

    def _create(self, obj: dict[str, Any], namespace: str, dry_run: str | None) -> dict[str, Any]:
        kwargs = {"dry_run": dry_run} if dry_run else {}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj,
                                                          _request_timeout=self.timeout, **kwargs)

    def _check_replaceable(self, existing: dict[str, Any], spec: JobSpec, name: str, ns: str) -> None:
        labels = existing.get("metadata", {}).get("labels") or {}
        if labels.get(APP_LABEL) != APP or labels.get(JOB_LABEL) != spec.name:
            raise KubernetesError(f"a RayJob named {name} that jepa-platform did not create for job {spec.name} "
                                  f"exists in namespace {ns}; rename the job or delete that RayJob")
        state, detail = rayjob_state(existing)
        if state not in TERMINAL:
            raise JobAlreadyRunning(
                f"job {spec.name} is already {state.lower()} on Kubernetes as RayJob {ns}/{name} ({detail}); "
                f"follow it with `jepa logs {spec.name} --follow` or stop it with `jepa cancel {spec.name}`",
                f"{ns}/{name}", state,
            )

    def _delete_and_wait(self, name: str, namespace: str) -> None:
        """Deletes a finished RayJob with its cluster and submitter Job (foreground), and waits until it
        is gone: the new submitter Job takes the same name."""
        with self.calling("delete", namespace, name):
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                        propagation_policy="Foreground",
                                                        _request_timeout=self.timeout)
        deadline = time.monotonic() + self.replace_timeout
        while time.monotonic() < deadline:
            try:
                self.get(name, namespace)
            except RayJobNotFound:
                return
            time.sleep(self.poll_interval)
        raise KubernetesError(f"the finished RayJob {namespace}/{name} is still being deleted after "
                              f"{self.replace_timeout:g} s; submit again once it is gone")

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        with self.calling("get", namespace, name):
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                            _request_timeout=self.timeout)

    def status(self, name: str, namespace: str) -> tuple[str, str]:
        return rayjob_state(self.get(name, namespace))

    def cancel(self, name: str, namespace: str, delete: bool = False) -> str:
        """Stops the job: suspends the RayJob (its cluster goes, the object and its logs stay), or deletes it
        with everything it owns. Checkpoints stay in storage; submitting again resumes. Returns the state."""
        state, _ = self.status(name, namespace)
        if delete:
            with self.calling("delete", namespace, name):
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                            propagation_policy="Background",
                                                            _request_timeout=self.timeout)
            return state if state in TERMINAL else "CANCELLED"  # a finished job keeps how it ended
        if state in TERMINAL:
            return state
        with self.calling("patch", namespace, name):
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                       {"spec": {"suspend": True}}, _request_timeout=self.timeout)
        return "CANCELLED"

    def list(self, namespace: str | None = None) -> list[RayJobSummary]:
        """The RayJobs jepa-platform made in the namespace (default: the context's), oldest first."""
        ns = namespace or self.conn.namespace
        with self.calling("list", ns):
            items = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, label_selector=f"{APP_LABEL}={APP}", _request_timeout=self.timeout
            ).get("items", [])
        out = []
        for obj in items:
            meta = obj.get("metadata", {})
            state, detail = rayjob_state(obj)
            out.append(RayJobSummary(meta.get("name", ""), ns, (meta.get("labels") or {}).get(JOB_LABEL, ""),
                                     state, detail, meta.get("creationTimestamp")))
        return sorted(out, key=lambda s: s.created or "")

    # -- logs ---------------------------------------------------------------------------------------
    def submitter_pods(self, name: str, namespace: str) -> list[Any]:
        """Pods of the submitter Job KubeRay creates in K8sJobMode: the Job is named after the RayJob, and
        the Job controller labels its pods `job-name=<job>`. Oldest first (a retried submitter adds pods)."""
        with self.calling("list", namespace, name, resource="pods"):
            pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={name}",
                                                 _request_timeout=self.timeout).items
        return sorted(pods, key=lambda p: (p.metadata.creation_timestamp or 0, p.metadata.name))

    def pod_log(self, pod: str, namespace: str, follow: bool) -> Iterator[str]:
        """Lines of a pod's log; following, until the container exits or the stream goes quiet for the
        read timeout. Nothing while the container is starting."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import ProtocolError, ReadTimeoutError

        with self.calling("get logs of", namespace, pod, resource="pods"):
            try:
                resp = self.core.read_namespaced_pod_log(pod, namespace, follow=follow, _preload_content=False,
                                                         _request_timeout=(self.timeout[0], FOLLOW_READ_TIMEOUT))
            except ApiException as e:
                if e.status == 400 and "waiting to start" in (e.body or ""):
                    return
                raise
            buf = b""
            try:
                for chunk in resp.stream(64 * 1024):
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
            except (ReadTimeoutError, ProtocolError):  # a quiet or dropped stream: the caller looks again
                return
            finally:
                resp.release_conn()
            if buf:
                yield buf.decode(errors="replace")

    def logs(self, name: str, namespace: str, follow: bool = False) -> Iterator[str]:
        """The job's output: the submitter pods' logs, which tail the Ray job's driver, every attempt's in
        order. Following, waits for the pod and goes on until the RayJob is finished; no line twice."""
        seen: dict[str, int] = {}  # lines already given, per pod
        done: set[str] = set()
        while True:
            finished = follow and self.status(name, namespace)[0] in TERMINAL
            for pod in self.submitter_pods(name, namespace):
                pod_name = pod.metadata.name
                if pod_name in done:
                    continue
                phase = pod.status.phase if pod.status else None
                if follow and not finished and phase == "Pending":
                    break  # its log starts when its container does
                ended = not follow or finished or phase in ("Succeeded", "Failed")
                for i, line in enumerate(self.pod_log(pod_name, namespace, follow=not ended)):
                    if i >= seen.get(pod_name, 0):
                        seen[pod_name] = i + 1
                        yield line
                if not ended:
                    break  # its stream stopped while it ran: look at it (and at newer pods) again
                done.add(pod_name)
            if not follow or finished:
                return
            time.sleep(self.poll_interval)

    def tail(self, name: str, namespace: str, lines: int = 200) -> str:
        """The last lines of the newest submitter pod's log; empty while it starts."""
        from kubernetes.client.exceptions import ApiException

        pods = self.submitter_pods(name, namespace)
        if not pods:
            return ""
        with self.calling("get logs of", namespace, pods[-1].metadata.name, resource="pods"):
            try:
                return self.core.read_namespaced_pod_log(pods[-1].metadata.name, namespace, tail_lines=lines,
                                                         _request_timeout=self.timeout) or ""
            except ApiException as e:
                if e.status == 400:  # still starting
                    return ""
                raise

    # what `ClusterJobs` asks of a cluster (a job's remote id is NAMESPACE/NAME) ----------------------------
    def start(self, spec: JobSpec, stage: str | None, job_id: str) -> Started:
        launch = self.launch(spec, stage=stage)
        remote = f"{launch.namespace}/{launch.name}"
        note = (f"RayJob {remote} created" + (", replacing the finished one" if launch.replaced else "")
                + "; waiting for its Ray cluster")
        return Started(remote, self.conn.context, f"RayJob {remote}", note)

    def state(self, remote_id: str) -> tuple[str, str]:
        return self.status(*name_and_namespace(remote_id))

    def lines(self, remote_id: str, follow: bool = False) -> Iterator[str]:
        return self.logs(*name_and_namespace(remote_id), follow=follow)

    def recent(self, remote_id: str) -> str:
        return self.tail(*name_and_namespace(remote_id))

    def halt(self, remote_id: str, delete: bool = False) -> str:
        return self.cancel(*name_and_namespace(remote_id), delete=delete)

    def attached(self, record: JobRecord) -> KubernetesRunner:
        return KubernetesRunner(context=record.address)

    def refusal(self, e: JepaError, store: JobStore) -> JepaError:
        if isinstance(e, JobAlreadyRunning):
            return JobAlreadyRunning(already_running_message(e, store), e.remote, e.state)
        return e

    # listing and rendering (`contracts.ListsJobs`, `contracts.Renders`) ---------------------------------
    def list_jobs(self, namespace: str | None = None, context: str | None = None) -> list[dict[str, Any]]:
        """The jepa-platform RayJobs of a namespace (`contracts.ListsJobs`)."""
        if context:
            self.context, self._conn = context, None
        return [{"rayjob": s.name, "job": s.job, "namespace": s.namespace, "status": s.status,
                 "created": s.created or "", "detail": s.detail} for s in self.list(namespace)]

    def render(self, spec: JobSpec, *, stage: str | None = None, server: bool = False) -> tuple[dict[str, Any], str]:
        """The RayJob manifest; with server, the API server admits it without creating it."""
        launch = self.launch(spec, dry_run="server" if server else "client", stage=stage)
        what = f"RayJob {launch.namespace}/{launch.name}"
        if launch.replaced:
            what += " (it would replace the finished RayJob of that name)"
        return launch.manifest, what


def already_running_message(e: JobAlreadyRunning, store: JobStore) -> str:
    """Points at the record of this machine that owns the running RayJob, or at kubectl when none does."""
    ns, name = e.remote.split("/", 1)
    owner = next((r.id for r in reversed(store.all()) if r.remote_id == e.remote and r.status not in TERMINAL),
                 None)
    if owner:
        hint = f"follow it with `jepa logs {owner} --follow` or stop it with `jepa cancel {owner}`"
    else:
        hint = (f"it was submitted from elsewhere: follow it with `kubectl -n {ns} logs -f -l job-name={name}`, "
                f"stop it with `kubectl -n {ns} delete rayjob {name}`")
    return f"job {name} is already {e.state.lower()} on Kubernetes as RayJob {e.remote}; {hint}"


def name_and_namespace(remote_id: str) -> tuple[str, str]:
    """(name, namespace) of a RayJob recorded as NAMESPACE/NAME."""
    if "/" not in remote_id:
        raise KubernetesError(f"{remote_id!r} does not name a RayJob (NAMESPACE/NAME)")
    namespace, name = remote_id.split("/", 1)
    return name, namespace

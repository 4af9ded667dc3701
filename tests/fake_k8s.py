"""A small fake Kubernetes API server for tests: real HTTP paths, real `Status` error bodies.

It answers only what the `kubernetes` target calls: RayJobs (ray.io/v1: list, create with dryRun,
get, delete, merge-patch), and pods (list by label selector, log, follow). Failure modes are scripted:

    with FakeKubernetes() as api:
        api.fail = "no-crd"   # or "rbac", "quota", "unauthorized"
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")

Bodies of errors are the JSON `Status` objects a kube-apiserver sends, with its messages word for word.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

RAYJOBS = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/rayjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `Status` failure body as the API server writes it."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details or {}, "code": code}


def not_found_resource() -> dict[str, Any]:
    """What the server answers for a resource type it does not serve (e.g. a CRD not installed)."""
    return status(404, "NotFound", "the server could not find the requested resource")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def matches(labels: dict[str, str], selector: str | None) -> bool:
    """Equality-based label selectors (`a=b,c==d,e!=f`), the form the client sends."""
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        else:
            k, v = re.split(r"==?", term, maxsplit=1)
            if labels.get(k) != v:
                return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any = None
    content_type: str | None = None


@dataclass
class FakeKubernetes:
    """The fake API server; state is plain dicts a test may read and change."""

    namespaces: set[str] | None = None  # None: every namespace exists
    fail: str | None = None  # "no-crd" | "rbac" | "quota" | "unauthorized"
    user: str = "system:serviceaccount:ml:submitter"
    terminating_gets: int = 0  # GETs a deleted RayJob still answers (finalizers), before it is gone
    on_create: Callable[[FakeKubernetes, str, str], None] | None = None  # (fake, namespace, name), as KubeRay would
    rayjobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._terminating: dict[tuple[str, str], int] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> FakeKubernetes:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go as separate writes

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

            def do_PATCH(self) -> None:
                fake._handle(self, "PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_kubeconfig(self, path: Path, namespace: str = "ml", context: str = "fake", server: str | None = None
                         ) -> Path:
        """A kubeconfig whose current context points the client at this server (or at `server`)."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": server or self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # -- what a test scripts ----------------------------------------------------------------------
    def set_rayjob_status(self, namespace: str, name: str, deployment: str, job: str = "", **extra: Any) -> None:
        with self._lock:
            obj = self.rayjobs[(namespace, name)]
            obj["status"] = {"jobDeploymentStatus": deployment, "jobStatus": job,
                             "rayClusterName": f"{name}-abcde", **extra}

    def add_submitter_pod(self, namespace: str, rayjob: str, log: str, phase: str = "Succeeded",
                          suffix: str = "x7k2q", created: str | None = None) -> str:
        """A pod of the submitter Job KubeRay makes for a RayJob, labelled by the Job controller as
        Kubernetes does (`job-name`, `batch.kubernetes.io/job-name`)."""
        name = f"{rayjob}-{suffix}"
        with self._lock:
            self.pods[(namespace, name)] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "creationTimestamp": created or now(),
                             "labels": {"job-name": rayjob, "batch.kubernetes.io/job-name": rayjob,
                                        "batch.kubernetes.io/controller-uid": str(uuid.uuid4())}},
                "spec": {"containers": [{"name": "ray-job-submitter", "image": "rayproject/ray"}]},
                "status": {"phase": phase},
            }
            self.logs[(namespace, name)] = log
        return name

    def calls(self, method: str | None = None, contains: str = "") -> list[Request]:
        return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    # -- the API ----------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.requests.append(Request(method, parts.path, query, body, h.headers.get("Content-Type")))
        try:
            code, payload = self._route(method, parts.path, query, body)
        except Exception as e:  # a bug in the fake: answer as a server would, and let the test see it
            code, payload = 500, status(500, "InternalError", f"fake apiserver: {type(e).__name__}: {e}")
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if self.fail == "unauthorized":
            return 401, status(401, "Unauthorized", "Unauthorized")
        m = RAYJOBS.match(path)
        if m:
            if self.fail == "no-crd":
                return 404, not_found_resource()
            return self._rayjobs(method, m.group(1), m.group(2), query, body)
        m = PODS.match(path)
        if m and method == "GET":
            return self._list_pods(m.group(1), query)
        m = POD_LOG.match(path)
        if m and method == "GET":
            return self._log(m.group(1), m.group(2))
        return 404, not_found_resource()

    def _forbidden(self, verb: str, namespace: str) -> dict[str, Any]:
        return status(403, "Forbidden",
                      f'rayjobs.ray.io is forbidden: User "{self.user}" cannot {verb} resource "rayjobs" in API '
                      f'group "ray.io" in the namespace "{namespace}"', {"group": "ray.io", "kind": "rayjobs"})

    # One branch per verb and subresource of the real API server: flat on purpose (hence the C901 noqa).
    def _rayjobs(self, method: str, ns: str, name: str | None, query: dict[str, list[str]], body: Any  # noqa: C901
                 ) -> tuple[int, Any]:
        verb = {"GET": "get" if name else "list", "POST": "create", "DELETE": "delete", "PATCH": "patch"}[method]
        if self.fail == "rbac":
            return 403, self._forbidden(verb, ns)
        if self.namespaces is not None and ns not in self.namespaces:
            return 404, status(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
        with self._lock:
            if name is None and method == "GET":
                selector = query.get("labelSelector", [None])[0]
                items = [copy.deepcopy(o) for (n, _), o in sorted(self.rayjobs.items())
                         if n == ns and matches(o["metadata"].get("labels", {}), selector)]
                return 200, {"apiVersion": "ray.io/v1", "kind": "RayJobList",
                             "metadata": {"resourceVersion": "1"}, "items": items}
            if name is None and method == "POST":
                return self._create(ns, body, dry_run="All" in query.get("dryRun", []))
            key = (ns, name)
            missing = status(404, "NotFound", f'rayjobs.ray.io "{name}" not found',
                             {"name": name, "group": "ray.io", "kind": "rayjobs"})
            if key not in self.rayjobs:
                return 404, missing
            obj = self.rayjobs[key]
            if method == "GET":
                if key in self._terminating:
                    self._terminating[key] -= 1
                    if self._terminating[key] < 0:
                        del self.rayjobs[key], self._terminating[key]
                        return 404, missing
                return 200, copy.deepcopy(obj)
            if method == "DELETE":
                if self.terminating_gets:
                    obj["metadata"]["deletionTimestamp"] = now()
                    self._terminating[key] = self.terminating_gets
                    return 200, copy.deepcopy(obj)
                del self.rayjobs[key]
                return 200, copy.deepcopy(obj)
            if method == "PATCH":
                obj = self.rayjobs[key] = merge_patch(obj, body)
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
                return 200, copy.deepcopy(obj)
        return 405, status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _create(self, ns: str, body: dict[str, Any], dry_run: bool) -> tuple[int, Any]:
        meta = body.setdefault("metadata", {})
        if "name" not in meta and "generateName" in meta:
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if self.fail == "quota":
            return 403, status(
                403, "Forbidden",
                f'rayjobs.ray.io "{name}" is forbidden: exceeded quota: rayjob-count, requested: '
                "count/rayjobs.ray.io=1, used: count/rayjobs.ray.io=2, limited: count/rayjobs.ray.io=2",
                {"name": name, "group": "ray.io", "kind": "rayjobs"},
            )
        if meta.get("namespace", ns) != ns:
            return 400, status(400, "BadRequest", "the namespace of the provided object does not match the "
                                                  "namespace sent on the request")
        if (ns, name) in self.rayjobs:
            return 409, status(409, "AlreadyExists", f'rayjobs.ray.io "{name}" already exists',
                               {"name": name, "group": "ray.io", "kind": "rayjobs"})
        obj = copy.deepcopy(body)
        obj["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), resourceVersion=str(len(self.requests)),
                               generation=1, creationTimestamp=now())
        if not dry_run:
            self.rayjobs[(ns, name)] = obj
            if self.on_create:
                threading.Thread(target=self.on_create, args=(self, ns, name), daemon=True).start()
        return 201, copy.deepcopy(obj)

    def _list_pods(self, ns: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        selector = query.get("labelSelector", [None])[0]
        with self._lock:
            items = [copy.deepcopy(p) for (n, _), p in self.pods.items()
                     if n == ns and matches(p["metadata"]["labels"], selector)]
        return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}

    def _log(self, ns: str, name: str) -> tuple[int, Any]:
        pod = self.pods.get((ns, name))
        if pod is None:
            return 404, status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        if pod["status"]["phase"] == "Pending":
            container = pod["spec"]["containers"][0]["name"]
            return 400, status(400, "BadRequest",
                               f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
        return 200, self.logs.get((ns, name), "")

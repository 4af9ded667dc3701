"""The KubeRay RayJob (ray.io/v1) that runs a job spec on Kubernetes: pure data in, one manifest out.

`build_rayjob(spec, settings, profiles)` makes the whole object; nothing here talks to a cluster.

Decisions the manifest encodes:
- name: the job name itself when KubeRay accepts it (a DNS-1035 label of at most 47 characters), else a
  stable shortening with a hash suffix. The same job name always maps to the same RayJob, so submitting a
  job again finds the earlier RayJob and resumes from the checkpoints under the job's storage folder.
- pods: one Ray worker pod per node, holding up to all of that node's GPUs (`gpus_per_node` of the
  profile) and the Ray Train workers that fit on them. Workers of one pod share its IPC namespace and
  /dev/shm, so NCCL uses NVLink/P2P between them; across pods of one node it would fall back to sockets.
- spec delivery: the resolved spec travels gzip+base64 in the Ray job's runtime environment
  (`JEPA_SPEC`), read by the job driver (`python -m jepa_platform.runners.driver`) on the head; a copy
  sits in the `jepa-platform/spec` annotation for people and `jepa` commands. No extra objects.
- credentials: only references to Secrets (envFrom, secretKeyRef, a mounted key file); never values.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import yaml

from jepa_platform.errors import ConfigError
from jepa_platform.runners.driver import SPEC_ENV, command, decode_spec, encode_spec
from jepa_platform.runners.k8s_settings import GCS_KEY_DIR, KubernetesSettings
from jepa_platform.runners.profiles import AcceleratorProfile, Toleration, get_profile, parse_quantity
from jepa_platform.spec import JobSpec, travelling
from jepa_platform.spec.validation import PIPELINE
from jepa_platform.version import __version__

API_VERSION = "ray.io/v1"
KIND = "RayJob"
GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"

APP_LABEL = "app.kubernetes.io/name"
APP = "jepa-platform"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
JOB_LABEL = "jepa-platform/job"
SPEC_ANNOTATION = "jepa-platform/spec"
SPEC_ENCODING_ANNOTATION = "jepa-platform/spec-encoding"
VERSION_ANNOTATION = "jepa-platform/version"

MAX_RAYJOB_NAME = 47  # KubeRay: 53 (RayCluster, for its "-serve-svc" Service) less the 6 of "-xxxxx"
ANNOTATIONS_LIMIT = 256 * 1024  # Kubernetes' limit on all annotations of one object together
SPEC_ANNOTATION_BUDGET = 200 * 1024  # leaves room for other annotations (ours and the user's)
HEAD_PORTS = (("gcs-server", 6379), ("dashboard", 8265), ("client", 10001))


def rayjob_name(job_name: str) -> str:
    """The RayJob's name for a job: the job name when KubeRay takes it as it is, else a stable shortening.

    KubeRay requires a DNS-1035 label (starting with a letter) of at most 47 characters.
    """
    if len(job_name) <= MAX_RAYJOB_NAME and job_name[:1].isalpha():
        return job_name
    digest = hashlib.sha1(job_name.encode()).hexdigest()[:6]
    base = job_name if job_name[:1].isalpha() else f"j-{job_name}"
    return f"{base[: MAX_RAYJOB_NAME - 7].rstrip('-')}-{digest}"


# -- sizing ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerPlan:
    """How the Ray Train workers are laid out on pods: `pods` alike, each on its own node."""

    profile: AcceleratorProfile
    workers: int
    pods: int
    workers_per_pod: int
    gpus_per_pod: int
    cpu: int  # whole cores per pod
    memory: int  # bytes per pod

    @property
    def spare_workers(self) -> int:
        """Worker slots the pods hold beyond the job's workers (when workers do not divide evenly)."""
        return self.pods * self.workers_per_pod - self.workers


def choose_profile(spec: JobSpec, settings: KubernetesSettings, profiles: dict[str, AcceleratorProfile]
                   ) -> AcceleratorProfile:
    if settings.profile:
        return get_profile(profiles, settings.profile)
    accel = (spec.resources.accelerator_type or "").lower()
    if accel in profiles:
        return profiles[accel]
    if spec.resources.gpus_per_worker == 0 and "cpu" in profiles:
        return profiles["cpu"]
    known = ", ".join(sorted(profiles)) or "none"
    raise ConfigError(f"kubernetes.profile: name the node pool's accelerator profile (known: {known})")


def plan_workers(spec: JobSpec, profile: AcceleratorProfile) -> WorkerPlan:
    """Packs the job's Ray Train workers onto as few pods (nodes) as the profile allows, spread evenly."""
    r = spec.resources
    name = profile.name
    node_cpu = profile.cpu_cores
    if r.gpus_per_worker > 0:
        if profile.gpus_per_node == 0:
            raise ConfigError(f"kubernetes.profile: {name!r} has no GPUs but resources.gpus_per_worker is "
                              f"{r.gpus_per_worker:g}; pick a GPU profile")
        per_node = math.floor(profile.gpus_per_node / r.gpus_per_worker + 1e-9)
        if per_node < 1:
            raise ConfigError(f"resources.gpus_per_worker: {r.gpus_per_worker:g} GPUs do not fit on one node of "
                              f"profile {name!r} ({profile.gpus_per_node} GPUs)")
    else:
        if profile.gpus_per_node > 0:
            raise ConfigError(f"resources.gpus_per_worker: 0, but profile {name!r} is a GPU pool; set "
                              f"resources.gpus_per_worker or pick a CPU profile")
        per_node = math.floor(node_cpu / Decimal(str(r.cpus_per_worker)))
        if per_node < 1:
            raise ConfigError(f"resources.cpus_per_worker: {r.cpus_per_worker:g} CPUs do not fit on one node of "
                              f"profile {name!r} ({node_cpu} CPUs)")
    pods = math.ceil(r.workers / per_node)
    workers_per_pod = math.ceil(r.workers / pods)
    gpus = math.ceil(workers_per_pod * r.gpus_per_worker - 1e-9)
    share = Decimal(gpus) / profile.gpus_per_node if gpus else None
    need_cpu = math.ceil(workers_per_pod * r.cpus_per_worker - 1e-9)
    if share is not None:
        cpu = max(need_cpu, math.floor(node_cpu * share))
    else:
        cpu = need_cpu
        share = Decimal(cpu) / node_cpu
    if cpu > node_cpu:
        raise ConfigError(
            f"resources.cpus_per_worker: {workers_per_pod} workers x {r.cpus_per_worker:g} CPUs need {need_cpu} "
            f"CPUs on one node, more than profile {name!r} offers ({node_cpu})"
        )
    memory = int(profile.memory_bytes * min(Decimal(1), share))
    return WorkerPlan(profile, r.workers, pods, workers_per_pod, gpus, cpu, memory)


def format_memory(n: int) -> str:
    for unit, size in (("Gi", 2**30), ("Mi", 2**20)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n // 2**20}Mi" if n >= 2**20 else str(n)


def shm_bytes(memory: int) -> int:
    """Default /dev/shm of a pod: a quarter of its memory (whole GiB from 4 GiB up); it counts against the
    container's memory limit only as far as it is used."""
    quarter = memory // 4
    return quarter // 2**30 * 2**30 if quarter >= 4 * 2**30 else quarter


def format_cpu(v: Decimal | int | float | str) -> str:
    q = parse_quantity(v)
    return str(int(q)) if q == int(q) else f"{int(q * 1000)}m"


# -- the spec, as it travels ------------------------------------------------------------------------
def spec_annotations(resolved: dict[str, Any]) -> dict[str, str]:
    """The spec as readable JSON, or gzip+base64 when that is too large; ConfigError past the budget."""
    plain = json.dumps(resolved, separators=(",", ":"), sort_keys=True)
    if len(plain) <= SPEC_ANNOTATION_BUDGET:
        return {SPEC_ANNOTATION: plain, SPEC_ENCODING_ANNOTATION: "json"}
    packed = encode_spec(resolved)
    if len(packed) > SPEC_ANNOTATION_BUDGET:
        raise ConfigError(f"the resolved spec is too large for a Kubernetes annotation ({len(packed)} bytes "
                          f"compressed, budget {SPEC_ANNOTATION_BUDGET})")
    return {SPEC_ANNOTATION: packed, SPEC_ENCODING_ANNOTATION: "gzip+base64"}


def spec_from_rayjob(obj: dict[str, Any]) -> dict[str, Any]:
    """The resolved spec a RayJob made by `build_rayjob` carries (its annotation)."""
    notes = obj.get("metadata", {}).get("annotations", {}) or {}
    if SPEC_ANNOTATION not in notes:
        raise ConfigError(f"RayJob {obj.get('metadata', {}).get('name')!r} carries no {SPEC_ANNOTATION} annotation")
    if notes.get(SPEC_ENCODING_ANNOTATION) == "gzip+base64":
        return decode_spec(notes[SPEC_ANNOTATION])
    return json.loads(notes[SPEC_ANNOTATION])


# -- checks that only matter off this machine -------------------------------------------------------
def remote_path_problems(spec: JobSpec) -> list[str]:
    """Local paths a pod cannot read: the output root, every stage's data manifests and an embedding's videos,
    weights and output must be URLs."""
    fields = [("storage.output", spec.storage.output)]
    stages = list(enumerate(spec.pipeline())) if spec.stages else [(None, spec)]
    for i, s in stages:
        where = "" if i is None else f"stages[{i}]."
        fields += [(f"{where}data.train", s.data.train), (f"{where}data.val", s.data.val)]
        if s.embed is not None:
            fields += [(f"{where}embed.{name}", getattr(s.embed, name)) for name in ("data", "output", "checkpoint")
                       if getattr(s.embed, name) != "random"]
    return [
        f"{field}: {url} is on this machine; pods on Kubernetes cannot read it: use an s3:// or gs:// URL"
        for field, url in dict(fields).items()
        if url is not None and ("://" not in url or url.startswith("file://"))
    ]


# -- pods --------------------------------------------------------------------------------------------
def container_env(settings: KubernetesSettings) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """(env, envFrom, volumeMounts, volumes) for the credentials and plain env of the settings."""
    env = [{"name": k, "value": v} for k, v in sorted(settings.env.items())]
    for name, ref in sorted(settings.secrets.env.items()):
        secret, _, key = ref.partition("/")
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    env_from = [{"secretRef": {"name": s}} for s in settings.secrets.env_from]
    mounts, volumes = [], []
    if settings.secrets.gcs_key:
        secret, _, key = settings.secrets.gcs_key.partition("/")
        env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_KEY_DIR}/{key}"})
        mounts.append({"name": "gcs-key", "mountPath": GCS_KEY_DIR, "readOnly": True})
        volumes.append({"name": "gcs-key", "secret": {"secretName": secret, "items": [{"key": key, "path": key}]}})
    return env, env_from, mounts, volumes


def pod_template(
    *,
    role: Literal["head", "worker"],
    settings: KubernetesSettings,
    labels: dict[str, str],
    cpu: str,
    memory: int,
    gpus: int = 0,
    gpu_resource: str = "nvidia.com/gpu",
    node_selector: dict[str, str] | None = None,
    tolerations: list[Toleration] | None = None,
) -> dict[str, Any]:
    """A Ray pod: one container named ray-<role>, /dev/shm in memory, credentials by reference only."""
    env, env_from, mounts, volumes = container_env(settings)
    shm = settings.shm_size or format_memory(shm_bytes(memory))
    resources = {"cpu": cpu, "memory": format_memory(memory)}
    if gpus:
        resources[gpu_resource] = str(gpus)
    container: dict[str, Any] = {
        "name": f"ray-{role}",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, *mounts],
    }
    if role == "head":
        container["ports"] = [{"name": n, "containerPort": p} for n, p in HEAD_PORTS]
    else:  # let Ray drain the node's tasks before the pod goes
        container["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}}
    if env:
        container["env"] = env
    if env_from:
        container["envFrom"] = env_from
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}}, *volumes],
    }
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod["tolerations"] = [t.manifest() for t in tolerations]
    if settings.priority_class:
        pod["priorityClassName"] = settings.priority_class
    return {"metadata": {"labels": dict(labels)}, "spec": pod}


# -- the RayJob --------------------------------------------------------------------------------------
def job_labels(spec: JobSpec, settings: KubernetesSettings) -> dict[str, str]:
    return {**settings.labels, APP_LABEL: APP, MANAGED_BY_LABEL: APP, JOB_LABEL: spec.name}


def runtime_spec(spec: JobSpec, settings: KubernetesSettings, profile: AcceleratorProfile) -> dict[str, Any]:
    """The spec the cluster runs (`spec.travelling`, each stage alike): with target kubernetes and its
    settings, less an accelerator_type that only named the profile (the node pool already pins the
    hardware, and Ray names its GPUs its own way)."""
    def on_cluster(resolved: dict[str, Any]) -> dict[str, Any]:
        resolved = {**resolved, "kubernetes": None,
                    "target": {"kind": "kubernetes", "params": settings.model_dump(mode="json")}}
        accel = resolved["resources"].get("accelerator_type")
        if accel and accel.lower() == profile.name:
            resolved["resources"] = {**resolved["resources"], "accelerator_type": None}
        return resolved

    out = on_cluster(travelling(spec))
    if PIPELINE in out:
        out[PIPELINE] = [on_cluster(s) for s in out[PIPELINE]]
    return out


def build_rayjob(
    spec: JobSpec,
    settings: KubernetesSettings,
    profiles: dict[str, AcceleratorProfile],
    *,
    stage: str | None = None,
) -> dict[str, Any]:
    """The RayJob running `spec` (or one of its stages) on the profile's node pool; ConfigError when the
    spec cannot run there."""
    problems = remote_path_problems(spec)
    if not settings.image:
        problems.append("kubernetes.image: the container image with jepa-platform installed is required")
    if problems:
        raise ConfigError(f"{spec.name} cannot run on Kubernetes:\n  " + "\n  ".join(problems))
    profile = choose_profile(spec, settings, profiles)
    plan = plan_workers(spec, profile)
    labels = job_labels(spec, settings)
    resolved = runtime_spec(spec, settings, profile)
    readable = {k: v for k, v in resolved.items() if k != PIPELINE}  # for people: the stages as written
    annotations = {**settings.annotations, **spec_annotations(readable), VERSION_ANNOTATION: __version__}
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > ANNOTATIONS_LIMIT:
        raise ConfigError(f"kubernetes.annotations: {size} bytes with the spec, over Kubernetes' limit of "
                          f"{ANNOTATIONS_LIMIT}")
    head_memory = int(parse_quantity(settings.head_memory))
    head = pod_template(role="head", settings=settings, labels=labels, cpu=format_cpu(settings.head_cpu),
                        memory=head_memory, node_selector=settings.head_node_selector)
    worker = pod_template(
        role="worker", settings=settings, labels=labels, cpu=str(plan.cpu), memory=plan.memory,
        gpus=plan.gpus_per_pod, gpu_resource=profile.gpu_resource, node_selector=profile.node_selector,
        tolerations=profile.tolerations,
    )
    worker_params = {"num-cpus": str(plan.cpu)}
    if plan.gpus_per_pod:
        worker_params["num-gpus"] = str(plan.gpus_per_pod)
    job_spec: dict[str, Any] = {
        "entrypoint": shlex.join(command(stage)),
        "runtimeEnvYAML": yaml.safe_dump({"env_vars": {SPEC_ENV: encode_spec(resolved)}}, width=1 << 20),
        "submissionMode": settings.submission_mode,
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        "backoffLimit": settings.backoff_limit,
        "rayClusterSpec": {
            "headGroupSpec": {
                # The head only coordinates: no CPUs for tasks, so every training worker lands on a worker pod.
                "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                "template": head,
            },
            "workerGroupSpecs": [{
                "groupName": profile.name,
                "replicas": plan.pods,
                "minReplicas": plan.pods,
                "maxReplicas": plan.pods,
                "rayStartParams": worker_params,
                "template": worker,
            }],
        },
    }
    if settings.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    metadata: dict[str, Any] = {"name": rayjob_name(spec.name), "labels": labels, "annotations": annotations}
    if settings.namespace:
        metadata["namespace"] = settings.namespace
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": job_spec}

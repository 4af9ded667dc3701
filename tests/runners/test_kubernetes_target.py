"""The Kubernetes target: RayJob manifests checked against KubeRay's real CRD schema and Kubernetes' pod
schema, and the runner's client path against a fake API server (tests/fake_k8s.py) speaking the real
HTTP API: paths, label selectors, dry runs, merge patches and the API server's own Status errors."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fake_k8s import FakeKubernetes

from jepa_platform.errors import ConfigError, JobDetached
from jepa_platform.events import Done, EventReader, Row, Stage
from jepa_platform.runners import driver
from jepa_platform.runners.jobstore import JobNotFound, JobRecord, JobStore
from jepa_platform.runners.k8s_manifest import (
    SPEC_ENV,
    KubernetesSettings,
    build_rayjob,
    decode_spec,
    plan_workers,
    rayjob_name,
    spec_annotations,
    spec_from_rayjob,
)
from jepa_platform.runners.kubernetes import (
    ClusterUnreachable,
    JobAlreadyRunning,
    KubernetesForbidden,
    KubernetesRunner,
    QuotaExceeded,
    RayJobCRDMissing,
    RayJobNotFound,
    rayjob_state,
)
from jepa_platform.runners.profiles import PROFILES_ENV, load_profiles
from jepa_platform.spec import validate_spec
from jepa_platform.train.resume import ResumeCheck

CRDS = Path(__file__).resolve().parents[3] / "shared" / "kuberay-crds"
KUBE_VERSION = kubernetes_validate.utils.latest_version()

PROFILES = {
    "cpu": {"description": "CPU only", "node_selector": {}, "tolerations": [], "gpus_per_node": 0,
            "cpu": "8", "memory": "32Gi"},
    "a100-80g": {
        "description": "8x A100 80GB", "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "gpu_resource": "nvidia.com/gpu", "gpus_per_node": 8, "cpu": "88", "memory": "1150Gi",
    },
}
H100 = {  # added by a user's own profiles file
    "h100-80g": {
        "description": "8x H100 80GB", "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"}],
        "gpu_resource": "nvidia.com/gpu", "gpus_per_node": 8, "cpu": "180", "memory": "1600Gi",
    },
}
IMAGE = "us-docker.pkg.dev/proj/ml/jepa-platform:0.1.0"


@pytest.fixture(autouse=True)
def no_user_profiles(monkeypatch):
    monkeypatch.delenv(PROFILES_ENV, raising=False)


@pytest.fixture
def profiles_file(tmp_path) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(PROFILES))
    return path


@pytest.fixture
def profiles(profiles_file, tmp_path, monkeypatch):
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump(H100))
    monkeypatch.setenv(PROFILES_ENV, str(user))
    return load_profiles(profiles_file)


def job(name="pretrain", **resources: Any):
    return validate_spec({
        "name": name, "data": {"train": "s3://videos/train.csv", "val": "s3://videos/val.csv"},
        "storage": {"output": "s3://bucket/runs"}, "optim": {"steps": 1000},
        "resources": resources,
    })


def cpu_job():
    return job("cpu-smoke", workers=2, cpus_per_worker=2)


def a100_job():
    return job("vitl-a100", workers=16, gpus_per_worker=1, cpus_per_worker=8, accelerator_type="a100-80g")


def h100_job():
    return job("vith-h100", workers=32, gpus_per_worker=1, cpus_per_worker=16)


SECRET_SETTINGS = KubernetesSettings(
    namespace="ml", image=IMAGE, image_pull_policy="Always", image_pull_secrets=["regcred"],
    service_account="jepa-workload", profile="h100-80g", env={"AWS_REGION": "us-east-1"},
    secrets={"env_from": ["aws-creds"], "env": {"WANDB_API_KEY": "wandb/api-key"}, "gcs_key": "gcs-key/key.json"},
)


def manifests(profiles) -> dict[str, dict[str, Any]]:
    return {
        "cpu": build_rayjob(cpu_job(), KubernetesSettings(image=IMAGE), profiles),
        "a100x16": build_rayjob(a100_job(), KubernetesSettings(image=IMAGE, namespace="ml"), profiles),
        "h100-secrets": build_rayjob(h100_job(), SECRET_SETTINGS, profiles),
    }


# -- the real CRD, strict --------------------------------------------------------------------------------
def strict(schema: Any) -> Any:
    """Every object schema with properties rejects unknown fields, unless it keeps unknown fields or says
    itself what else it allows (as `kubectl apply --validate=strict` would)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def rayjob_schema() -> jsonschema.Validator:
    path = CRDS / "ray.io_rayjobs.yaml"
    if not path.is_file():
        pytest.skip(f"KubeRay CRDs not found at {CRDS} (shared/kuberay-crds/ beside the checkout)")
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(strict(schema))


def crd_errors(validator: jsonschema.Validator, obj: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def as_pod(template: dict[str, Any], name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **template["metadata"]},
            "spec": template["spec"]}


def groups(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    cluster = obj["spec"]["rayClusterSpec"]
    return cluster["headGroupSpec"], cluster["workerGroupSpecs"][0]


def container(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][0]


# -- manifests -----------------------------------------------------------------------------------------
def test_every_manifest_validates_against_the_real_rayjob_crd_with_unknown_fields_rejected(profiles, rayjob_schema):
    for label, obj in manifests(profiles).items():
        assert crd_errors(rayjob_schema, obj) == [], label
        assert obj["apiVersion"] == "ray.io/v1" and obj["kind"] == "RayJob"


def test_the_strict_crd_check_is_not_vacuous(profiles, rayjob_schema):
    obj = manifests(profiles)["a100x16"]
    head, worker = groups(obj)
    container(worker)["gpus"] = 8  # not a container field
    obj["spec"]["shutdownAfterJobFinish"] = True  # misspelled
    worker["replicas"] = "2"
    errors = "\n".join(crd_errors(rayjob_schema, obj))
    assert "'gpus' was unexpected" in errors
    assert "'shutdownAfterJobFinish' was unexpected" in errors
    assert "'2' is not of type 'integer'" in errors


@pytest.mark.parametrize("label", ["cpu", "a100x16", "h100-secrets"])
def test_pod_templates_are_valid_kubernetes_pods(profiles, label):
    head, worker = groups(manifests(profiles)[label])
    for role, group in (("head", head), ("worker", worker)):
        kubernetes_validate.validate(as_pod(group["template"], f"{label}-{role}"), KUBE_VERSION, strict=True)


def test_a100_workers_come_from_the_profile_one_pod_per_node_with_all_its_gpus(profiles):
    obj = manifests(profiles)["a100x16"]
    head, worker = groups(obj)
    res = container(worker)["resources"]
    assert (worker["replicas"], worker["minReplicas"], worker["maxReplicas"]) == (2, 2, 2)  # 16 workers / 8 GPUs
    assert res["limits"]["nvidia.com/gpu"] == "8" and res["requests"]["nvidia.com/gpu"] == "8"
    assert res["limits"]["cpu"] == "88" and res["limits"]["memory"] == "1150Gi"
    assert worker["template"]["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}
    assert worker["template"]["spec"]["tolerations"] == PROFILES["a100-80g"]["tolerations"]
    assert worker["groupName"] == "a100-80g" and worker["rayStartParams"]["num-gpus"] == "8"
    # the head coordinates only: no GPUs, no CPUs for Ray tasks, its three ports
    assert "nvidia.com/gpu" not in container(head)["resources"]["limits"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert [p["containerPort"] for p in container(head)["ports"]] == [6379, 8265, 10001]
    spec = obj["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["submissionMode"] == "K8sJobMode"
    assert spec["entrypoint"] == "python -m jepa_platform.runners.driver"
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/name": "jepa-platform",
                                         "app.kubernetes.io/managed-by": "jepa-platform",
                                         "jepa-platform/job": "vitl-a100"}
    for group in (head, worker):  # /dev/shm in memory, bounded
        vol = group["template"]["spec"]["volumes"][0]
        assert vol["emptyDir"]["medium"] == "Memory" and vol["emptyDir"]["sizeLimit"]
        assert {"name": vol["name"], "mountPath": "/dev/shm"} in container(group)["volumeMounts"]


def test_uneven_workers_spread_evenly_and_a_user_profile_file_adds_h100(profiles):
    assert "h100-80g" in profiles and "a100-80g" in profiles
    plan = plan_workers(job(workers=12, gpus_per_worker=1), profiles["a100-80g"])
    assert (plan.pods, plan.workers_per_pod, plan.gpus_per_pod, plan.spare_workers) == (2, 6, 6, 0)
    assert plan.cpu == 66  # 6/8 of the node
    plan = plan_workers(job(workers=3, gpus_per_worker=2), profiles["a100-80g"])
    assert (plan.pods, plan.gpus_per_pod) == (1, 6)
    _, worker = groups(manifests(profiles)["h100-secrets"])
    assert worker["replicas"] == 4 and container(worker)["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"} in \
        worker["template"]["spec"]["tolerations"]


def test_cpu_job_packs_workers_on_cpu_pods_without_gpus(profiles):
    _, worker = groups(manifests(profiles)["cpu"])
    res = container(worker)["resources"]
    assert worker["replicas"] == 1 and res["limits"] == {"cpu": "4", "memory": "16Gi"}  # 2 workers x 2 CPUs
    assert "nodeSelector" not in worker["template"]["spec"]
    assert worker["rayStartParams"] == {"num-cpus": "4"}


def test_secrets_are_referenced_never_inlined(profiles):
    obj = manifests(profiles)["h100-secrets"]
    for group in groups(obj):
        pod = group["template"]["spec"]
        c = container(group)
        assert pod["serviceAccountName"] == "jepa-workload"
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert c["imagePullPolicy"] == "Always" and c["image"] == IMAGE
        assert c["envFrom"] == [{"secretRef": {"name": "aws-creds"}}]
        env = {e["name"]: e for e in c["env"]}
        assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
        assert env["GOOGLE_APPLICATION_CREDENTIALS"]["value"] == "/var/secrets/gcs/key.json"
        assert env["AWS_REGION"]["value"] == "us-east-1"
        assert {"name": "gcs-key", "secret": {"secretName": "gcs-key", "items": [{"key": "key.json",
                                                                                   "path": "key.json"}]}} \
            in pod["volumes"]
        for e in c["env"]:  # a plain value is never a credential
            assert "valueFrom" in e or e["name"] in ("AWS_REGION", "GOOGLE_APPLICATION_CREDENTIALS"), e
    with pytest.raises(ValueError, match="looks like a credential"):
        KubernetesSettings(env={"AWS_SECRET_ACCESS_KEY": "hunter2"})
    with pytest.raises(ValueError, match="SECRET/KEY"):
        KubernetesSettings(secrets={"env": {"TOKEN": "no-key-given"}})


def test_spec_round_trips_through_the_annotation_and_the_runtime_env(profiles):
    spec = a100_job()
    obj = build_rayjob(spec, KubernetesSettings(image=IMAGE), profiles)
    carried = spec_from_rayjob(obj)
    env = yaml.safe_load(obj["spec"]["runtimeEnvYAML"])["env_vars"]
    assert decode_spec(env[SPEC_ENV]) == carried
    again = validate_spec(carried)
    settings = KubernetesSettings(image=IMAGE).model_dump(mode="json")  # the runner's params travel in its target
    expected = spec.resolved() | {"target": {"kind": "kubernetes", "params": settings}}
    expected["resources"] = expected["resources"] | {"accelerator_type": None}  # it named the profile only
    assert again.resolved() == expected
    # too large for readable JSON within the budget: compressed, still round-trips; past it, refused
    big = {"name": "big", "blob": [f"s3://bucket/some/long/path/video_{i:07d}.mp4" for i in range(8000)]}
    notes = spec_annotations(big)
    assert notes["jepa-platform/spec-encoding"] == "gzip+base64"
    assert spec_from_rayjob({"metadata": {"annotations": notes}}) == big
    random_blob = {"name": "huge", "blob": [hex(hash((i, "x")) * 7919) for i in range(60000)]}
    with pytest.raises(ConfigError, match="too large"):
        spec_annotations(random_blob)


def test_the_kubernetes_settings_are_the_runners_params_in_either_place():
    """`kubernetes:` (short form) and `target.params` are both checked by the runner's own params model, and
    the runner is built from them, `target.params` winning; the spec module knows nothing of Kubernetes."""
    import jepa_platform.spec as spec_module
    from jepa_platform.runners import runner_for, target_params
    from jepa_platform.spec import SpecError

    base = {"name": "x", "data": {"dataset": "synthetic"}}
    spec = validate_spec({**base, "kubernetes": {"image": IMAGE, "namespace": "ml"}})
    assert spec.kubernetes["image"] == IMAGE and spec.kubernetes["head_memory"] == "16Gi"  # defaults filled
    assert runner_for("k8s", target_params(spec, "kubernetes")).settings.namespace == "ml"
    both = validate_spec({**base, "kubernetes": {"image": IMAGE, "namespace": "ml"},
                          "target": {"kind": "k8s", "params": {"namespace": "research"}}})
    settings = runner_for("kubernetes", target_params(both, "kubernetes")).settings
    assert (settings.image, settings.namespace) == (IMAGE, "research")
    with pytest.raises(SpecError, match=r"kubernetes\.namespace: Value error, must be a DNS-1123 label"):
        validate_spec({**base, "kubernetes": {"namespace": "Bad_NS"}})
    with pytest.raises(SpecError, match=r"target\.params\.imgae: Extra inputs are not permitted"):
        validate_spec({**base, "target": {"kind": "kubernetes", "params": {"imgae": IMAGE}}})
    assert not hasattr(spec_module, "KubernetesSettings") and "kubernetes" not in spec_module.__dict__


def test_rayjob_names_are_stable_and_acceptable_to_kuberay():
    assert rayjob_name("pretrain") == "pretrain"
    long = "salt-student-vit-huge-k400-ssv2-200k-steps-lr3e4-seed1-rerun-b"
    assert len(long) == 62
    for name in (long, "7b-teacher", "0" * 63):
        got = rayjob_name(name)
        assert got == rayjob_name(name) and len(got) <= 47 and got[0].isalpha()
        assert got.replace("-", "").isalnum() and got.islower() and not got.endswith("-")
    assert rayjob_name(long) != rayjob_name(long[:-1] + "c")


def test_unknown_profile_is_a_config_error_listing_the_known_ones(profiles):
    with pytest.raises(ConfigError) as e:
        build_rayjob(job(workers=1, gpus_per_worker=1), KubernetesSettings(image=IMAGE, profile="tpu-v5"), profiles)
    assert "unknown accelerator profile 'tpu-v5'" in str(e.value)
    assert "a100-80g, cpu, h100-80g" in str(e.value)


def test_profiles_files_are_data_checked_and_layered(profiles_file, tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"l4": {**PROFILES["a100-80g"], "node_selectr": {"a": "b"}}}))
    with pytest.raises(ConfigError, match=r"l4\.node_selectr"):
        load_profiles(profiles_file, extra=[typo])
    layered = tmp_path / "layered.yaml"
    layered.write_text(yaml.safe_dump({"profiles": {"cpu": None, "a100-80g": {**PROFILES["a100-80g"], "cpu": "80"}}}))
    got = load_profiles(profiles_file, extra=[layered])
    assert "cpu" not in got and str(got["a100-80g"].cpu) == "80"
    with pytest.raises(ConfigError, match="no such accelerator profiles file"):
        load_profiles(tmp_path / "absent.yaml")


def test_the_default_profiles_file_loads_when_present():
    shipped = load_profiles()
    if not shipped:
        pytest.skip("no packaged or deploy/ accelerator-profiles.yaml in this checkout")
    assert all(p.gpus_per_node >= 0 and p.memory_bytes > 0 for p in shipped.values())


def test_jobs_that_cannot_run_on_the_cluster_are_refused_with_every_reason(profiles, tmp_path):
    local = validate_spec({"name": "local", "data": {"train": str(tmp_path / "train.csv")},
                           "storage": {"output": str(tmp_path / "runs")}})
    with pytest.raises(ConfigError) as e:
        build_rayjob(local, KubernetesSettings(), profiles)
    text = str(e.value)
    assert "storage.output" in text and "data.train" in text and "kubernetes.image" in text
    (tmp_path / "val.csv").write_text("")  # a labelled set that exists, but on this machine only
    pipeline = validate_spec({"name": "salt", "data": {"train": "s3://videos/train.csv"},
                              "storage": {"output": "s3://bucket/runs"},
                              "stages": [{"name": "teacher"}, {"name": "probe",
                                                               "data": {"val": str(tmp_path / "val.csv")}}]})
    with pytest.raises(ConfigError, match=r"stages\[1\]\.data\.val: /.*val\.csv is on this machine") as e:
        build_rayjob(pipeline, KubernetesSettings(image=IMAGE), profiles)
    assert "stages[0]" not in str(e.value)
    with pytest.raises(ConfigError, match="has no GPUs"):
        build_rayjob(job(gpus_per_worker=1), KubernetesSettings(image=IMAGE, profile="cpu"), profiles)
    with pytest.raises(ConfigError, match="do not fit on one node"):
        build_rayjob(job(gpus_per_worker=16), KubernetesSettings(image=IMAGE, profile="a100-80g"), profiles)


def test_an_embedding_job_renders_a_valid_rayjob_and_its_local_paths_are_refused(profiles, rayjob_schema, tmp_path):
    embed = {"checkpoint": "s3://bucket/vjepa2-vitl", "data": "s3://videos/all/", "output": "s3://bucket/feats"}
    spec = validate_spec({"name": "feats", "data": {}, "embed": embed, "storage": {"output": "s3://bucket/runs"},
                          "resources": {"workers": 4, "gpus_per_worker": 1}})
    obj = build_rayjob(spec, KubernetesSettings(image=IMAGE, profile="a100-80g"), profiles)
    assert crd_errors(rayjob_schema, obj) == []
    assert spec_from_rayjob(obj)["embed"]["output"] == "s3://bucket/feats"
    local = validate_spec({"name": "feats", "data": {}, "storage": {"output": "s3://bucket/runs"},
                           "embed": {**embed, "data": str(tmp_path), "checkpoint": str(tmp_path / "w.pt")}})
    with pytest.raises(ConfigError) as e:
        build_rayjob(local, KubernetesSettings(image=IMAGE), profiles)
    assert "embed.data" in str(e.value) and "embed.checkpoint" in str(e.value) and "embed.output" not in str(e.value)


@pytest.mark.parametrize("deployment,job_status,state", [
    ("", "", "PENDING"), ("Initializing", "", "PENDING"), ("Running", "PENDING", "RUNNING"),
    ("Running", "RUNNING", "RUNNING"), ("Retrying", "FAILED", "RUNNING"), ("Complete", "SUCCEEDED", "SUCCEEDED"),
    ("Complete", "STOPPED", "CANCELLED"), ("Complete", "FAILED", "FAILED"), ("Failed", "FAILED", "FAILED"),
    ("Failed", "", "FAILED"), ("Suspended", "", "CANCELLED"),
])
def test_rayjob_status_maps_to_one_state(deployment, job_status, state):
    obj = {"metadata": {"name": "j"}, "status": {"jobDeploymentStatus": deployment, "jobStatus": job_status}}
    assert rayjob_state(obj)[0] == state


def test_in_cluster_entry_runs_the_carried_spec_through_the_stages(profiles, monkeypatch, capsys):
    from jepa_platform.runners import local
    from jepa_platform.runners import stages as runners

    ran = []

    def fake_submit(self, spec, on_row=None):
        ran.append(spec.name)
        on_row({"step": 1000, "loss": 0.25})
        return local.RunResult(spec.name, spec.job_dir, "SUCCEEDED", 1000, {}, None)

    monkeypatch.setattr(local.LocalRunner, "submit", fake_submit)
    monkeypatch.setattr(runners, "latest_step", lambda spec: (None, None))
    unchecked = lambda job, stages, **_: [ResumeCheck(s.job_dir, None) for s in stages]  # noqa: E731 - no bucket
    monkeypatch.setattr(runners, "check_stages", unchecked)
    obj = build_rayjob(a100_job(), KubernetesSettings(image=IMAGE), profiles)
    env = yaml.safe_load(obj["spec"]["runtimeEnvYAML"])["env_vars"]
    assert driver.main([], environ=env) == 0
    reader = EventReader()
    events = [reader.feed(line) for line in capsys.readouterr().out.splitlines()]
    assert ran == ["vitl-a100"] and Row({"step": 1000, "loss": 0.25}) in events
    assert events[-1] == Done("vitl-a100", "s3://bucket/runs/vitl-a100")
    assert driver.main([], environ={}) == 2


# -- the client, against a fake API server --------------------------------------------------------------
@pytest.fixture
def api(tmp_path, monkeypatch):
    with FakeKubernetes() as fake:
        monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig", namespace="ml")))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield fake


@pytest.fixture
def runner(profiles) -> KubernetesRunner:
    return KubernetesRunner(settings=KubernetesSettings(image=IMAGE), profiles=profiles, poll_interval=0.05,
                            replace_timeout=5)


def gpu_job(name="vitl-a100"):
    spec = a100_job()
    return spec.model_copy(update={"name": name})


def test_fake_apiserver_launch_creates_the_rayjob_in_the_contexts_namespace(api, runner):
    launch = runner.launch(gpu_job())
    assert (launch.name, launch.namespace, launch.replaced) == ("vitl-a100", "ml", False)
    [post] = api.calls("POST")
    assert post.path == "/apis/ray.io/v1/namespaces/ml/rayjobs" and "dryRun" not in post.query
    assert post.body["metadata"]["labels"]["jepa-platform/job"] == "vitl-a100"
    assert ("ml", "vitl-a100") in api.rayjobs and launch.manifest["metadata"]["uid"]


def test_fake_apiserver_server_dry_run_is_admitted_but_not_stored(api, runner):
    launch = runner.launch(gpu_job(), dry_run="server")
    [post] = api.calls("POST")
    assert post.query["dryRun"] == ["All"] and api.rayjobs == {}
    assert launch.manifest["metadata"]["name"] == "vitl-a100"


def test_fake_apiserver_client_dry_run_sends_nothing(api, runner):
    runner.settings.namespace = "research"
    launch = runner.launch(gpu_job(), dry_run="client")
    assert api.requests == [] and launch.namespace == "research"
    assert launch.manifest["metadata"]["namespace"] == "research"


def test_fake_apiserver_success_needs_complete_and_succeeded(api, runner):
    runner.launch(gpu_job())
    assert runner.status("vitl-a100", "ml")[0] == "PENDING"
    api.set_rayjob_status("ml", "vitl-a100", "Running", "SUCCEEDED")  # driver done, submitter not yet
    assert runner.status("vitl-a100", "ml")[0] == "RUNNING"
    api.set_rayjob_status("ml", "vitl-a100", "Failed", "FAILED", reason="AppFailed", message="loss is nan")
    state, detail = runner.status("vitl-a100", "ml")
    assert state == "FAILED" and "AppFailed" in detail and "loss is nan" in detail
    api.set_rayjob_status("ml", "vitl-a100", "Complete", "SUCCEEDED")
    assert runner.status("vitl-a100", "ml")[0] == "SUCCEEDED"


def test_fake_apiserver_resubmitting_a_finished_job_replaces_it_to_resume(api, runner):
    api.terminating_gets = 2  # KubeRay's finalizer keeps it a moment
    spec = gpu_job()
    runner.launch(spec)
    api.set_rayjob_status("ml", "vitl-a100", "Failed", "FAILED")
    launch = runner.launch(spec)
    assert launch.replaced
    [delete] = api.calls("DELETE")
    assert delete.path.endswith("/rayjobs/vitl-a100")
    assert "Foreground" in json.dumps([delete.query, delete.body])
    methods = [r.method for r in api.requests]
    assert methods[-1] == "POST" and methods.count("POST") == 3  # create, conflict, create again
    assert "status" not in api.rayjobs[("ml", "vitl-a100")]  # a fresh RayJob


def test_fake_apiserver_resubmitting_a_running_job_is_refused(api, runner):
    spec = gpu_job()
    runner.launch(spec)
    api.set_rayjob_status("ml", "vitl-a100", "Running", "RUNNING")
    with pytest.raises(JobAlreadyRunning, match="already running on Kubernetes as RayJob ml/vitl-a100"):
        runner.launch(spec)
    assert api.calls("DELETE") == []


def test_fake_apiserver_server_dry_run_of_a_resubmission_validates_under_a_generated_name(api, runner):
    spec = gpu_job()
    runner.launch(spec)
    api.set_rayjob_status("ml", "vitl-a100", "Complete", "SUCCEEDED")
    launch = runner.launch(spec, dry_run="server")
    assert launch.replaced and launch.name == "vitl-a100"
    probe = api.calls("POST")[-1]
    assert probe.query["dryRun"] == ["All"] and probe.body["metadata"]["generateName"] == "vitl-a100-"
    assert api.calls("DELETE") == [] and api.rayjobs[("ml", "vitl-a100")]["status"]


def test_fake_apiserver_a_foreign_rayjob_of_the_same_name_is_left_alone(api, runner):
    api.rayjobs[("ml", "vitl-a100")] = {"apiVersion": "ray.io/v1", "kind": "RayJob",
                                        "metadata": {"name": "vitl-a100", "labels": {"team": "other"}},
                                        "status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}}
    with pytest.raises(Exception, match="did not create"):
        runner.launch(gpu_job())
    assert api.calls("DELETE") == []


def test_fake_apiserver_logs_come_from_the_submitter_pods_in_order(api, runner):
    runner.launch(gpu_job())
    api.add_submitter_pod("ml", "vitl-a100", "stage vitl-a100: starting\nstep=10 loss=0.9\nstep=20 loss=0.8",
                          phase="Running", suffix="aaaaa", created="2026-01-01T10:05:00Z")  # the retry
    api.add_submitter_pod("ml", "vitl-a100", "attempt 1\nerror: node lost\n", phase="Failed", suffix="zzzzz",
                          created="2026-01-01T10:00:00Z")
    api.add_submitter_pod("ml", "other-job", "not ours\n")
    assert list(runner.logs("vitl-a100", "ml")) == [
        "attempt 1", "error: node lost", "stage vitl-a100: starting", "step=10 loss=0.9", "step=20 loss=0.8"]
    [pods] = {tuple(r.query["labelSelector"]) for r in api.calls("GET", "/pods") if not r.path.endswith("/log")}
    assert pods == ("job-name=vitl-a100",)


def kuberay_runs_it(log: str, outcome: tuple[str, str] = ("Complete", "SUCCEEDED"), delay: float = 0.2):
    """What the operator does once a RayJob exists: cluster up, submitter pod runs the driver, job ends."""

    def operator(fake: FakeKubernetes, ns: str, name: str) -> None:
        time.sleep(delay)
        fake.set_rayjob_status(ns, name, "Running", "RUNNING")
        fake.add_submitter_pod(ns, name, log)
        time.sleep(delay)
        fake.set_rayjob_status(ns, name, *outcome)

    return operator


@pytest.fixture
def store(tmp_path) -> JobStore:
    (tmp_path / "jobs").mkdir()
    return JobStore(tmp_path / "jobs")


def new_record(store: JobStore, spec, stage=None) -> JobRecord:
    return store.save(JobRecord(store.new_id(spec.name), spec.name, "kubernetes", spec.job_dir,
                                spec=spec.resolved(), stage=stage))


DRIVER_LOG = ("stage vitl-a100: resuming at step 500\nstep=750 loss=0.4\nstep=1000 loss=0.3\n"
              "done vitl-a100: outputs in s3://bucket/runs/vitl-a100\n")


def test_fake_apiserver_submit_follows_the_job_to_its_end_and_records_it(api, runner, store):
    api.on_create = kuberay_runs_it(DRIVER_LOG)
    spec = gpu_job()
    rows, stages, lines = [], [], []
    started = time.monotonic()
    record = runner.run_record(spec, new_record(store, spec), store, on_row=rows.append,
                               on_stage=lambda s, event, step: stages.append((s.name, event, step)),
                               on_line=lines.append)
    assert time.monotonic() - started < 10
    assert record.status == "SUCCEEDED" and record.step == 1000 and record.error is None
    assert (record.remote_id, record.address) == ("ml/vitl-a100", "fake")
    assert [r["step"] for r in rows] == [750, 1000] and stages == [("vitl-a100", "resuming", 500)]
    assert lines[0] == "RayJob ml/vitl-a100 created; waiting for its Ray cluster"
    assert lines[-1].startswith("done vitl-a100")
    reader = EventReader()
    logged = [reader.feed(line) for line in store.log_path(record.id).read_text().splitlines()]
    assert Stage("vitl-a100", "resuming", 500) in logged and Row({"step": 750, "loss": 0.4}) in logged


def test_fake_apiserver_a_failed_job_is_recorded_with_its_own_error(api, runner, store):
    api.on_create = kuberay_runs_it("step=10 loss=nan\nerror: training stopped: the loss is not finite at step 10\n",
                                    outcome=("Failed", "FAILED"))
    spec = gpu_job()
    record = runner.run_record(spec, new_record(store, spec), store)
    assert record.status == "FAILED" and record.step == 10
    assert record.error == "training stopped: the loss is not finite at step 10"
    contract = KubernetesRunner(settings=runner.settings, profiles=runner.profiles, poll_interval=0.05)
    result = contract.submit(spec)  # the runner contract
    assert (result.status, result.step) == ("FAILED", 10) and "not finite" in result.error


def test_fake_apiserver_interrupting_the_wait_leaves_the_job_running(api, runner, store, monkeypatch):
    spec = gpu_job()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(KubernetesRunner, "logs", interrupted)
    record = new_record(store, spec)
    with pytest.raises(JobDetached, match="it goes on as RayJob ml/vitl-a100: follow it with `jepa logs"):
        runner.run_record(spec, record, store)
    assert store.get(record.id).status == "PENDING" and api.calls("PATCH") == [] and api.calls("DELETE") == []


def test_fake_apiserver_recorded_jobs_refresh_and_cancel(api, runner, store):
    spec = gpu_job()
    record = runner.run_record(spec, new_record(store, spec, stage="vitl-a100"), store, wait=False)
    assert record.status == "PENDING" and "waiting for its Ray cluster" in store.log_path(record.id).read_text()
    assert api.calls("POST")[0].body["spec"]["entrypoint"].endswith("runners.driver --stage vitl-a100")
    api.set_rayjob_status("ml", "vitl-a100", "Running", "RUNNING")
    api.add_submitter_pod("ml", "vitl-a100", "stage vitl-a100: starting\nstep=40 loss=0.7\n", phase="Running")
    record = runner.refresh(record, store)
    assert (record.status, record.step) == ("RUNNING", 40)
    assert list(runner.read_log(record, store)) == ["stage vitl-a100: starting", "step=40 loss=0.7"]
    record = runner.stop(record, store)
    assert record.status == "CANCELLED" and api.rayjobs[("ml", "vitl-a100")]["spec"]["suspend"] is True
    record = runner.stop(record, store, delete=True)
    assert record.status == "CANCELLED" and api.rayjobs == {}
    again = runner.run_record(spec, new_record(store, spec), store, wait=False)
    api.set_rayjob_status("ml", "vitl-a100", "Running", "RUNNING")
    with pytest.raises(JobAlreadyRunning, match=f"stop it with `jepa cancel {again.id}`"):
        runner.run_record(spec, new_record(store, spec), store, wait=False)
    store.update(again.id, status="CANCELLED")  # a record of this machine no longer owns it: kubectl then
    with pytest.raises(JobAlreadyRunning, match="submitted from elsewhere: .*kubectl -n ml delete rayjob vitl-a100"):
        runner.run_record(spec, new_record(store, spec), store, wait=False)
    with pytest.raises(JobNotFound, match="was never started on its cluster"):
        runner.stop(new_record(store, spec), store)
    api.fail = "no-crd"  # an unanswered cluster leaves the record as it is, unless asked to be strict
    running = store.update(new_record(store, spec).id, status="RUNNING", remote_id="ml/x", address="fake")
    assert runner.refresh(running, store).status == "RUNNING"
    with pytest.raises(RayJobCRDMissing):
        runner.refresh(running, store, strict=True)


def test_fake_apiserver_cancel_suspends_or_deletes(api, runner):
    runner.launch(gpu_job())
    api.set_rayjob_status("ml", "vitl-a100", "Running", "RUNNING")
    assert runner.cancel("vitl-a100", "ml") == "CANCELLED"
    [patch] = api.calls("PATCH")
    assert patch.body == {"spec": {"suspend": True}} and patch.content_type == "application/merge-patch+json"
    assert runner.status("vitl-a100", "ml")[0] == "CANCELLED"
    assert runner.cancel("vitl-a100", "ml", delete=True) == "CANCELLED"
    assert api.rayjobs == {}
    with pytest.raises(RayJobNotFound, match="no RayJob vitl-a100 in namespace ml"):
        runner.status("vitl-a100", "ml")


def test_fake_apiserver_list_shows_only_jepa_rayjobs(api, runner):
    runner.launch(gpu_job("first"))
    runner.launch(gpu_job("second"))
    api.rayjobs[("ml", "foreign")] = {"metadata": {"name": "foreign", "labels": {"team": "x"}}}
    listed = runner.list()
    assert [(s.name, s.job, s.status) for s in listed] == [("first", "first", "PENDING"),
                                                           ("second", "second", "PENDING")]
    assert api.calls("GET", "/rayjobs")[-1].query["labelSelector"] == ["app.kubernetes.io/name=jepa-platform"]


def test_fake_apiserver_missing_crd_says_to_install_kuberay(api, runner):
    api.fail = "no-crd"
    with pytest.raises(RayJobCRDMissing) as e:
        runner.launch(gpu_job())
    assert str(e.value).startswith("the RayJob CRD (ray.io/v1) is not installed in the cluster at http://127.0.0.1:")
    assert "install the KubeRay operator (helm repo add kuberay" in str(e.value)
    with pytest.raises(RayJobCRDMissing):
        runner.status("vitl-a100", "ml")  # a named get: still the CRD, not the job


def test_fake_apiserver_rbac_denial_names_who_and_what(api, runner):
    api.fail = "rbac"
    with pytest.raises(KubernetesForbidden) as e:
        runner.launch(gpu_job())
    assert str(e.value) == ("forbidden: service account ml/submitter cannot create rayjobs in namespace ml "
                            "(see the chart's submitter Role)")


def test_fake_apiserver_quota_exceeded_keeps_the_servers_numbers(api, runner):
    api.fail = "quota"
    with pytest.raises(QuotaExceeded) as e:
        runner.launch(gpu_job())
    assert str(e.value).startswith("quota exceeded in namespace ml: rayjobs.ray.io \"vitl-a100\" is forbidden: "
                                   "exceeded quota: rayjob-count")
    assert "limited: count/rayjobs.ray.io=2" in str(e.value)


def test_fake_apiserver_missing_namespace_and_bad_credentials(api, runner):
    api.namespaces = {"ml"}
    runner.settings.namespace = "research"
    with pytest.raises(Exception, match="namespace research does not exist"):
        runner.launch(gpu_job())
    api.fail = "unauthorized"
    with pytest.raises(Exception, match="rejected the credentials"):
        runner.status("vitl-a100", "ml")


def test_unreachable_api_server_fails_fast_with_one_message(tmp_path, monkeypatch, runner):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = FakeKubernetes().write_kubeconfig(tmp_path / "kubeconfig", server=f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable) as e:
        runner.launch(gpu_job())
    assert time.monotonic() - started < 5
    message = str(e.value)
    assert message.startswith(f"cannot reach the Kubernetes API server at http://127.0.0.1:{port}: ")
    assert "Connection refused" in message and "\n" not in message


def test_no_kubeconfig_and_no_cluster_is_a_config_error(tmp_path, monkeypatch, runner):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="no Kubernetes configuration: no kubeconfig at .*absent"):
        runner.status("x", "ml")
    with pytest.raises(ConfigError, match="no context 'prod'"):
        FakeKubernetes().write_kubeconfig(tmp_path / "kc", server="http://127.0.0.1:1")
        KubernetesRunner(kubeconfig=str(tmp_path / "kc"), context="prod").status("x", "ml")


def test_list_target_k8s_shows_the_namespaces_rayjobs_through_the_runner(api, runner, store):
    """`jepa list --target k8s` asks the registered runner (`contracts.ListsJobs`), not a branch on the name."""
    from typer.testing import CliRunner

    from jepa_platform.cli import app

    spec = gpu_job()
    runner.run_record(spec, new_record(store, spec), store, wait=False)
    listed = CliRunner().invoke(app, ["list", "--target", "k8s", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["rayjob"], row["job"], row["namespace"]) == ("vitl-a100", "vitl-a100", "ml")
    local = CliRunner().invoke(app, ["list", "--target", "local"])
    assert local.exit_code == 2 and "local holds no jobs of its own to list" in local.output


def test_submit_no_wait_says_where_the_job_runs_in_the_runners_words(api, tmp_path):
    from typer.testing import CliRunner

    from jepa_platform.cli import app

    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(cpu_job().resolved() | {"optim": {"steps": 20, "warmup_steps": 2}}))
    result = CliRunner().invoke(app, ["submit", str(spec), "--target", "k8s", f"kubernetes.image={IMAGE}",
                                      "--no-wait"])
    assert result.exit_code == 0, result.output
    assert "running as RayJob ml/cpu-smoke; follow with `jepa logs cpu-smoke-" in " ".join(result.output.split())

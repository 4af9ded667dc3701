"""The Helm chart (helm/jepa-platform), rendered and linted offline with the real Helm library (helm_python,
Helm v4 SDK); every rendered object checked against the Kubernetes OpenAPI schemas (kubernetes_validate,
strict: unknown fields are errors)."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

helm = pytest.importorskip("helm_python")

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "jepa-platform"
PROFILES_FILE = ROOT / "deploy" / "accelerator-profiles.yaml"
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest kubernetes_validate knows.
KUBE_VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())
MISSING_OPERATOR = "chart directory is missing these dependencies: kuberay-operator"

L4_PROFILE = {
    "description": "NVIDIA L4, 4 per node (GKE g2-standard-48)",
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "gpu_resource": "nvidia.com/gpu",
    "gpus_per_node": 4,
    "cpu": "44",
    "memory": "180Gi",
}
IRSA = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/jepa-training"}
GKE_WI = {"iam.gke.io/gcp-service-account": "jepa-training@my-project.iam.gserviceaccount.com"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "customised": {
        "image": {"repository": "us-docker.pkg.dev/my-project/ml/jepa-platform", "tag": "0.1.0-gpu",
                  "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "workload": {"serviceAccount": {"annotations": {**IRSA, **GKE_WI}, "automountServiceAccountToken": True}},
        "submitter": {"serviceAccount": {"name": "ci-submitter"},
                      "rbac": {"extraSubjects": [{"kind": "Group", "name": "ml-researchers"},
                                                 {"kind": "ServiceAccount", "name": "argo", "namespace": "ci"}]}},
        "storage": {"output": "s3://bucket/runs", "credentials": {"s3": {"secretName": "aws-creds"},
                                                                 "gcs": {"secretName": "gcs-key"}}},
        "acceleratorProfiles": {"l4": L4_PROFILE, "cpu": None},
        "fullnameOverride": "ml",
    },
    "nothing-created": {
        "submitter": {"serviceAccount": {"create": False, "name": "existing-submitter"},
                      "rbac": {"create": False}},
        "workload": {"serviceAccount": {"create": False, "name": "existing-workload"}},
        "helmTest": {"enabled": False},
    },
    "operator-requested": {"kuberay-operator": {"enabled": True}},
}


@pytest.fixture(scope="module")
def chart():
    """The chart, loaded once. Safe to share here because its only dependency is not downloaded: rendering a
    chart whose subchart's condition is false removes that subchart from the loaded handle."""
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart, values: dict[str, Any] | None = None, namespace: str = "jepa", name: str = "jepa-platform"
           ) -> list[dict[str, Any]]:
    """The objects a `helm install` would create (test hooks included), NOTES.txt left out."""
    manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    return [doc for path, text in sorted(manifests.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def notes(chart, values: dict[str, Any] | None = None, namespace: str = "jepa") -> str:
    manifests = chart.render(values, name="jepa-platform", namespace=namespace, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def role_rules(objects: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, over every rule of the one Role."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in only(objects, "Role")["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_rendered_object_is_valid_kubernetes(chart, values):
    objects = render(chart, values)
    assert objects
    for obj in objects:
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_unknown_fields():
    """Guards the test above: strict validation must fail an object with a misspelt field."""
    bad = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automountToken": False}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_finds_nothing_but_the_undownloaded_operator_chart(values):
    report = helm.lint(CHART, values, namespace="jepa", kube_version=f"v{KUBE_VERSIONS[-1]}")
    assert report["errors"] == []
    warnings = [m["error"] for m in report["messages"] if m["severity"] >= 2]
    assert warnings == [MISSING_OPERATOR]


def test_operator_dependency_is_declared_and_off_by_default(chart):
    (dependency,) = helm.dependency_list(CHART)
    assert dependency["name"] == "kuberay-operator"
    assert dependency["repository"] == "https://ray-project.github.io/kuberay-helm/"
    assert dependency["status"] == "missing"  # not vendored: `helm dependency build` fetches it
    (declared,) = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]
    assert declared["condition"] == "kuberay-operator.enabled"
    assert chart.values["kuberay-operator"] == {"enabled": False}


@pytest.fixture
def chart_with_operator(tmp_path: Path) -> Path:
    """A copy of the chart with a stand-in kuberay-operator chart archived where `helm dependency build` puts
    the real one (charts/kuberay-operator-<version>.tgz)."""
    copy = tmp_path / "jepa-platform"
    shutil.copytree(CHART, copy)
    operator = tmp_path / "kuberay-operator"
    (operator / "templates").mkdir(parents=True)
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"][0]["version"]
    (operator / "Chart.yaml").write_text(f"apiVersion: v2\nname: kuberay-operator\nversion: {version}\n"
                                         "description: stand-in\nicon: https://example.com/icon.png\n")
    (operator / "values.yaml").write_text("replicas: 1\n")
    (operator / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kuberay-operator-stand-in\n"
        "data:\n  replicas: {{ .Values.replicas | quote }}\n")
    (copy / "charts").mkdir()
    helm.package(operator, destination=copy / "charts")
    return copy


def test_operator_chart_is_rendered_only_when_enabled(chart_with_operator):
    assert [d["status"] for d in helm.dependency_list(chart_with_operator)] == ["ok"]
    # A fresh handle per render: rendering with the condition false drops the subchart from the loaded chart
    # (Helm's dependency processing edits it in place), so a later render on that handle would not see it.
    with helm.Chart.load(chart_with_operator) as chart:
        names = [o["metadata"]["name"] for o in render(chart)]
    with helm.Chart.load(chart_with_operator) as chart:
        enabled = render(chart, {"kuberay-operator": {"enabled": True, "replicas": 2}})
    with helm.Chart.load(chart_with_operator) as chart:
        enabled_notes = notes(chart, {"kuberay-operator": {"enabled": True}})
    assert "kuberay-operator-stand-in" not in names
    stand_in = next(o for o in enabled if o["metadata"]["name"] == "kuberay-operator-stand-in")
    assert stand_in["data"] == {"replicas": "2"}  # the subchart's own values pass through
    assert "installed by this release" in enabled_notes


def test_lint_is_clean_in_strict_mode_once_the_operator_chart_is_there(chart_with_operator):
    for enabled in (False, True):
        report = helm.lint(chart_with_operator, {"kuberay-operator": {"enabled": enabled}}, strict=True,
                           namespace="jepa", kube_version=f"v{KUBE_VERSIONS[-1]}")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    ("values", "field", "problem"),
    [
        ({"imag": {"repository": "x"}}, "imag", "not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "must be one of"),
        ({"workload": {"serviceAccount": {"anotations": IRSA}}}, "anotations", "not allowed"),
        ({"submitter": {"rbac": {"create": "yes"}}}, "/submitter/rbac/create", "want boolean"),
        ({"storage": {"credentials": {"s3": {"accessKeyId": "AKIAEXAMPLE"}}}}, "accessKeyId", "not allowed"),
        ({"storage": {"output": 3}}, "/storage/output", "want string"),
        ({"imagePullSecrets": ["regcred"]}, "/imagePullSecrets/0", "want object"),
        ({"acceleratorProfiles": {"l4": {**L4_PROFILE, "gpus_per_node": "4"}}},
         "/acceleratorProfiles/l4/gpus_per_node", "want integer"),
        ({"acceleratorProfiles": {"l4": {k: v for k, v in L4_PROFILE.items() if k != "memory"}}},
         "/acceleratorProfiles/l4", "missing property 'memory'"),
        ({"acceleratorProfiles": {"l4": {**L4_PROFILE, "memory": "lots"}}}, "/acceleratorProfiles/l4/memory",
         "does not match pattern"),
        ({"acceleratorProfiles": {"l4": {k: v for k, v in L4_PROFILE.items() if k != "gpu_resource"}}},
         "/acceleratorProfiles/l4", "missing property 'gpu_resource'"),
        ({"acceleratorProfiles": {"L4": L4_PROFILE}}, "L4", "invalid propertyName"),
        ({"kuberay-operator": {"enabled": "no"}}, "/kuberay-operator/enabled", "want boolean"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_schema_rejects_bad_values_naming_the_field(chart, values, field, problem):
    with pytest.raises(helm.HelmValuesError) as raised:
        chart.render(values, name="jepa-platform", namespace="jepa")
    message = str(raised.value)
    assert field in message and problem in message, message
    report = helm.lint(CHART, values)
    assert any(field in error for error in report["errors"]), report["errors"]


def test_role_grants_exactly_what_the_jepa_commands_need(chart):
    objects = render(chart)
    assert role_rules(objects) == {
        ("ray.io", "rayjobs"): {"create", "get", "list", "watch", "patch", "delete"},
        ("ray.io", "rayclusters"): {"get", "list"},
        ("", "pods"): {"get", "list"},
        ("", "pods/log"): {"get"},
    }
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    binding = only(objects, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": only(objects, "Role")["metadata"]["name"]}
    submitter = next(o for o in objects if o["kind"] == "ServiceAccount"
                     and o["metadata"]["labels"]["app.kubernetes.io/component"] == "submitter")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": submitter["metadata"]["name"],
                                    "namespace": "jepa"}]


def test_rayclusters_read_access_can_be_left_out(chart):
    rules = role_rules(render(chart, {"submitter": {"rbac": {"readRayClusters": False}}}))
    assert ("ray.io", "rayclusters") not in rules
    assert rules[("ray.io", "rayjobs")] == {"create", "get", "list", "watch", "patch", "delete"}


def test_extra_subjects_are_bound_to_the_same_role(chart):
    objects = render(chart, VALUE_SETS["customised"])
    subjects = only(objects, "RoleBinding")["subjects"]
    assert subjects == [
        {"kind": "ServiceAccount", "name": "ci-submitter", "namespace": "jepa"},
        {"kind": "Group", "name": "ml-researchers", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "ServiceAccount", "name": "argo", "namespace": "ci"},
    ]


def test_workload_service_account_carries_the_cloud_identity(chart):
    objects = render(chart, VALUE_SETS["customised"])
    workload = next(o for o in objects if o["kind"] == "ServiceAccount"
                    and o["metadata"]["labels"]["app.kubernetes.io/component"] == "workload")
    assert workload["metadata"]["name"] == "ml-workload"
    assert workload["metadata"]["annotations"] == {**IRSA, **GKE_WI}
    assert workload["imagePullSecrets"] == [{"name": "regcred"}]
    assert workload["automountServiceAccountToken"] is True
    default = next(o for o in render(chart) if o["metadata"]["name"].endswith("-workload"))
    assert "annotations" not in default["metadata"]
    assert default["automountServiceAccountToken"] is False


@pytest.mark.parametrize("namespace", ["jepa", "ml-team-7"])
def test_everything_lands_in_the_release_namespace(chart, namespace):
    objects = render(chart, VALUE_SETS["customised"], namespace=namespace)
    assert {o["metadata"]["namespace"] for o in objects} == {namespace}
    defaults = yaml.safe_load(only(objects, "ConfigMap")["data"]["job-defaults.yaml"])
    assert defaults["kubernetes"]["namespace"] == namespace
    assert f"--target k8s --namespace {namespace}" in notes(chart, namespace=namespace)


def test_configmap_profiles_are_the_deploy_file(chart):
    shipped = yaml.safe_load(PROFILES_FILE.read_text())
    assert chart.values["acceleratorProfiles"] == shipped
    config_map = only(render(chart), "ConfigMap")
    assert yaml.safe_load(config_map["data"]["accelerator-profiles.yaml"]) == shipped


def test_profiles_can_be_added_and_removed(chart):
    config_map = only(render(chart, VALUE_SETS["customised"]), "ConfigMap")
    profiles = yaml.safe_load(config_map["data"]["accelerator-profiles.yaml"])
    expected = {k: v for k, v in yaml.safe_load(PROFILES_FILE.read_text()).items() if k != "cpu"}
    assert profiles == {**expected, "l4": L4_PROFILE}


def test_job_defaults_name_secrets_and_never_hold_credentials(chart):
    objects = render(chart, VALUE_SETS["customised"])
    assert not [o for o in objects if o["kind"] == "Secret"]
    defaults = yaml.safe_load(only(objects, "ConfigMap")["data"]["job-defaults.yaml"])
    assert defaults == {
        "kubernetes": {
            "namespace": "jepa",
            "image": "us-docker.pkg.dev/my-project/ml/jepa-platform:0.1.0-gpu",
            "image_pull_policy": "Always",
            "image_pull_secrets": ["regcred"],
            "service_account": "ml-workload",
            "secrets": {"env_from": ["aws-creds"], "gcs_key": "gcs-key/key.json"},
        },
        "storage": {"output": "s3://bucket/runs"},
    }
    plain = yaml.safe_load(only(render(chart), "ConfigMap")["data"]["job-defaults.yaml"])
    assert plain["kubernetes"]["secrets"] == {"env_from": []} and "storage" not in plain


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_job_defaults_are_a_valid_kubernetes_section_of_a_job_spec(chart, values):
    """The fragment uses the field names of the Kubernetes target's settings (the spec's `kubernetes:`)."""
    k8s_manifest = pytest.importorskip("jepa_platform.runners.k8s_manifest")
    defaults = yaml.safe_load(only(render(chart, values), "ConfigMap")["data"]["job-defaults.yaml"])
    k8s_manifest.KubernetesSettings.model_validate(defaults["kubernetes"])


def test_image_tag_defaults_to_the_app_version(chart):
    defaults = yaml.safe_load(only(render(chart), "ConfigMap")["data"]["job-defaults.yaml"])
    assert defaults["kubernetes"]["image"] == f"jepa-platform:{chart.metadata['appVersion']}"


def test_helm_test_pod_checks_rbac_as_the_submitter(chart):
    objects = render(chart)
    pod = only(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    submitter = only(objects, "RoleBinding")["subjects"][0]["name"]
    assert pod["spec"]["serviceAccountName"] == submitter
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "jepa-platform:0.1.0"
    assert container["command"] == ["python", "-c"]
    script = container["args"][0]
    compile(script, "check_submitter_rbac.py", "exec")  # the embedded script survived templating intact
    assert script == (CHART / "files" / "check_submitter_rbac.py").read_text()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert not [o for o in render(chart, {"helmTest": {"enabled": False}}) if o["kind"] == "Pod"]


def test_existing_service_accounts_are_used_when_none_is_created(chart):
    objects = render(chart, VALUE_SETS["nothing-created"])
    assert [o["kind"] for o in objects] == ["ConfigMap"]
    defaults = yaml.safe_load(objects[0]["data"]["job-defaults.yaml"])
    assert defaults["kubernetes"]["service_account"] == "existing-workload"
    with pytest.raises(helm.HelmRenderError, match="submitter.serviceAccount.name is required"):
        chart.render({"submitter": {"serviceAccount": {"create": False}}}, name="x", namespace="jepa")


def test_chart_app_version_is_the_package_version(chart):
    assert chart.metadata["appVersion"] == metadata.version("jepa-platform")
    assert chart.metadata["apiVersion"] == "v2" and chart.metadata["name"] == "jepa-platform"

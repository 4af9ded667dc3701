"""The params of runner `kubernetes` (also the spec's `kubernetes:` section): where and how a job runs as a
KubeRay RayJob. Validated by the runner registry like any component's params, so the spec knows nothing of it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from jepa_platform.plugins.registries import Params

GCS_KEY_DIR = "/var/secrets/gcs"
CREDENTIAL_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|PRIVATE_KEY|ACCESS_KEY|CREDENTIALS", re.IGNORECASE)
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def secret_ref(v: str) -> str:
    """`secret-name/key`, both parts as Kubernetes requires."""
    name, sep, key = v.partition("/")
    if not sep or not DNS1123_SUBDOMAIN.match(name) or not re.match(r"^[-._a-zA-Z0-9]+$", key):
        raise ValueError(f"expected SECRET/KEY (e.g. gcs-key/key.json), got {v!r}")
    return v


class SecretsSettings(Params):
    """Credentials for S3/GCS, by reference to Kubernetes Secrets in the job's namespace."""

    env_from: list[str] = Field(
        default_factory=list,
        description="Secrets whose every key becomes an env var, e.g. one holding AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="ENV_VAR: SECRET/KEY, one key each.")
    gcs_key: str | None = Field(
        None, description="SECRET/KEY of a GCS service-account key file; mounted read-only under "
        f"{GCS_KEY_DIR} and named by GOOGLE_APPLICATION_CREDENTIALS."
    )

    @field_validator("env_from")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not DNS1123_SUBDOMAIN.match(name):
                raise ValueError(f"{name!r} is not a Secret name (lowercase letters, digits, '-', '.')")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for name, ref in v.items():
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            secret_ref(ref)
        return v

    _gcs = field_validator("gcs_key")(classmethod(lambda cls, v: v if v is None else secret_ref(v)))


class KubernetesSettings(Params):
    """Where and how a job runs on Kubernetes (target `kubernetes`): a KubeRay RayJob in one namespace."""

    namespace: str | None = Field(None, description="Default: the kubeconfig context's namespace, else 'default'.")
    context: str | None = Field(None, description="kubeconfig context; default: the current one.")
    image: str | None = Field(None, description="Container image with jepa-platform installed (required).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list)
    service_account: str | None = Field(None, description="Service account of the Ray pods (e.g. for workload "
                                        "identity); default: the namespace's default.")
    profile: str | None = Field(
        None, description="Accelerator profile (node pool) of the workers; default: resources.accelerator_type "
        "when it names a profile, else 'cpu' for CPU-only jobs."
    )
    profiles_file: str | None = Field(None, description="Extra accelerator profiles (YAML), added to the defaults.")
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    env: dict[str, str] = Field(
        default_factory=dict, description="Plain, non-secret env vars (e.g. AWS_REGION, AWS_ENDPOINT_URL); "
        "credentials belong in `secrets`."
    )
    head_cpu: str | int | float = Field(4, description="CPU of the Ray head pod (it runs no training worker).")
    head_memory: str = "16Gi"
    head_node_selector: dict[str, str] = Field(default_factory=dict)
    shm_size: str | None = Field(None, description="/dev/shm size per pod; default: a quarter of its memory.")
    ttl_seconds_after_finished: int = Field(3600, ge=0, description="Keep the finished cluster this long.")
    backoff_limit: int = Field(0, ge=0, description="RayJob retries (each on a new cluster; they resume).")
    active_deadline_seconds: int | None = Field(None, ge=1)
    submission_mode: Literal["K8sJobMode", "HTTPMode"] = "K8sJobMode"
    priority_class: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the RayJob and its pods.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra annotations on the RayJob.")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        if v is not None and not DNS1123_LABEL.match(v):
            raise ValueError("must be a DNS-1123 label: 1-63 lowercase letters, digits or '-'")
        return v

    @field_validator("env")
    @classmethod
    def _plain_env(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if CREDENTIAL_NAME.search(name):
                raise ValueError(f"{name} looks like a credential: reference a Secret in kubernetes.secrets "
                                 "instead of writing its value into the spec")
        return v

    @field_validator("head_cpu", "head_memory", "shm_size")
    @classmethod
    def _quantity(cls, v: Any) -> Any:
        from kubernetes.utils import parse_quantity as quantity

        if v is not None:
            try:
                if quantity(v) <= 0:
                    raise ValueError
            except (ValueError, TypeError, ArithmeticError):
                raise ValueError(f"{v!r} is not a positive Kubernetes quantity (e.g. 8, 500m, 64Gi)") from None
        return v

"""Accelerator profiles: what a Kubernetes node pool offers a job, kept as data (YAML), not code.

A profiles file maps a profile name to one pool's scheduling facts, either at the top level or under a
`profiles:` key::

    a100-80g:
      description: 8x A100 80GB nodes
      node_selector: {cloud.google.com/gke-accelerator: nvidia-a100-80gb}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      gpu_resource: nvidia.com/gpu
      gpus_per_node: 8
      cpu: 88          # what one pod holding all of a node's GPUs may request
      memory: 1200Gi

The defaults ship with the package; a user adds or overrides profiles with their own file, named by
`$JEPA_PROFILES` (several joined with the path separator) or the spec's `kubernetes.profiles_file`; a
name set to null there removes that profile (as the Helm chart's `acceleratorProfiles` value does).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jepa_platform.errors import ConfigError

PROFILES_ENV = "JEPA_PROFILES"
PROFILES_FILE = "accelerator-profiles.yaml"
PACKAGED_PROFILES = Path(__file__).with_name(PROFILES_FILE)  # shipped with the wheel (package data)
CHECKOUT_PROFILES = Path(__file__).resolve().parents[2] / "deploy" / PROFILES_FILE  # a source checkout


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity (`8`, `500m`, `64Gi`, `1e3`) as a number; ConfigError when malformed."""
    from kubernetes.utils import parse_quantity as parse

    try:
        return Decimal(parse(value))
    except (ValueError, TypeError, ArithmeticError):
        raise ConfigError(f"{value!r} is not a Kubernetes quantity (e.g. 8, 500m, 64Gi)") from None


class Toleration(BaseModel):
    """A Kubernetes toleration, with the API's own field names."""

    model_config = ConfigDict(extra="forbid")
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None  # noqa: N815 - the Kubernetes field name

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class AcceleratorProfile(BaseModel):
    """One node pool: where its pods must go, and what one node offers."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of the pool's GPUs.")
    gpus_per_node: int = Field(0, ge=0, description="0 for a CPU pool.")
    cpu: str | int | float = Field(description="CPU one pod may request on one node (allocatable, less daemons).")
    memory: str | int = Field(description="Memory one pod may request on one node, a quantity such as 1200Gi.")

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, v: str | int | float) -> str | int | float:
        try:
            if parse_quantity(v) <= 0:
                raise ValueError("must be positive")
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v

    @property
    def cpu_cores(self) -> Decimal:
        return parse_quantity(self.cpu)

    @property
    def memory_bytes(self) -> Decimal:
        return parse_quantity(self.memory)


def read_profiles_file(path: str | Path) -> dict[str, AcceleratorProfile | None]:
    """The profiles of one file; a name mapped to null (None) removes that profile when files are layered."""
    path = Path(path).expanduser()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such accelerator profiles file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if isinstance(raw, dict) and isinstance(raw.get("profiles"), dict):
        raw = raw["profiles"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of profile name to profile")
    profiles: dict[str, AcceleratorProfile | None] = {}
    problems: list[str] = []
    for name, body in raw.items():
        if body is None:
            profiles[str(name)] = None
            continue
        if not isinstance(body, dict):
            problems.append(f"{name}: expected a mapping")
            continue
        try:
            profiles[str(name)] = AcceleratorProfile.model_validate({**body, "name": str(name)})
        except ValidationError as e:
            problems += [f"{name}.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    if problems:
        raise ConfigError(f"{path}: invalid accelerator profiles:\n  " + "\n  ".join(problems))
    return profiles


def default_profiles_path() -> Path | None:
    """The packaged profiles, else those of a source checkout's deploy/ folder, else None."""
    for path in (PACKAGED_PROFILES, CHECKOUT_PROFILES):
        if path.is_file():
            return path
    return None


def user_profile_paths() -> list[str]:
    return [p for p in os.environ.get(PROFILES_ENV, "").split(os.pathsep) if p.strip()]


def load_profiles(path: str | Path | None = None, extra: Iterable[str | Path] = ()) -> dict[str, AcceleratorProfile]:
    """Profiles by name: `path` (default: the packaged file), then each `$JEPA_PROFILES` file, then `extra`
    files; a later file's profile replaces an earlier one of the same name, and a name set to null removes it."""
    base = Path(path) if path is not None else default_profiles_path()
    layers = [base] if base is not None else []
    profiles: dict[str, AcceleratorProfile] = {}
    for p in [*layers, *user_profile_paths(), *extra]:
        for name, profile in read_profiles_file(p).items():
            if profile is None:
                profiles.pop(name, None)
            else:
                profiles[name] = profile
    return profiles


def get_profile(profiles: dict[str, AcceleratorProfile], name: str, field: str = "kubernetes.profile"
                ) -> AcceleratorProfile:
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles)) or f"none: add a profiles file with ${PROFILES_ENV}"
        raise ConfigError(f"{field}: unknown accelerator profile {name!r} (known: {known})") from None

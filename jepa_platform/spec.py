"""The job spec: one YAML file describing a whole run, validated down to each component's params.

Each component is named by `kind` and its `params` are checked by that component's own pydantic
model, taken from the plugin registry, so a mistake is reported with its full path, e.g.
`masks[1].params.num_blocks: Input should be a valid integer`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import fsspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jepa_platform.errors import ConfigError, JepaError
from jepa_platform.plugins.manager import registry
from jepa_platform.plugins.registry import PluginError
from jepa_platform.train.checkpoint import join
from jepa_platform.train.config import OptimConfig


class SpecError(JepaError):
    """A spec that does not validate; the message lists every problem with its path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(Strict):
    kind: str = Field(description="Registered component name (see `jepa components`).")
    params: dict[str, Any] = Field(default_factory=dict, description="Validated by the component's own model.")


def multiblock(num_blocks: int, scale: float) -> ComponentSpec:
    return ComponentSpec(kind="multiblock", params={"num_blocks": num_blocks, "spatial_scale": [scale, scale]})


class DataSpec(Strict):
    dataset: str = Field("video", description="Registered dataset kind.")
    train: str = Field(description="Training manifest (`path label` CSV) or folder of videos; any fsspec URL.")
    val: str | None = None
    frames: int = Field(16, ge=1)
    stride: int = Field(4, ge=1)
    resolution: int = Field(224, ge=1)
    loader_workers: int = Field(2, ge=0, description="DataLoader processes per training worker.")
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict, description="Validated by the dataset kind's model.")


class ResourcesSpec(Strict):
    workers: int = Field(1, ge=1, description="Ray Train workers (one process, one GPU each on GPU pools).")
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(0, ge=0)
    accelerator_type: str | None = Field(None, description="e.g. A100, H100; a Ray accelerator_type.")
    max_failures: int = Field(0, ge=-1, description="Worker-group restarts Ray Train may make (-1: unlimited).")


class StorageSpec(Strict):
    output: str = Field("./runs", description="Output root: a local path, s3:// or gs:// URL.")


NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class JobSpec(Strict):
    """One training job."""

    name: str = Field(description="Job name: lowercase letters, digits and '-'; names the output folder.")
    backbone: ComponentSpec = ComponentSpec(kind="vit", params={"size": "base"})
    predictor: ComponentSpec = ComponentSpec(kind="vit_predictor")
    masks: list[ComponentSpec] = Field(default_factory=lambda: [multiblock(8, 0.15), multiblock(2, 0.7)])
    teacher: ComponentSpec = ComponentSpec(kind="ema")
    optim: OptimConfig = OptimConfig()
    data: DataSpec
    resources: ResourcesSpec = ResourcesSpec()
    storage: StorageSpec = StorageSpec()
    target: Literal["local", "ray", "kubernetes"] = "local"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric")
        return v

    @field_validator("masks")
    @classmethod
    def _masks(cls, v: list[ComponentSpec]) -> list[ComponentSpec]:
        if not v:
            raise ValueError("at least one mask is needed")
        return v

    @property
    def job_dir(self) -> str:
        return join(self.storage.output, self.name)

    def components(self) -> list[tuple[str, str, ComponentSpec]]:
        """(path, family, spec) of every component the job names."""
        out = [("backbone", "backbones", self.backbone), ("predictor", "predictors", self.predictor),
               ("teacher", "teachers", self.teacher)]
        out += [(f"masks[{i}]", "maskers", m) for i, m in enumerate(self.masks)]
        out.append(("data", "datasets", ComponentSpec(kind=self.data.dataset, params=self.data.params)))
        return out

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


# -- loading ---------------------------------------------------------------------------------------------
def format_loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(spec)"


def error_lines(err: ValidationError, prefix: str = "") -> list[str]:
    return [f"{format_loc(e['loc'], prefix)}: {e['msg']}" for e in err.errors()]


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """`a.b[1].c=value` -> (["a", "b", 1, "c"], value). Lists and mappings are YAML; scalars stay
    strings for the schema to type (so `name=007` stays a string and `steps=10` becomes an int)."""
    if "=" not in text:
        raise SpecError(f"override {text!r}: expected KEY=VALUE, e.g. optim.steps=100")
    key, raw = text.split("=", 1)
    path: list[str | int] = []
    for part in re.split(r"\.|\[(\d+)\]", key.strip()):
        if part:
            path.append(int(part) if part.isdigit() else part)
    if not path:
        raise SpecError(f"override {text!r}: empty key")
    value: Any = raw
    if raw.strip() in ("null", "~", "None"):
        value = None
    elif raw.strip()[:1] in "[{":
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise SpecError(f"override {text!r}: value is not valid YAML: {e}") from None
    return path, value


def apply_override(raw: dict[str, Any], text: str) -> None:
    path, value = parse_override(text)
    node: Any = raw
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise SpecError(f"override {text!r}: {format_loc(tuple(path[: i + 1]))} is out of range")
            node = node[part]
            continue
        if part not in node or node[part] is None:
            if part in ("masks",):  # default lists must be materialised before an index can be set
                node[part] = [m.model_dump() for m in JobSpec.model_fields["masks"].default_factory()]
            else:
                node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last > len(node):
            raise SpecError(f"override {text!r}: index out of range")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    else:
        node[last] = value


def read_yaml(url: str) -> dict[str, Any]:
    try:
        with fsspec.open(url, "r") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise SpecError(f"{url}: no such spec file") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{url}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"{url}: a spec must be a YAML mapping, got {type(raw).__name__}")
    return raw


def validate_spec(raw: dict[str, Any], source: str = "spec") -> JobSpec:
    """Validates structure, then each component's params with its own model (filling defaults)."""
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(f"{source} is invalid:\n  " + "\n  ".join(error_lines(e))) from None
    problems: list[str] = []
    for path, family, comp in spec.components():
        kind_path = "data.dataset" if family == "datasets" else f"{path}.kind"
        params_path = "data.params" if family == "datasets" else f"{path}.params"
        try:
            component = registry(family).get(comp.kind)
        except PluginError as e:
            problems.append(f"{kind_path}: {e}")
            continue
        try:
            params = component.config.model_validate(comp.params).model_dump(mode="json")
        except ValidationError as e:
            problems += error_lines(e, params_path)
            continue
        if family == "datasets":
            spec.data.params = params
        else:
            comp.params = params
    if not problems:
        problems += cross_checks(spec)
    if problems:
        raise SpecError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    return spec


def cross_checks(spec: JobSpec) -> list[str]:
    """Constraints between fields: shapes that must divide, maskers that must build."""
    problems = []
    p = spec.backbone.params
    if "patch_size" in p and spec.data.resolution % p["patch_size"]:
        problems.append(
            f"data.resolution: must be divisible by backbone.params.patch_size ({p['patch_size']}), "
            f"got {spec.data.resolution}"
        )
    if "tubelet_size" in p and spec.data.frames % p["tubelet_size"]:
        problems.append(
            f"data.frames: must be divisible by backbone.params.tubelet_size ({p['tubelet_size']}), "
            f"got {spec.data.frames}"
        )
    for i, m in enumerate(spec.masks):
        try:
            registry("maskers").get(m.kind).build(m.params)
        except ConfigError as e:
            problems.append(f"masks[{i}].params: {e}")
    return problems


def load_spec(url: str | Path, overrides: list[str] | None = None) -> JobSpec:
    raw = read_yaml(str(url))
    for text in overrides or []:
        apply_override(raw, text)
    return validate_spec(raw, source=str(url))


def json_schema() -> dict[str, Any]:
    """JSON Schema of the spec, with each component's params schema attached as `x-jepa-components`."""
    schema = JobSpec.model_json_schema()
    from jepa_platform.plugins.manager import get_plugins

    schema["x-jepa-components"] = {
        family: {c.name: c.config.model_json_schema() for c in reg}
        for family, reg in get_plugins().registries.items()
    }
    return schema

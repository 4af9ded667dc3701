"""The job spec: one YAML file describing a whole run, validated down to each component's params.

Each component is named by `kind` and its `params` are checked by that component's own pydantic
model, taken from the plugin registry, so a mistake is reported with its full path, e.g.
`masks[1].params.num_blocks: Input should be a valid integer`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import fsspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from jepa_platform.errors import EXIT_USAGE, ConfigError, JepaError, did_you_mean
from jepa_platform.eval.settings import ProbeSettings
from jepa_platform.plugins.manager import registry
from jepa_platform.plugins.registries import PluginError
from jepa_platform.train.checkpoint import join
from jepa_platform.train.config import OptimConfig


class SpecError(JepaError):
    """A spec that does not validate; the message lists every problem with its path."""

    exit_code = EXIT_USAGE


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(Strict):
    kind: str = Field(description="Registered component name (see `jepa components`).")
    params: dict[str, Any] = Field(default_factory=dict, description="Validated by the component's own model.")


def multiblock(num_blocks: int, scale: float) -> ComponentSpec:
    return ComponentSpec(kind="multiblock", params={"num_blocks": num_blocks, "spatial_scale": [scale, scale]})


class DataSpec(Strict):
    dataset: str = Field("video", description="Registered dataset kind.")
    train: str | None = Field(
        None, description="Training manifest (`path label` CSV) or folder of videos; any fsspec URL."
    )
    val: str | None = None
    frames: int = Field(16, ge=1)
    stride: int = Field(4, ge=1)
    resolution: int = Field(224, ge=1)
    loader_workers: int = Field(2, ge=0, description="DataLoader processes per training worker.")
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict, description="Validated by the dataset kind's model.")

    _absolute = field_validator("train", "val")(classmethod(lambda cls, v: absolute_local(v)))


class ResourcesSpec(Strict):
    workers: int = Field(1, ge=1, description="Ray Train workers (one process, one GPU each on GPU pools).")
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(0, ge=0)
    accelerator_type: str | None = Field(None, description="e.g. A100, H100; a Ray accelerator_type.")
    max_failures: int = Field(0, ge=-1, description="Worker-group restarts Ray Train may make (-1: unlimited).")


def absolute_local(url: str | None) -> str | None:
    """Local paths are taken from the current folder and made absolute, so that workers in other
    folders (Ray Train workers, later stages) find the same files; URLs are left as they are."""
    if url is None or "://" in url:
        return url
    return str(Path(url).expanduser().resolve())


class StorageSpec(Strict):
    output: str = Field(
        "./runs", validate_default=True, description="Output root: a local path, s3:// or gs:// URL."
    )

    _absolute = field_validator("output")(classmethod(lambda cls, v: absolute_local(v)))


class ClusterSpec(Strict):
    address: str | None = Field(
        None, description="Target ray: the Ray dashboard's address, e.g. http://HOST:8265 (--address overrides it; "
        "without either, $JEPA_RAY_ADDRESS).",
    )


class ProbeSpec(ProbeSettings):
    """A frozen evaluation run as this stage instead of training (what `jepa probe` runs). `checkpoint:
    stage:NAME` probes an earlier stage; backbone and clip sizes default to that stage's; `output`
    defaults to this stage's folder."""


NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TARGET_ALIASES = {"k8s": "kubernetes"}
RUNNER_SECTIONS = {"kubernetes": "kubernetes"}  # runner -> the spec section that holds its params in short


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
    target: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(kind="local"),
        description="Where the job runs: a registered runner (local, ray, kubernetes or a plugin's) and its params; "
        "a bare name is short for {kind: NAME}, and k8s for kubernetes.",
    )
    cluster: ClusterSpec = ClusterSpec()
    probe: ProbeSpec | None = Field(None, description="Makes this job (stage) a frozen evaluation; see `jepa probe`.")
    kubernetes: dict[str, Any] | None = Field(
        None, description="Params of runner kubernetes, used whenever the job runs there (also with --target k8s): "
        "namespace, image, node pool profile, Secrets for storage credentials, RayJob lifetimes (see `jepa "
        "components runners`); `target.params` win over it."
    )
    stages: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Pipeline stages, run in order as one job. Each has a unique `name` and overrides this spec's "
        "fields (mappings merge, lists replace); `stage:NAME` in params refers to an earlier stage's checkpoints.",
    )
    _pipeline: list[JobSpec] = PrivateAttr(default_factory=list)
    _notes: list[str] = PrivateAttr(default_factory=list)  # for the spec's writer; not part of the spec

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric")
        return v

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = {"kind": v}
        if isinstance(v, dict) and isinstance(v.get("kind"), str):
            v = {**v, "kind": TARGET_ALIASES.get(v["kind"], v["kind"])}
        return v

    @model_validator(mode="before")
    @classmethod
    def _runner_section(cls, v: Any) -> Any:
        """The section of the target's runner (`RUNNER_SECTIONS`, e.g. `kubernetes:`) is folded under
        `target.params`, which win."""
        target = v.get("target") if isinstance(v, dict) else None
        target = {"kind": target} if isinstance(target, str) else target
        if not isinstance(target, dict) or not isinstance(target.get("kind"), str):
            return v
        section = RUNNER_SECTIONS.get(TARGET_ALIASES.get(target["kind"], target["kind"]))
        params = target.get("params") or {}
        if section and isinstance(v.get(section), dict) and isinstance(params, dict):
            v = {**v, "target": {**target, "params": deep_merge(v[section], params)}}
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

    @property
    def length(self) -> int:
        """Steps of a training stage; epochs of a probe stage."""
        return self.probe.epochs if self.probe is not None else self.optim.steps

    @property
    def notes(self) -> list[str]:
        """Notes for the spec's writer from loading it (e.g. a stage's own value winning over an override)."""
        return list(self._notes)

    def pipeline(self) -> list[JobSpec]:
        """The stages to run, in order: the expanded `stages`, or this spec alone when it has none."""
        return list(self._pipeline) if self.stages else [self]

    def components(self) -> list[tuple[str, str, ComponentSpec]]:
        """(path, family, spec) of every component the job names."""
        out = [("backbone", "backbones", self.backbone), ("predictor", "predictors", self.predictor),
               ("teacher", "teachers", self.teacher)]
        out += [(f"masks[{i}]", "maskers", m) for i, m in enumerate(self.masks)]
        out.append(("data", "datasets", ComponentSpec(kind=self.data.dataset, params=self.data.params)))
        out.append(("target", "runners", self.target))
        for kind, section in RUNNER_SECTIONS.items():  # checked by that runner's own params model
            if getattr(self, section) is not None:
                out.append((section, "runners", ComponentSpec(kind=kind, params=getattr(self, section))))
        return out

    def runner_params(self, kind: str) -> dict[str, Any]:
        """The params for runner `kind`: its section of the spec (`kubernetes:`, ray's `cluster.address`), then
        `target.params` when the target names it."""
        sections = {k: getattr(self, section) or {} for k, section in RUNNER_SECTIONS.items()}
        sections["ray"] = {"address": self.cluster.address} if self.cluster.address else {}
        own = self.target.params if self.target.kind == kind else {}
        return {**sections.get(kind, {}), **own}

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


def error_lines(err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem, `path: message`; a misspelt field of `model` gets a "did you mean" hint."""
    lines = []
    for e in err.errors():
        hint = ""
        if e["type"] == "extra_forbidden" and model is not None and isinstance(e["loc"][-1], str):
            hint = did_you_mean(e["loc"][-1], field_names(model, e["loc"][:-1]))
        lines.append(f"{format_loc(e['loc'], prefix)}: {e['msg']}{hint}")
    return lines


def field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The fields of the model found at `loc` inside `model` (list indices and optionals looked through)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current else None
        current = model_in(field.annotation) if field else None
        if current is None:
            return []
    return list(current.model_fields)


def model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """`a.b[1].c=value` -> (["a", "b", 1, "c"], value); `[*]` (every element) stays "*". Lists and
    mappings are YAML; scalars stay strings for the schema to type (so `name=007` stays a string and
    `steps=10` becomes an int; a stage's overrides are typed by the stage's schema the same way)."""
    if "=" not in text:
        raise SpecError(f"override {text!r}: expected KEY=VALUE, e.g. optim.steps=100")
    key, raw = text.split("=", 1)
    path: list[str | int] = []
    for part in re.split(r"\.|\[(\d+|\*)\]", key.strip()):
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
    """Sets one `KEY=VALUE` in the raw spec; `stages[*].KEY=VALUE` sets it in every stage."""
    path, value = parse_override(text)
    set_path(raw, path, value, text)


def set_path(node: Any, path: list[str | int], value: Any, text: str, done: tuple[Any, ...] = ()) -> None:
    part, rest = path[0], path[1:]
    if part == "*":
        if not isinstance(node, list) or not node:
            raise SpecError(f"override {text!r}: {format_loc(done) if done else 'the spec'} has no elements "
                            "for [*] to set")
        for i, element in enumerate(node):
            set_path(element, rest, value, text, (*done, i))
        return
    if isinstance(node, list):
        return set_element(node, path, value, text, done)
    if not isinstance(node, dict):
        raise SpecError(f"override {text!r}: {format_loc(done)} is a value, not a mapping")
    if not rest:
        node[part] = value
        return
    if part not in node or node[part] is None:
        if part == "masks":  # default lists must be materialised before an index can be set
            node[part] = [m.model_dump() for m in JobSpec.model_fields["masks"].default_factory()]
        else:
            node[part] = [] if isinstance(rest[0], int) or rest[0] == "*" else {}
    set_path(node[part], rest, value, text, (*done, part))


def set_element(node: list[Any], path: list[str | int], value: Any, text: str, done: tuple[Any, ...]) -> None:
    part, rest = path[0], path[1:]
    if not isinstance(part, int) or part > len(node) or (rest and part == len(node)):
        raise SpecError(f"override {text!r}: {format_loc((*done, part))} is out of range")
    if not rest:
        node.append(value) if part == len(node) else node.__setitem__(part, value)
        return
    set_path(node[part], rest, value, text, (*done, part))


def shadowed_overrides(raw: dict[str, Any], overrides: list[str]) -> list[str]:
    """Notes for job-level overrides that a stage's own value overrides in turn (the stage's value wins)."""
    notes = []
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] == "stages":
            continue
        for stage in raw.get("stages") or []:
            node: Any = stage
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None and isinstance(stage, dict):
                key = format_loc(tuple(path))
                notes.append(f"{text}: stage {stage.get('name')!r} sets its own {key} ({node}), which wins there; "
                             f"stages[*].{key}={text.split('=', 1)[1]} sets it in every stage")
    return notes


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
    """Validates structure, then each component's params with its own model (filling defaults);
    a pipeline's stages are expanded and validated the same way, errors prefixed `stages[i].`."""
    base_raw = {k: v for k, v in raw.items() if k != "stages"}
    spec = validate_one(base_raw, source)
    stages = raw.get("stages") or []
    if not stages:
        return spec
    spec._pipeline = expand_stages(base_raw, spec, stages, source)
    spec.stages = [typed_like(stage, s.resolved()) for stage, s in zip(stages, spec._pipeline, strict=True)]
    return spec


def typed_like(raw: Any, resolved: Any) -> Any:
    """A stage's overrides as written, each value replaced by the validated one at its path (so `'20'`
    given on the command line reads 20, as it will run); `stage:NAME` references stay as written."""
    if isinstance(raw, dict) and isinstance(resolved, dict):
        return {k: typed_like(v, resolved[k]) if k in resolved else v for k, v in raw.items()}
    if isinstance(raw, list) and isinstance(resolved, list) and len(raw) == len(resolved):
        return [typed_like(a, b) for a, b in zip(raw, resolved, strict=True)]
    if isinstance(raw, str) and raw.startswith(STAGE_REF):
        return raw
    return raw if isinstance(raw, dict | list) else resolved


def validate_one(raw: dict[str, Any], source: str, where: str = "") -> JobSpec:
    def fail(problems: list[str]) -> SpecError:
        return SpecError(f"{source} is invalid:\n  " + "\n  ".join(problems))

    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as e:
        raise fail(error_lines(e, where, JobSpec)) from None
    problems: list[str] = []
    for path, family, comp in spec.components():
        kind_path = "data.dataset" if family == "datasets" else f"{path}.kind"
        params_path = "data.params" if family == "datasets" else (
            path if path in RUNNER_SECTIONS.values() else f"{path}.params")
        try:
            component = registry(family).get(comp.kind)
        except PluginError as e:
            problems.append(f"{format_loc((kind_path,), where)}: {e}")
            continue
        try:
            params = component.config.model_validate(comp.params).model_dump(mode="json")
        except ValidationError as e:
            problems += error_lines(e, format_loc((params_path,), where), component.config)
            continue
        if family == "datasets":
            spec.data.params = params
        elif path in RUNNER_SECTIONS.values():
            setattr(spec, path, params)
        else:
            comp.params = params
    if not problems:
        problems += [format_loc((p,), where) for p in cross_checks(spec)]
    if problems:
        raise fail(problems)
    return spec


STAGE_REF = "stage:"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_stage_refs(node: Any, done: dict[str, JobSpec], where: str, problems: list[str]) -> Any:
    """Replaces `stage:NAME` strings by the checkpoints folder of the earlier stage NAME."""
    if isinstance(node, dict):
        return {k: resolve_stage_refs(v, done, f"{where}.{k}", problems) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_stage_refs(v, done, f"{where}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and node.startswith(STAGE_REF):
        name = node[len(STAGE_REF):]
        if name not in done:
            problems.append(f"{where}: {node!r} must name an earlier stage (earlier: {', '.join(done) or 'none'})")
            return node
        return join(done[name].job_dir, "checkpoints")
    return node


def expand_stages(base_raw: dict[str, Any], base: JobSpec, stages: list[Any], source: str) -> list[JobSpec]:
    done: dict[str, JobSpec] = {}
    for i, stage in enumerate(stages):
        where = f"stages[{i}]"
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str):
            raise SpecError(f"{source} is invalid:\n  {where}.name: every stage needs a name")
        fixed = sorted({"name", "stages", "storage", "target", "kubernetes", "cluster"} & (stage.keys() - {"name"}))
        if fixed:
            raise SpecError(f"{source} is invalid:\n  {where}: {', '.join(fixed)} can only be set for the whole job")
        if stage["name"] in done:
            raise SpecError(f"{source} is invalid:\n  {where}.name: stage {stage['name']!r} appears twice")
        problems: list[str] = []
        overrides = resolve_stage_refs({k: v for k, v in stage.items() if k != "name"}, done, where, problems)
        if problems:
            raise SpecError(f"{source} is invalid:\n  " + "\n  ".join(problems))
        merged = deep_merge(base_raw, overrides)
        merged["name"] = stage["name"]
        merged["storage"] = {"output": base.job_dir}  # each stage gets its own folder inside the job's
        done[stage["name"]] = validate_one(merged, source, where)
    return list(done.values())


def cross_checks(spec: JobSpec) -> list[str]:
    """Constraints between fields: shapes that must divide, maskers that must build."""
    problems = []
    if spec.data.dataset == "video" and not spec.data.train:
        problems.append("data.train: a manifest or folder of videos is required by dataset 'video'")
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
    """The spec file with `KEY=VALUE` overrides applied, validated; `notes` says where a stage's own value
    wins over a job-level override."""
    raw = read_yaml(str(url))
    for text in overrides or []:
        apply_override(raw, text)
    spec = validate_spec(raw, source=str(url))
    spec._notes = shadowed_overrides(raw, overrides or [])
    return spec


def json_schema() -> dict[str, Any]:
    """JSON Schema of the spec in which each component's params are checked by its own model, chosen by
    `kind` (so an editor refuses `kind: vitt` and `params: {dpeth: 3}`); the params schemas also stand
    alone under `x-jepa-components`."""
    from jepa_platform.plugins.manager import get_plugins

    registries = get_plugins().registries
    schema = JobSpec.model_json_schema()
    defs = schema.setdefault("$defs", {})

    def params_schema(family: str, name: str) -> dict[str, Any]:
        model = registries[family].get(name).config
        out = model.model_json_schema(ref_template=f"#/$defs/{family}.{name}.{{model}}")
        defs.update({f"{family}.{name}.{k}": v for k, v in out.pop("$defs", {}).items()})
        return out

    def choice(family: str) -> dict[str, Any]:
        return {"oneOf": [
            {"type": "object", "title": f"{family}: {c.name}", "required": ["kind"], "additionalProperties": False,
             "properties": {"kind": {"const": c.name}, "params": params_schema(family, c.name)}}
            for c in registries[family]]}

    props = schema["properties"]
    for field, family in (("backbone", "backbones"), ("predictor", "predictors"), ("teacher", "teachers")):
        props[field] = {**choice(family), "default": props[field].get("default")}
    props["masks"] = {**props["masks"], "items": choice("maskers"), "minItems": 1}
    runners = choice("runners")
    kinds = [*registries["runners"].names(), *TARGET_ALIASES]
    props["target"] = {"anyOf": [{"type": "string", "enum": kinds}, runners],
                       "description": props["target"].get("description", "")}
    for kind, section in RUNNER_SECTIONS.items():
        if kind in registries["runners"]:
            props[section] = {"anyOf": [params_schema("runners", kind), {"type": "null"}], "default": None,
                              "description": props[section].get("description", "")}
    data = defs["DataSpec"]
    data["properties"]["dataset"] = {**data["properties"]["dataset"], "enum": registries["datasets"].names()}
    default = JobSpec.model_fields["data"].annotation.model_fields["dataset"].default
    data["allOf"] = [
        {"if": {"required": ["dataset"], "properties": {"dataset": {"const": c.name}}},
         "then": {"properties": {"params": params_schema("datasets", c.name)}}} for c in registries["datasets"]
    ] + [{"if": {"not": {"required": ["dataset"]}},
          "then": {"properties": {"params": params_schema("datasets", default)}}}]
    schema["x-jepa-components"] = {
        family: {c.name: c.config.model_json_schema() for c in reg} for family, reg in registries.items()
    }
    return schema

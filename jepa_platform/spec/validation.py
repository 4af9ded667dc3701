"""Validation: the spec's structure, then each component's params with that component's own model
(filling defaults), then the constraints between fields; every problem is reported with its path."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from jepa_platform.errors import ConfigError, did_you_mean
from jepa_platform.plugins.manager import registry
from jepa_platform.plugins.registries import PluginError
from jepa_platform.spec.model import RUNNER_SECTIONS, JobSpec, SpecError
from jepa_platform.spec.stages import expand_stages, typed_like

PIPELINE = "x-pipeline"  # a travelling spec's resolved stages


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


def validate_spec(raw: dict[str, Any], source: str = "spec") -> JobSpec:
    """Validates structure, then each component's params with its own model (filling defaults);
    a pipeline's stages are expanded and validated the same way, errors prefixed `stages[i].`."""
    base_raw = {k: v for k, v in raw.items() if k != "stages"}
    spec = validate_one(base_raw, source)
    stages = raw.get("stages") or []
    if not stages:
        return spec
    spec._pipeline = expand_stages(base_raw, spec, stages, source, validate_one)
    spec.stages = [typed_like(stage, s.resolved()) for stage, s in zip(stages, spec._pipeline, strict=True)]
    return spec


def validate_one(raw: dict[str, Any], source: str, where: str = "") -> JobSpec:
    spec = structure(raw, source, where)
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
        raise SpecError.listing(source, problems)
    return spec


def cross_checks(spec: JobSpec) -> list[str]:
    """Constraints between fields: shapes that must divide, maskers that must build."""
    problems = []
    if spec.trains and spec.data.dataset == "video" and not spec.data.train:
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


def travelling(spec: JobSpec) -> dict[str, Any]:
    """The spec as it travels to the processes that run it (a detached job, a cluster's driver, a worker):
    resolved, and for a pipeline each stage resolved too (under `PIPELINE`), so that they read it back
    with `resolved_spec`, validating and building nothing again."""
    out = spec.resolved()
    if spec.stages:
        out[PIPELINE] = [s.resolved() for s in spec.pipeline()]
    return out


def resolved_spec(data: dict[str, Any], source: str = "resolved spec") -> JobSpec:
    """A spec validated where the job was submitted, as it travels (`travelling`, or one stage's
    `resolved()`): read back as it is, with no component looked up, no params re-checked and no masker
    built. A pipeline without its resolved stages (an older form) is validated."""
    data = dict(data)
    stages = data.pop(PIPELINE, None)
    if data.get("stages") and stages is None:
        return validate_spec(data, source)
    spec = structure(data, source)
    spec._pipeline = [structure(s, f"{source}, stage {s.get('name')}") for s in stages or []]
    return spec


def structure(data: dict[str, Any], source: str, where: str = "") -> JobSpec:
    """The spec's fields read by the model alone (no component looked up); errors prefixed with `where`."""
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError.listing(source, error_lines(e, where, JobSpec)) from None

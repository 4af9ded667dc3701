"""The spec's JSON Schema, for editors: each component's params checked by its own model, chosen by `kind`."""

from __future__ import annotations

from typing import Any

from jepa_platform.spec.model import RUNNER_SECTIONS, TARGET_ALIASES, JobSpec


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


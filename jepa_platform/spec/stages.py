"""Pipeline stages: each stage's overrides merged over the job's spec, `stage:NAME` references resolved
to earlier stages' checkpoints, and each stage validated like a spec of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jepa_platform.spec.model import JobSpec, SpecError, deep_merge

STAGE_REF = "stage:"


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
        return done[name].layout.checkpoints
    return node


def expand_stages(base_raw: dict[str, Any], base: JobSpec, stages: list[Any], source: str,
                  validate: Callable[[dict[str, Any], str, str], JobSpec]) -> list[JobSpec]:
    """The stages as specs of their own, in order, each validated by `validate(raw, source, where)`."""
    done: dict[str, JobSpec] = {}
    for i, stage in enumerate(stages):
        where = f"stages[{i}]"
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str):
            raise SpecError.listing(source, [f"{where}.name: every stage needs a name"])
        fixed = sorted({"name", "stages", "storage", "target", "kubernetes", "cluster"} & (stage.keys() - {"name"}))
        if fixed:
            raise SpecError.listing(source, [f"{where}: {', '.join(fixed)} can only be set for the whole job"])
        if stage["name"] in done:
            raise SpecError.listing(source, [f"{where}.name: stage {stage['name']!r} appears twice"])
        problems: list[str] = []
        overrides = resolve_stage_refs({k: v for k, v in stage.items() if k != "name"}, done, where, problems)
        if problems:
            raise SpecError.listing(source, problems)
        merged = deep_merge(base_raw, overrides)
        merged["name"] = stage["name"]
        merged["storage"] = {"output": base.job_dir}  # each stage gets its own folder inside the job's
        done[stage["name"]] = validate(merged, source, where)
    return list(done.values())


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


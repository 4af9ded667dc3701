"""The job spec: one YAML file describing a whole run, validated down to each component's params.

Each component is named by `kind` and its `params` are checked by that component's own pydantic model,
taken from the plugin registry, so a mistake is reported with its full path, e.g.
`masks[1].params.num_blocks: Input should be a valid integer`.

`model` (the spec's fields), `loading` (files and overrides), `validation`, `stages` (pipelines) and
`schema` (JSON Schema for editors); what other packages use is imported from here.
"""

from jepa_platform.spec.loading import apply_override, load_spec, parse_override, read_yaml
from jepa_platform.spec.model import (
    NAME,
    RUNNER_SECTIONS,
    TARGET_ALIASES,
    ClusterSpec,
    ComponentSpec,
    DataSpec,
    JobSpec,
    ProbeSpec,
    ResourcesSpec,
    SpecError,
    StorageSpec,
    absolute_local,
    deep_merge,
    multiblock,
)
from jepa_platform.spec.schema import json_schema
from jepa_platform.spec.stages import STAGE_REF
from jepa_platform.spec.validation import error_lines, format_loc, resolved_spec, travelling, validate_spec

__all__ = [
    "NAME", "RUNNER_SECTIONS", "STAGE_REF", "TARGET_ALIASES", "ClusterSpec", "ComponentSpec", "DataSpec", "JobSpec",
    "ProbeSpec", "ResourcesSpec", "SpecError", "StorageSpec", "absolute_local", "apply_override", "deep_merge",
    "error_lines", "format_loc", "json_schema", "load_spec", "multiblock", "parse_override", "read_yaml",
    "resolved_spec", "travelling", "validate_spec",
]

"""What a frozen evaluation runs: `ProbeSettings` (defined with the spec, `spec.probe`) completed from the
checkpoint's job."""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
import yaml

from jepa_platform.errors import ConfigError
from jepa_platform.layout import SPEC_FILE
from jepa_platform.spec.probe import ComponentChoice, ProbeSettings, validate_component

__all__ = ["ComponentChoice", "ProbeSettings", "resolve_settings"]

DEFAULT_CLIP = {"frames": 16, "stride": 4, "resolution": 224}


def checkpoint_job_spec(url: str) -> dict[str, Any] | None:
    """The resolved spec of the job that wrote checkpoint `url` (a job, checkpoints or step folder, or a
    state file), read from `spec.resolved.yaml` up to three folders above it; None when there is none."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
        path = path.rstrip("/")
        for _ in range(4):
            candidate = posixpath.join(path, SPEC_FILE)
            if fs.exists(candidate):
                return yaml.safe_load(fs.cat_file(candidate).decode())
            path = posixpath.dirname(path)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return None


def resolve_settings(settings: ProbeSettings, need_backbone: bool = True) -> ProbeSettings:
    """`settings` with the backbone and clip sizes filled in: given ones stay, missing ones come from the
    checkpoint's job spec, then from the defaults (16 frames, stride 4, 224 pixels). Without a backbone
    and a job spec to take it from, a ConfigError, unless `need_backbone` is False."""
    job = None if settings.random_init else checkpoint_job_spec(settings.checkpoint)
    update: dict[str, Any] = {}
    data = (job or {}).get("data") or {}
    for name, default in DEFAULT_CLIP.items():
        if getattr(settings, name) is None:
            update[name] = data.get(name, default)
    if settings.backbone is None and need_backbone:
        if not job or "backbone" not in job:
            if settings.random_init:
                why = "a randomly initialised encoder has no job to take it from"
            else:
                why = f"checkpoint {settings.checkpoint} has no {SPEC_FILE} {'with a backbone' if job else 'beside it'}"
            raise ConfigError(f"backbone: needed to build the encoder ({why}); give its kind and params")
        update["backbone"] = validate_component("backbones", ComponentChoice.model_validate(job["backbone"]))
    return settings.model_copy(update=update)

"""What a frozen evaluation runs: `ProbeSettings` (defined with the spec, `spec.probe`) completed from the
checkpoint: its job's spec, or the architecture its file states or its weights imply."""

from __future__ import annotations

from typing import Any, TypeVar

from jepa_platform.errors import ConfigError
from jepa_platform.layout import SPEC_FILE
from jepa_platform.spec.probe import ComponentChoice, EncoderSettings, ProbeSettings, validate_component
from jepa_platform.weights.load import EncoderSource, checkpoint_job_spec, encoder_source, stated_spec

__all__ = ["ComponentChoice", "EncoderSettings", "ProbeSettings", "resolve_settings"]

EncoderSettingsT = TypeVar("EncoderSettingsT", bound=EncoderSettings)  # a probe's or an embedding's
DEFAULT_CLIP = {"frames": 16, "stride": 4, "resolution": 224}


def resolve_settings(settings: EncoderSettingsT, need_backbone: bool = True, source: EncoderSource | None = None
                     ) -> EncoderSettingsT:
    """`settings` with the backbone and clip sizes filled in: given ones stay, missing ones come from the
    checkpoint's job spec, else from the architecture the checkpoint states or its weights imply (a Hugging
    Face folder, an export, an official file), then from the defaults (16 frames, stride 4, 224 pixels).
    Without a backbone to be had, a ConfigError, unless `need_backbone` is False. `source`: the checkpoint,
    already read (its shapes tell an official file's architecture), so that it is not read again."""
    job = None if settings.random_init else checkpoint_job_spec(settings.checkpoint)
    if job is None and not settings.random_init and settings.backbone is None:
        spec = stated_spec(settings.checkpoint, settings.key) or (
            source or encoder_source(settings.checkpoint, settings.key)).spec
        job = {"backbone": {"kind": spec.kind, "params": spec.params},
               "data": {"frames": spec.num_frames, "resolution": spec.img_size}}
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

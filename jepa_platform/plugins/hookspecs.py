"""The whole plugin API: one hook per component family, each handed a `register` callback.

A plugin module implements any of these with `@jepa_platform.plugins.hookimpl` and calls
`register(name, factory, config=ParamsModel, description=...)` once per component it provides. The
factory is called as `factory(params, **context)` with the validated params model and the context
named below, and returns an object that follows the family's protocol in `plugins.contracts`.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("jepa_platform")
hookimpl = pluggy.HookimplMarker("jepa_platform")


@hookspec
def jepa_register_backbones(register):
    """Video encoders: factory(params, img_size=, num_frames=) -> `contracts.Backbone`."""


@hookspec
def jepa_register_predictors(register):
    """Predictors: factory(params, embed_dim=, grid=, target_dim=, num_mask_tokens=) -> `contracts.Predictor`."""


@hookspec
def jepa_register_maskers(register):
    """Maskers: factory(params) -> `contracts.Masker`."""


@hookspec
def jepa_register_teachers(register):
    """Teachers: factory(params, student=, steps=, schedule_scale=) -> `contracts.Teacher` (optionally
    `OwnsPredictor`, `ReportsMetrics`)."""


@hookspec
def jepa_register_probes(register):
    """Frozen-evaluation probes: factory(params, embed_dim=, num_classes=) -> `contracts.Probe`."""


@hookspec
def jepa_register_datasets(register):
    """Datasets: factory(params, data=DataSpec, source=str, train=bool) -> `contracts.Dataset` (optionally
    `EpochAware`)."""


@hookspec
def jepa_register_runners(register):
    """Runners (where jobs run): factory(params) -> `contracts.Runner`."""


@hookspec
def jepa_register_loggers(register):
    """Run loggers (where metrics rows go besides metrics.jsonl): factory(params, url=, resume_step=) ->
    `contracts.RunLogger`."""

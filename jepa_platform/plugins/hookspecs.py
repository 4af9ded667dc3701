"""The whole plugin API: one hook per component family, each handed a `register` callback.

A plugin module implements any of these with `@jepa_platform.plugins.hookimpl` and calls
`register(name, factory, config=ParamsModel, description=...)` once per component it provides.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("jepa_platform")
hookimpl = pluggy.HookimplMarker("jepa_platform")


@hookspec
def jepa_register_backbones(register):
    """Register video encoders: factory(params, img_size=, num_frames=) -> encoder module."""


@hookspec
def jepa_register_predictors(register):
    """Register predictors: factory(params, embed_dim=, grid=, target_dim=, num_mask_tokens=) -> module."""


@hookspec
def jepa_register_maskers(register):
    """Register maskers: factory(params) -> Masker (called with batch_size, grid, generator)."""


@hookspec
def jepa_register_teachers(register):
    """Register teacher strategies: factory(params, student=, steps=, schedule_scale=) -> TeacherStrategy."""


@hookspec
def jepa_register_probes(register):
    """Register frozen-evaluation probes: factory(params, embed_dim=, num_classes=) -> module."""


@hookspec
def jepa_register_datasets(register):
    """Register datasets: factory(params, data=DataSpec, source=str, train=bool) -> torch Dataset."""


@hookspec
def jepa_register_runners(register):
    """Register runners (where jobs run): factory(params) -> Runner."""

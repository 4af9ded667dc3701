"""The built-in run logger (`tensorboard`): its factory and registration."""

from __future__ import annotations

from jepa_platform.plugins.hookspecs import hookimpl
from jepa_platform.plugins.registries import NoParams


def build_tensorboard(params: NoParams, *, url: str, resume_step: int | None = None):
    """TensorBoard scalars `train/<field>` of every numeric field, in a folder on any fsspec filesystem."""
    from jepa_platform.train.metrics import TensorBoardScalars

    return TensorBoardScalars(url, resume_step)


@hookimpl
def jepa_register_loggers(register):
    register("tensorboard", build_tensorboard, NoParams)

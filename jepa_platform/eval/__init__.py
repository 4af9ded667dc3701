"""Frozen evaluation: probes trained on a frozen encoder's tokens, grids of them in one pass over the data.

`run_probe(ProbeSettings(...))` is the whole job (what `jepa probe` and the `probe` stage run);
`probe_worker` is its Ray Train worker function. The pieces, one concept per module: `settings`,
`data` (labelled manifests, class folders, segments and views), `features` (the frozen encoder, cached
tokens), `grid` (probes side by side), `probing` (the training loop), `report` (metrics and outputs). The probes
themselves are models (`models/probes.py`), registered in `models/plugin.py`.

Names are imported on first use, so `jepa_platform.eval.settings` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ComponentChoice": "settings",
    "ProbeSettings": "settings",
    "resolve_settings": "settings",
    "LabelledItem": "data",
    "LabelledSet": "data",
    "ProbeDataset": "data",
    "read_labelled": "data",
    "FrozenEncoder": "features",
    "ProbeGrid": "grid",
    "build_grid": "grid",
    "probe_seed": "grid",
    "ProbeTrainer": "probing",
    "SplitMetrics": "probing",
    "ProbeReport": "report",
    "ProbeResult": "report",
    "build_encoder": "features",
    "probe_worker": "run",
    "run_probe": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__

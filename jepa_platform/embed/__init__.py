"""Embeddings: a frozen encoder's features, one pooled vector (and optionally every token) per video, written
as Parquet or .npy shards that an interrupted job keeps.

`run_embed(EmbedSettings(...))` is the whole job (what `jepa embed` and the `embed` stage run, on Ray Train
workers through `runners.worker.embed_worker`); `read_embeddings(url)` reads a finished folder back as numpy
arrays. One concept per module: `listing` (which videos, in which order), `shards` (the folder's files),
`run` (the job).

Names are imported on first use, so `jepa_platform.embed.shards` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VideoList": "listing",
    "list_videos": "listing",
    "Embeddings": "shards",
    "read_embeddings": "shards",
    "EmbedReport": "run",
    "check_embed": "shards",
    "run_embed": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__

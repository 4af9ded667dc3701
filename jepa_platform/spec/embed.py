"""The settings of an embedding job (`EmbedSettings`): the single source of their defaults for the CLI
(`jepa embed`), a spec's `embed` stage and the library (`embed.run_embed`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from jepa_platform.spec.probe import EncoderSettings
from jepa_platform.storage import absolute_local

# What the vectors depend on: an output written with other values of these is another set of embeddings.
# (batch_size, workers and the output's own URL change how it is made, not what it holds.)
OUTPUT_FIELDS = ("checkpoint", "key", "backbone", "data", "format", "tokens", "dtype", "shard_size", "frames",
                 "stride", "resolution", "num_segments", "image_frames", "layers", "precision", "seed")


class EmbedSettings(EncoderSettings):
    """Features of a frozen encoder, one row per video, written as shards that a rerun keeps."""

    data: str = Field(description="Videos to embed: a folder (searched recursively for videos), or a list file of "
                      "one `path` or `path label` per line, or JSONL with `path` and an optional `label`; any "
                      "fsspec URL; relative paths are taken from the list's folder.")
    output: str | None = Field(None, description="Output folder, any fsspec URL; default: the stage's own folder.")
    format: Literal["parquet", "npy"] = Field(
        "parquet", description="parquet: one file per shard with columns path, label (when listed), embedding "
        "(and tokens); npy: shard-N.npy [videos, dim] (and shard-N.tokens.npy), paths in shard-N.json.")
    tokens: bool = Field(False, description="Also write each video's tokens [segments x tokens per clip, dim] "
                         "beside the pooled vector (large: about 6 MB per video for ViT-L at 16x256^2).")
    dtype: Literal["float32", "float16"] = Field("float32", description="Number type of the stored features.")
    shard_size: int = Field(256, ge=1, description="Videos per shard: the unit of resuming and of work per "
                            "worker; keep it small (e.g. 16) with tokens.")
    batch_size: int = Field(8, ge=1, description="Videos per batch per worker.")

    _paths = field_validator("data", "output")(classmethod(lambda cls, v: absolute_local(v)))

    def fingerprint(self) -> dict[str, Any]:
        """The settings the stored features depend on (`OUTPUT_FIELDS`), as JSON."""
        dumped = self.model_dump(mode="json")
        return {name: dumped[name] for name in OUTPUT_FIELDS}

"""An embeddings folder: `embeddings.json` (what it holds, how it was made), then per shard its features
(`shard-00000.parquet`, or `shard-00000.npy` and `shard-00000.tokens.npy`) and last `shard-00000.json`,
the marker that the shard is complete (its paths, labels and the videos it skipped, with why).

Every file is written whole or not at all, so a killed job leaves finished shards that a rerun keeps and
no half-written one that a reader could take for finished.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from jepa_platform.embed.listing import Unreadable, VideoList, list_videos
from jepa_platform.errors import ConfigError, DataError
from jepa_platform.layout import RAY_TRAIN_DIR, SPEC_FILE
from jepa_platform.spec.embed import EmbedSettings
from jepa_platform.storage import file_atomic, join, write_bytes_atomic
from jepa_platform.weights.load import weights_file

__all__ = ["INDEX_FILE", "Embeddings", "ShardWriter", "check_embed", "check_output", "done_shards", "read_embeddings",
           "read_index", "read_marker", "shard_name", "write_index"]

INDEX_FILE = "embeddings.json"
FORMAT_VERSION = 1
JOB_FILES = {RAY_TRAIN_DIR, SPEC_FILE}  # what the job running the embedding may leave in its own folder


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def read_json(url: str) -> dict[str, Any] | None:
    fs, path = fsspec.core.url_to_fs(url)
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None


def read_index(output: str) -> dict[str, Any] | None:
    return read_json(join(output, INDEX_FILE))


def read_marker(output: str, index: int) -> dict[str, Any] | None:
    """Shard `index`'s marker, or None while the shard is not complete."""
    return read_json(join(output, shard_name(index) + ".json"))


def check_output(output: str, fingerprint: dict[str, Any], videos: VideoList, weights: str | None = None
                 ) -> dict[str, Any] | None:
    """Refuses (ConfigError) an output that holds anything but these embeddings: other settings, another
    listing of videos, other weights, or files that are not embeddings. Returns its index when it holds
    these (to resume)."""
    try:
        fs, path = fsspec.core.url_to_fs(output)
        index = read_index(output)
        names = [] if index or not fs.exists(path) else [posixpath.basename(p.rstrip("/")) for p in fs.ls(path)]
    except NotADirectoryError:
        raise ConfigError(f"output {output} cannot be written (Not a directory)") from None
    except OSError as e:
        raise Unreadable(f"output {output} cannot be read ({type(e).__name__}: {e})") from None
    if index is None:
        check_writable(output)
        others = sorted(n for n in names if n not in JOB_FILES and ".tmp-" not in n)
        if fs.exists(path) and not fs.isdir(path):
            raise ConfigError(f"output {output} is a file; give a folder")
        if others:
            raise ConfigError(f"output {output} exists and holds other files ({', '.join(others[:3])}"
                              f"{', ...' if len(others) > 3 else ''}); give a new or empty folder")
        return None
    changed = [f"{k}: {json.dumps(index['settings'].get(k))} there, {json.dumps(v)} now"
               for k, v in fingerprint.items() if index["settings"].get(k) != v]
    if changed:
        raise ConfigError(f"output {output} holds embeddings made with other settings (" + "; ".join(changed)
                          + "); give another output, or the same settings to resume it")
    if weights != PENDING and index.get("weights") != weights:
        raise ConfigError(f"output {output} holds embeddings made with the weights in {index.get('weights')}; "
                          f"{fingerprint['checkpoint']} now gives {weights} (it trained on since): give another "
                          f"output")
    if index["listing"] != videos.digest():
        raise ConfigError(f"output {output} holds embeddings of another list of videos ({index['videos']} videos "
                          f"there, {len(videos.paths)} in {videos.source} now); give another output")
    return index


PENDING = "(written by an earlier stage)"  # weights a pipeline's earlier stage has yet to write


def check_embed(settings: EmbedSettings, pending_weights: bool = False) -> tuple[VideoList, str | None]:
    """The videos to embed and the weights file they are embedded with (`pinned_weights`), once the output
    is known to hold nothing else (ConfigError otherwise): what is checked before a job is sent anywhere,
    and again where it runs. With `pending_weights` (an earlier stage of the pipeline writes them), weights
    that are not there yet are not checked."""
    if settings.output is None:
        raise ConfigError("embed: output is not set (a folder or URL to write the embeddings to)")
    videos = list_videos(settings.data)
    try:
        weights = pinned_weights(settings)
    except ConfigError:
        if not pending_weights:
            raise
        weights = PENDING
    check_output(settings.output, settings.fingerprint(), videos, weights)
    return videos, weights


def pinned_weights(settings: EmbedSettings) -> str | None:
    """The one file the encoder's weights come from (a run's folder names its newest checkpoint), pinned in
    the index: a run that trained on since gives other features under the same `checkpoint`."""
    if settings.random_init:
        return None
    file = weights_file(settings.checkpoint)
    try:
        fs, path = fsspec.core.url_to_fs(file)
        found = fs.exists(path)
    except Exception as e:  # noqa: BLE001 - any filesystem's failure to reach the store
        raise Unreadable(f"checkpoint {settings.checkpoint} cannot be read ({type(e).__name__}: {e})") from None
    if not found:
        raise ConfigError(f"checkpoint {settings.checkpoint}: no such file or folder")
    return file


def check_writable(output: str) -> None:
    """A local output must be creatable: its nearest existing folder writable (an object store says so only
    when written to; the job then fails naming it)."""
    if "://" in output and not output.startswith("file://"):
        return
    path = Path(output.removeprefix("file://"))
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"output {output} cannot be written (Not a directory: {existing})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output {output} cannot be written (Permission denied: {existing})")


def write_index(output: str, fingerprint: dict[str, Any], videos: VideoList, shard_size: int, fmt: str,
                weights: str | None, **state: Any) -> None:
    index = {"format_version": FORMAT_VERSION, "format": fmt, "settings": fingerprint, "weights": weights,
             "source": videos.source,
             "videos": len(videos.paths), "listing": videos.digest(), "shard_size": shard_size,
             "shards": videos.num_shards(shard_size), "complete": False, **state}
    try:
        write_bytes_atomic(join(output, INDEX_FILE), json.dumps(index, indent=1).encode())
    except OSError as e:
        raise ConfigError(f"output {output} cannot be written ({e.strerror or type(e).__name__})") from None


def done_shards(output: str) -> dict[int, dict[str, Any]]:
    """The complete shards' markers, by shard index."""
    fs, path = fsspec.core.url_to_fs(output)
    if not fs.exists(path):
        return {}
    found = {}
    for entry in fs.ls(path, detail=False):
        name = posixpath.basename(entry.rstrip("/"))
        if name.startswith("shard-") and name.endswith(".json"):
            found[int(name[len("shard-"):-len(".json")])] = json.loads(fs.cat_file(entry))
    return found


class ShardWriter:
    """One shard's features, batch by batch, into a local file that becomes the shard once it is closed;
    the marker is written last. Tokens are streamed to disk, so a shard need not fit in memory."""

    def __init__(self, output: str, index: int, fmt: str, dtype: str, with_labels: bool):
        self.output, self.index, self.fmt, self.dtype = output, index, fmt, np.dtype(dtype)
        self.with_labels = with_labels
        self.paths: list[str] = []
        self.labels: list[int] = []
        self.pooled: list[np.ndarray] = []
        self.token_shape: tuple[int, int] | None = None
        self.skipped: list[dict[str, str]] = []
        self._parquet = None
        self._tokens = None  # npy: the tokens' raw bytes, streamed to a local scratch file
        self._files = contextlib.ExitStack()  # the shard's files, made final on close

    def url(self, suffix: str) -> str:
        return join(self.output, shard_name(self.index) + suffix)

    def add(self, paths: list[str], labels: list[int], pooled: np.ndarray, tokens: np.ndarray | None) -> None:
        pooled = pooled.astype(self.dtype, copy=False)
        self.paths += paths
        self.labels += labels
        if tokens is not None:
            tokens = tokens.astype(self.dtype, copy=False)
            self.token_shape = tuple(tokens.shape[1:])
        if self.fmt == "parquet":
            self._write_parquet(paths, labels, pooled, tokens)
        else:
            self.pooled.append(pooled)
            if tokens is not None:
                if self._tokens is None:
                    handle, self._raw = tempfile.mkstemp(suffix=".tokens.raw")
                    self._tokens = os.fdopen(handle, "wb")
                    self._files.callback(os.remove, self._raw)
                self._tokens.write(np.ascontiguousarray(tokens).tobytes())

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": path, "reason": reason})

    def _write_parquet(self, paths, labels, pooled, tokens) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        value = pa.from_numpy_dtype(self.dtype)
        columns = {"path": pa.array(paths, pa.string())}
        if self.with_labels:
            columns["label"] = pa.array(labels, pa.int64())
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(pooled.reshape(-1), value), pooled.shape[1])
        if tokens is not None:
            n, length, dim = tokens.shape
            inner = pa.FixedSizeListArray.from_arrays(pa.array(tokens.reshape(-1), value), dim)
            columns["tokens"] = pa.FixedSizeListArray.from_arrays(inner, length)
        table = pa.table(columns)
        if self._parquet is None:
            local = self._files.enter_context(file_atomic(self.url(".parquet")))
            self._parquet = pq.ParquetWriter(local, table.schema)
        self._parquet.write_table(table)

    def close(self) -> dict[str, Any]:
        """Makes the shard's files final, then writes its marker; returns the marker."""
        if self.fmt == "parquet" and self._parquet is None:  # every video skipped: an empty shard
            self._write_parquet([], [], np.zeros((0, 1), self.dtype), None)
        if self._parquet is not None:
            self._parquet.close()
        if self.fmt == "npy":
            dim = self.pooled[0].shape[1] if self.pooled else 0
            vectors = np.concatenate(self.pooled) if self.pooled else np.zeros((0, dim), self.dtype)
            buffer = io.BytesIO()
            np.save(buffer, vectors)
            write_bytes_atomic(self.url(".npy"), buffer.getvalue())
            if self._tokens is not None:
                self._finish_tokens()
        self._files.close()
        marker = {"shard": self.index, "paths": self.paths, "labels": self.labels if self.with_labels else None,
                  "skipped": self.skipped, "token_shape": self.token_shape}
        write_bytes_atomic(self.url(".json"), json.dumps(marker).encode())
        return marker

    def _finish_tokens(self) -> None:
        """The streamed tokens as a .npy: its header, then the raw bytes copied through."""
        self._tokens.close()
        shape = (len(self.paths), *self.token_shape)
        local = self._files.enter_context(file_atomic(self.url(".tokens.npy")))
        with open(local, "wb") as f, open(self._raw, "rb") as src:
            header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_2_0(f, header)
            while chunk := src.read(1 << 24):
                f.write(chunk)

    def abort(self) -> None:
        """Drops what was written of the shard (its scratch files); the shard stays undone."""
        if self._parquet is not None:
            self._parquet.close()
        if self._tokens is not None:
            self._tokens.close()
        error = RuntimeError("shard aborted")
        self._files.__exit__(RuntimeError, error, None)


@dataclass
class Embeddings:
    """Everything an embeddings folder holds, in listing order (skipped videos left out)."""

    paths: list[str]
    labels: np.ndarray | None  # [N] int64, when the list gave labels
    vectors: np.ndarray  # [N, D]: each video's tokens averaged
    tokens: np.ndarray | None  # [N, L, D]: segments x tokens per clip, when written and asked for
    skipped: list[dict[str, str]]
    index: dict[str, Any]


def read_embeddings(output: str, tokens: bool = False, partial: bool = False) -> Embeddings:
    """The embeddings at `output` (any fsspec URL), as numpy arrays. An unfinished folder is refused unless
    `partial` (then its complete shards are read)."""
    index = read_index(output)
    if index is None:
        raise DataError(f"{output}: no {INDEX_FILE}, not an embeddings folder")
    if not index["complete"] and not partial:
        raise DataError(f"{output}: unfinished ({len(done_shards(output))} of {index['shards']} shards); run "
                        f"the same embedding again to finish it, or read it with partial=True")
    markers = done_shards(output)
    paths, labels, vectors, token_arrays, skipped = [], [], [], [], []
    for k in sorted(markers):
        marker = markers[k]
        paths += marker["paths"]
        labels += marker["labels"] or []
        skipped += marker["skipped"]
        if not marker["paths"]:
            continue
        if index["format"] == "parquet":
            table = _read_parquet(join(output, shard_name(k) + ".parquet"))
            column = table.column("embedding").combine_chunks()
            vectors.append(column.flatten().to_numpy().reshape(len(column), -1))
            if tokens:
                nested = table.column("tokens").combine_chunks()
                n, (length, dim) = len(nested), marker["token_shape"]
                token_arrays.append(nested.flatten().flatten().to_numpy().reshape(n, length, dim))
        else:
            vectors.append(_read_npy(join(output, shard_name(k) + ".npy")))
            if tokens:
                token_arrays.append(_read_npy(join(output, shard_name(k) + ".tokens.npy")))
    if tokens and not index["settings"]["tokens"]:
        raise DataError(f"{output}: written without tokens (settings tokens: false)")
    dim = vectors[0].shape[1] if vectors else 0
    return Embeddings(
        paths, np.asarray(labels, dtype=np.int64) if labels else None,
        np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
        np.concatenate(token_arrays) if token_arrays else None, skipped, index,
    )


def _read_parquet(url: str):
    import pyarrow.parquet as pq

    with fsspec.open(url, "rb") as f:
        return pq.read_table(f)


def _read_npy(url: str) -> np.ndarray:
    with fsspec.open(url, "rb") as f:
        return np.load(io.BytesIO(f.read()))

"""Atomic checkpoints on any fsspec filesystem.

A checkpoint file is never visible half-written: on a local disk it is written to a temporary name
and renamed; on an object store a single PUT is already all-or-nothing. Either way, the `latest`
pointer is written only after the checkpoint itself, so a reader that follows it always finds a
complete file, and a crash mid-save leaves the previous checkpoint in charge.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem

from jepa_platform.errors import TrainingError

LATEST = "latest"


def join(base: str, *parts: str) -> str:
    """Join URL path parts, keeping the scheme of `base` (s3://b/x + y -> s3://b/x/y)."""
    return posixpath.join(base.rstrip("/"), *parts)


def write_bytes_atomic(url: str, data: bytes) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


STATE = "state.pt"


class CheckpointStore:
    """Checkpoints as `{root}/step_{n:08d}/state.pt` plus a `latest` pointer; keeps the newest `keep`.

    One folder per checkpoint, so a runner can hand the folder to Ray Train as a registered checkpoint.
    """

    def __init__(self, root: str, keep: int = 2):
        self.root = root.rstrip("/")
        self.keep = max(1, keep)

    def save(self, step: int, state: dict[str, Any]) -> str:
        buf = io.BytesIO()
        torch.save(state, buf)
        name = f"step_{step:08d}"
        write_bytes_atomic(join(self.root, name, STATE), buf.getvalue())
        write_bytes_atomic(join(self.root, LATEST), name.encode())
        self._prune(current=name)
        return join(self.root, name)

    def latest(self) -> str | None:
        """URL of the newest complete checkpoint folder, or None when there is none."""
        fs, path = fsspec.core.url_to_fs(join(self.root, LATEST))
        if not fs.exists(path):
            return None
        name = fs.cat_file(path).decode().strip()
        return join(self.root, name)

    def load(self, url: str | None = None, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        url = url or self.latest()
        if url is None:
            return None
        if not url.endswith(".pt"):
            url = join(url, STATE)
        try:
            with fsspec.open(url, "rb") as f:
                data = f.read()
        except FileNotFoundError as e:
            raise TrainingError(f"checkpoint {url} is missing (the 'latest' pointer names it)") from e
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)

    def _prune(self, current: str) -> None:
        fs, root = fsspec.core.url_to_fs(self.root)
        names = sorted(
            posixpath.basename(p.rstrip("/"))
            for p in fs.ls(root, detail=False)
            if posixpath.basename(p.rstrip("/")).startswith("step_")
        )
        for name in names[: -self.keep]:
            if name != current:
                fs.rm(posixpath.join(root, name), recursive=True)

"""Atomic checkpoints on any fsspec filesystem.

A checkpoint file is never visible half-written: on a local disk it is written to a temporary name
and renamed; on an object store a single PUT is already all-or-nothing. Either way, the `latest`
pointer is written only after the checkpoint itself, so a reader that follows it always finds a
complete file, and a crash mid-save leaves the previous checkpoint in charge.
"""

from __future__ import annotations

import io
import logging
import posixpath
from typing import Any

import fsspec
import torch

from jepa_platform.errors import TrainingError
from jepa_platform.storage import join, write_bytes_atomic

LATEST = "latest"
log = logging.getLogger(__name__)


STATE = "state.pt"


def step_of(url: str) -> int | None:
    """The step of a `step_N` folder, or of the state file in one; None for any other path."""
    parts = url.rstrip("/").split("/")
    name = parts[-2] if parts[-1] == STATE and len(parts) > 1 else parts[-1]
    return int(name[5:]) if name.startswith("step_") and name[5:].isdigit() else None


class CheckpointStore:
    """Checkpoints as `{root}/step_{n:08d}/state.pt` plus a `latest` pointer; keeps the newest `keep`.

    This store is the run's only checkpoint bookkeeping. Runners do not register its folders with
    Ray Train (or anything else), because a second list goes stale the moment `_prune` deletes a
    folder, and a stale list is what made pruned runs impossible to resume.
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
        """URL of the newest complete checkpoint folder, or None when there is none.

        The pointer is trusted when the folder it names holds a state file; otherwise (a kill between
        the state write and the pointer write, a folder removed by hand) the newest complete folder wins.
        """
        fs, root = fsspec.core.url_to_fs(self.root)
        pointer = posixpath.join(root, LATEST)
        if fs.exists(pointer):
            name = fs.cat_file(pointer).decode().strip()
            if name.startswith("step_") and fs.exists(posixpath.join(root, name, STATE)):
                return join(self.root, name)
        complete = [name for name in self._steps(fs, root) if fs.exists(posixpath.join(root, name, STATE))]
        return join(self.root, complete[-1]) if complete else None

    def clean(self) -> list[str]:
        """Remove what an interrupted save left: temporary files and step folders without a state file.

        Call it only while nothing else writes to the store (at the start of a run, on rank 0).
        Returns the removed paths.
        """
        fs, root = fsspec.core.url_to_fs(self.root)
        if not fs.exists(root):
            return []
        removed = []
        for name in self._steps(fs, root):
            folder = posixpath.join(root, name)
            if not fs.exists(posixpath.join(folder, STATE)):
                fs.rm(folder, recursive=True)
                removed.append(folder)
                continue
            for path in fs.ls(folder, detail=False):
                if ".tmp-" in posixpath.basename(path):
                    fs.rm(path)
                    removed.append(path)
        for path in fs.ls(root, detail=False):
            if ".tmp-" in posixpath.basename(path.rstrip("/")):
                fs.rm(path)
                removed.append(path)
        return removed

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

    def load_newest_readable(self, map_location: str | torch.device = "cpu") -> tuple[str, dict[str, Any]] | None:
        """(folder URL, state) of the newest checkpoint that can be read, or None when there is none.

        A checkpoint that cannot be read (a disk that lost it, a file edited by hand) is passed over with a
        warning, and the next older one is tried; when none can be read, the run must not start afresh on
        top of them, so this raises, naming the folder. Nothing is deleted either way.
        """
        fs, root = fsspec.core.url_to_fs(self.root)
        newest = self.latest()
        if newest is None:
            return None
        complete = [n for n in reversed(self._steps(fs, root)) if fs.exists(posixpath.join(root, n, STATE))]
        older = [join(self.root, n) for n in complete]
        failures = []
        for url in [newest, *(u for u in older if u != newest)]:
            try:
                state = self.load(url, map_location)
            except Exception as e:  # noqa: BLE001 - any way a file can fail to unpickle
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
                failures.append(f"{url.rsplit('/', 1)[-1]} ({reason})")
                log.warning("checkpoint %s cannot be read (%s); trying the one before it", url, reason)
                continue
            if not isinstance(state, dict) or "progress" not in state:
                failures.append(f"{url.rsplit('/', 1)[-1]} (not a training checkpoint of this platform)")
                continue
            return url, state
        raise TrainingError(
            f"{self.root}: none of its {len(failures)} checkpoints can be read: {'; '.join(failures)}. Nothing "
            f"was deleted. Submit under a new name to start afresh, or put back a readable checkpoint."
        )

    @staticmethod
    def _steps(fs, root: str) -> list[str]:
        """Names of the step folders under `root`, oldest first (the zero padding sorts them)."""
        if not fs.exists(root):
            return []
        return sorted(
            name for name in (posixpath.basename(p.rstrip("/")) for p in fs.ls(root, detail=False))
            if name.startswith("step_") and ".tmp-" not in name
        )

    def _prune(self, current: str) -> None:
        fs, root = fsspec.core.url_to_fs(self.root)
        names = self._steps(fs, root)
        for name in names[: -self.keep]:
            if name != current:
                fs.rm(posixpath.join(root, name), recursive=True)

"""metrics.jsonl: one JSON object per logged step, on any fsspec filesystem."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from jepa_platform.plugins.contracts import RunLogger
from jepa_platform.storage import write_bytes_atomic

log = logging.getLogger(__name__)


class MetricsLog:
    """Appends on a local disk; object stores cannot append, so there the whole file is rewritten on flush.

    On resume, rows past the resumed step are dropped so the file reads as one uninterrupted run.
    Each row also goes to every run logger (`plugins.contracts.RunLogger`); `tensorboard_dir` adds the
    TensorBoard one.
    """

    def __init__(self, url: str, resume_step: int | None = None, tensorboard_dir: str | None = None,
                 loggers: Sequence[RunLogger] = ()):
        self.url = url
        self.loggers = list(loggers)
        if tensorboard_dir:
            self.loggers.append(TensorBoardScalars(tensorboard_dir, resume_step))
        self.fs, self.path = fsspec.core.url_to_fs(url)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.rows: list[str] = []
        if self.fs.exists(self.path):
            parsed, torn = parse_lines(self.fs.cat_file(self.path).decode(errors="replace"))
            if torn:
                log.warning("%s: dropped %d unreadable line(s), what a run killed mid-append leaves: %s",
                            url, len(torn), "; ".join(repr(t[:60]) for t in torn))
            self.rows = [line for line, row in parsed if row.get("step", 0) <= (resume_step or 0)]
            write_bytes_atomic(url, "".join(r + "\n" for r in self.rows).encode())

    def log(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, sort_keys=True)
        self.rows.append(line)
        if self.local:
            self.fs.makedirs(self.fs._parent(self.path), exist_ok=True)
            with open(self.path, "a") as f:
                f.write(line + "\n")
        for logger in self.loggers:
            logger.log(row)

    def flush(self) -> None:
        for logger in self.loggers:
            logger.flush()
        if not self.local:
            write_bytes_atomic(self.url, "".join(r + "\n" for r in self.rows).encode())


class TensorBoardScalars:
    """A `RunLogger`: TensorBoard scalars `train/<field>` of each numeric field of a row, in a folder on any fs.

    TensorBoard's writer only writes local files, so for an object store the event file is written in a
    temporary folder and uploaded whole on each flush (scalar events are small). A resumed run starts a new
    event file whose purge step makes TensorBoard drop the previous files' events past the resumed step.
    """

    def __init__(self, url: str, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.url = url.rstrip("/")
        fs, path = fsspec.core.url_to_fs(url)
        self.staging = None if isinstance(fs, LocalFileSystem) else tempfile.TemporaryDirectory(prefix="jepa-tb-")
        self.writer = SummaryWriter(self.staging.name if self.staging else path, purge_step=(resume_step or 0) + 1)

    def log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "step" and isinstance(value, int | float):
                self.writer.add_scalar(f"train/{key}", value, global_step=row.get("step"))

    def flush(self) -> None:
        self.writer.flush()
        if self.staging:
            for local in Path(self.staging.name).iterdir():
                write_bytes_atomic(f"{self.url}/{local.name}", local.read_bytes())


def parse_lines(text: str) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """([(line, row)], [unreadable lines]): a line cut short by a kill (or being appended right now) is
    not a row."""
    parsed, torn = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            torn.append(line)
            continue
        if isinstance(row, dict):
            parsed.append((line, row))
        else:
            torn.append(line)
    return parsed, torn


def read_metrics(url: str) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; unreadable lines (a torn last line) are left out."""
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        return []
    return [row for _, row in parse_lines(fs.cat_file(path).decode(errors="replace"))[0]]

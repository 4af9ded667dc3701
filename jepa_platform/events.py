"""One channel for what a running job says: typed events, one serialisation, one reader.

The training loop emits its metrics rows as events (`Trainer.emit`: metrics.jsonl, TensorBoard and the
runner's sink are fed from them); the job driver adds stage events, the error that ended a job and `done`,
and writes each as one log line, `jepa-event {"v": 1, "type": ..., ...}`. Every follower (the terminal,
`jepa logs`, the job store's log, the Ray and Kubernetes log followers) reads lines with `EventReader`;
lines that are not events (a library's output, Ray's own log) pass through as text. The text lines of
drivers before this channel (`step=10 loss=...`, `stage NAME: EVENT`, `error: ...`) are still read. An
event of a newer version or an unknown type, or a torn line, is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

VERSION = 1
PREFIX = "jepa-event "
LEGACY_ERROR = "error: "
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """A metrics row: `step` and named numbers. A row of `phase` alone names the start-up phase a job is in
    ("building the model", "waiting for the first batch"), until its first step's row."""

    values: dict[str, Any]


@dataclass(frozen=True)
class Stage:
    """A pipeline stage `starting`, `resuming` (at a step) or `skipped`."""

    name: str
    event: str
    step: int | None = None


@dataclass(frozen=True)
class Notice:
    """A warning the job wants its follower to see."""

    message: str


@dataclass(frozen=True)
class Error:
    """What ended the job, whole (a multi-line message stays one event)."""

    message: str


@dataclass(frozen=True)
class Done:
    name: str
    job_dir: str


Event = Row | Stage | Notice | Error | Done
TYPES: dict[str, type] = {"row": Row, "stage": Stage, "warning": Notice, "error": Error, "done": Done}
NAMES = {cls: name for name, cls in TYPES.items()}


def encode(event: Event) -> str:
    """The event as one log line, with the time it was said (`t`, seconds since the epoch)."""
    fields = {"v": VERSION, "type": NAMES[type(event)], "t": round(time.time(), 3), **asdict(event)}
    return PREFIX + json.dumps(fields, default=str)


def timestamp(seconds: float | None) -> str:
    """`2026-12-07 02:30:01` (local time) for an event's time; empty when it has none (an older driver's)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds is not None else ""


def render(event: Event) -> str:
    """The event as people read it (the terminal, `jepa logs`)."""
    if isinstance(event, Row):
        return f"phase: {event.values['phase']}" if set(event.values) == {"phase"} else format_row(event.values)
    if isinstance(event, Stage):
        return format_stage_event(event.name, event.event, event.step)
    if isinstance(event, Done):
        return f"done {event.name}: outputs in {event.job_dir}"
    prefix = "warning" if isinstance(event, Notice) else "error"
    return "\n".join(f"{prefix}: {line}" for line in event.message.splitlines() or [""])


@dataclass
class EventReader:
    """Reads a log line by line: `feed` gives the line's event, or None for plain text; the reader keeps
    the last step and the last error seen."""

    last_step: int | None = None
    last_error: str | None = None
    last_time: float | None = None  # when the last event read was said
    skipped: int = 0
    _legacy_error: list[str] = field(default_factory=list)
    _in_legacy_error: bool = False

    @classmethod
    def read(cls, text: str) -> EventReader:
        """A reader that has read a whole log (for its last step and last error)."""
        reader = cls()
        for line in text.splitlines():
            reader.feed(line)
        return reader

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\n")
        event = self._decode(line)
        if isinstance(event, Row) and isinstance(event.values.get("step"), int):
            self.last_step = event.values["step"]
        elif isinstance(event, Error):
            self.last_error = event.message
        return event

    def _decode(self, line: str) -> Event | None:
        if line.startswith(PREFIX):
            self._in_legacy_error = False
            return self._event(line[len(PREFIX):])
        if line.startswith(LEGACY_ERROR):  # an older driver: one `error: ` line per line of the message
            if not self._in_legacy_error:
                self._legacy_error = []
            self._legacy_error.append(line[len(LEGACY_ERROR):].rstrip())
            self._in_legacy_error = True
            return Error("\n".join(self._legacy_error).strip())
        self._in_legacy_error = False
        row = parse_row(line)
        if row is not None:
            return Row(row)
        stage = parse_stage_event(line)
        return Stage(*stage) if stage else None

    def _event(self, text: str) -> Event | None:
        try:
            data = json.loads(text)
            kind = TYPES.get(data.pop("type", None))
            version = data.pop("v", None)
            said = data.pop("t", None)
            self.last_time = float(said) if isinstance(said, int | float) else None
            if kind is None or not isinstance(version, int) or version > VERSION:
                raise ValueError(f"an event this version cannot read (v{version})")
            return kind(**data)
        except (ValueError, TypeError, AttributeError) as e:  # torn, newer, or from another program
            self.skipped += 1
            log.warning("skipped a job event that could not be read (%s): %s", e, text[:120])
            return None


# -- the text forms people read (and drivers before the channel wrote) ----------------------------------
def format_row(row: dict[str, Any]) -> str:
    """One log line: `step=10 loss=0.51234 ...`."""
    return " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


_STAGE_EVENT = re.compile(r"^stage (?P<name>\S+): (?P<event>starting|resuming|skipped)(?: at step (?P<step>\d+))?$")


def format_stage_event(name: str, event: str, step: int | None) -> str:
    """One log line for a pipeline stage `starting`, `resuming` (at a step) or `skipped`."""
    return f"stage {name}: {event}" + (f" at step {step}" if step else "")


def parse_stage_event(line: str) -> tuple[str, str, int | None] | None:
    """(stage name, event, step) back from its `format_stage_event` line; None for any other line."""
    match = _STAGE_EVENT.match(line.strip())
    if match is None:
        return None
    return match["name"], match["event"], int(match["step"]) if match["step"] else None


def parse_row(line: str) -> dict[str, Any] | None:
    """A metrics row back from its `format_row` line (fields in any order); None for any other line."""
    fields = line.split()
    if not any(f.startswith("step=") for f in fields) or not all("=" in f for f in fields):
        return None
    row: dict[str, Any] = {}
    for f in fields:
        key, value = f.split("=", 1)
        for cast in (int, float):
            try:
                row[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            row[key] = value
    return row if isinstance(row.get("step"), int) else None

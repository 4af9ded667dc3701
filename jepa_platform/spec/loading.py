"""Loading: the spec file (any fsspec URL) and `KEY=VALUE` overrides from the command line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fsspec
import yaml

from jepa_platform.spec.model import JobSpec, SpecError
from jepa_platform.spec.validation import format_loc, validate_spec


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """`a.b[1].c=value` -> (["a", "b", 1, "c"], value); `[*]` (every element) stays "*". Lists and
    mappings are YAML; scalars stay strings for the schema to type (so `name=007` stays a string and
    `steps=10` becomes an int; a stage's overrides are typed by the stage's schema the same way)."""
    if "=" not in text:
        raise SpecError(f"override {text!r}: expected KEY=VALUE, e.g. optim.steps=100")
    key, raw = text.split("=", 1)
    path: list[str | int] = []
    for part in re.split(r"\.|\[(\d+|\*)\]", key.strip()):
        if part:
            path.append(int(part) if part.isdigit() else part)
    if not path:
        raise SpecError(f"override {text!r}: empty key")
    value: Any = raw
    if raw.strip() in ("null", "~", "None"):
        value = None
    elif raw.strip()[:1] in "[{":
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise SpecError(f"override {text!r}: value is not valid YAML: {e}") from None
    return path, value


def apply_override(raw: dict[str, Any], text: str) -> None:
    """Sets one `KEY=VALUE` in the raw spec; `stages[*].KEY=VALUE` sets it in every stage."""
    path, value = parse_override(text)
    set_path(raw, path, value, text)


def set_path(node: Any, path: list[str | int], value: Any, text: str, done: tuple[Any, ...] = ()) -> None:
    part, rest = path[0], path[1:]
    if part == "*":
        if not isinstance(node, list) or not node:
            raise SpecError(f"override {text!r}: {format_loc(done) if done else 'the spec'} has no elements "
                            "for [*] to set")
        for i, element in enumerate(node):
            set_path(element, rest, value, text, (*done, i))
        return
    if isinstance(node, list):
        return set_element(node, path, value, text, done)
    if not isinstance(node, dict):
        raise SpecError(f"override {text!r}: {format_loc(done)} is a value, not a mapping")
    if not rest:
        node[part] = value
        return
    if part not in node or node[part] is None:
        if part == "masks":  # default lists must be materialised before an index can be set
            node[part] = [m.model_dump() for m in JobSpec.model_fields["masks"].default_factory()]
        else:
            node[part] = [] if isinstance(rest[0], int) or rest[0] == "*" else {}
    set_path(node[part], rest, value, text, (*done, part))


def set_element(node: list[Any], path: list[str | int], value: Any, text: str, done: tuple[Any, ...]) -> None:
    part, rest = path[0], path[1:]
    if not isinstance(part, int) or part > len(node) or (rest and part == len(node)):
        raise SpecError(f"override {text!r}: {format_loc((*done, part))} is out of range")
    if not rest:
        node.append(value) if part == len(node) else node.__setitem__(part, value)
        return
    set_path(node[part], rest, value, text, (*done, part))


def shadowed_overrides(raw: dict[str, Any], overrides: list[str]) -> list[str]:
    """Notes for job-level overrides that a stage's own value overrides in turn (the stage's value wins)."""
    notes = []
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] == "stages":
            continue
        for stage in raw.get("stages") or []:
            node: Any = stage
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None and isinstance(stage, dict):
                key = format_loc(tuple(path))
                notes.append(f"{text}: stage {stage.get('name')!r} sets its own {key} ({node}), which wins there; "
                             f"stages[*].{key}={text.split('=', 1)[1]} sets it in every stage")
    return notes


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key].start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


MAX_SPEC_BYTES = 10 * 2**20  # a spec is a page of YAML; more is not one


def read_text(url: str) -> str:
    """The spec file's text; a folder, a file too large, gzip, binary or not UTF-8 is a SpecError naming it."""
    try:
        with fsspec.open(url, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{url}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{url}: is a folder; give the spec's YAML file") from None
    except OSError as e:
        raise SpecError(f"{url}: cannot be read ({e.strerror or type(e).__name__})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{url}: over {MAX_SPEC_BYTES // 2**20} MiB; not a spec file")
    if data[:2] == b"\x1f\x8b":
        raise SpecError(f"{url}: is gzip-compressed; give the YAML itself")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{url}: is not UTF-8 text (byte {e.start}); a spec is a YAML file") from None
    if "\x00" in text:
        raise SpecError(f"{url}: is binary, not a YAML file")
    return text


def read_yaml(url: str) -> dict[str, Any]:
    """The spec file as a mapping; anything else (binary, gzip, not UTF-8, a folder, absurdly nested YAML, a
    key given twice) is one SpecError naming the file and the problem."""
    text = read_text(url)
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as e:  # one line: where, and what
        mark = e.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{url}{where}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{url}: not valid YAML: {e}") from None
    except RecursionError:
        raise SpecError(f"{url}: nested too deeply to be a spec") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"{url}: a spec must be a YAML mapping, got {type(raw).__name__}")
    return raw


def load_spec(url: str | Path, overrides: list[str] | None = None) -> JobSpec:
    """The spec file with `KEY=VALUE` overrides applied, validated; `notes` says where a stage's own value
    wins over a job-level override."""
    raw = read_yaml(str(url))
    for text in overrides or []:
        apply_override(raw, text)
    spec = validate_spec(raw, source=str(url))
    spec._notes = shadowed_overrides(raw, overrides or [])
    return spec


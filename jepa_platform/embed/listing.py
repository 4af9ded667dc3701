"""The videos an embedding job covers, in a fixed order: a folder searched recursively, or a list file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import fsspec

from jepa_platform.data.manifest import VIDEO_EXTENSIONS, resolve_entry_path
from jepa_platform.errors import ConfigError, DataError
from jepa_platform.eval.data import IMAGE_EXTENSIONS

__all__ = ["Unreadable", "VideoList", "list_videos"]


class Unreadable(ConfigError):
    """Storage that cannot be read from here (a cluster's bucket seen from a laptop, say)."""


@dataclass(frozen=True)
class VideoList:
    """Paths (URLs) in the order they are embedded, and their labels where the list gives them."""

    source: str
    paths: list[str]
    labels: list[int] | None

    def digest(self) -> str:
        """sha256 of the listing: a rerun into the same output must cover the same videos in the same order."""
        text = json.dumps([self.paths, self.labels], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def shard(self, index: int, size: int) -> range:
        return range(index * size, min(len(self.paths), (index + 1) * size))

    def num_shards(self, size: int) -> int:
        return -(-len(self.paths) // size)


def list_videos(source: str) -> VideoList:
    """The videos at `source` (any fsspec URL or local path):

    - a folder: every video (and image) below it, sorted by path; no labels;
    - a `.jsonl` file: one `{"path": ..., "label": optional int}` per line;
    - any other file: one `path` or `path label` per line (V-JEPA's manifests work as they are).

    Relative paths are taken from the list file's folder. A source with no videos is refused (ConfigError).
    """
    try:
        fs, path = fsspec.core.url_to_fs(source)
        if fs.isdir(path):
            found = _scan(source, fs, path)
        elif not fs.exists(path):
            raise ConfigError(f"videos to embed, {source}: no such file or folder")
        else:
            text = fs.cat_file(path).decode("utf-8")
            found = _parse(source, text, jsonl=path.endswith(".jsonl"))
    except UnicodeDecodeError:
        raise ConfigError(f"videos to embed, {source}: the list is not UTF-8 text") from None
    except (DataError, ConfigError):
        raise
    except Exception as e:  # an unknown protocol, permissions, unreachable storage
        raise Unreadable(f"videos to embed, {source}: cannot be read ({type(e).__name__}: {e})") from None
    if not found.paths:
        kinds = ", ".join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)
        raise ConfigError(f"videos to embed, {source}: no videos found (looked for {kinds})")
    return found


def _scan(source: str, fs, root: str) -> VideoList:
    media = sorted(p for p in fs.find(root.rstrip("/")) if p.lower().endswith(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS))
    keep_scheme = "://" in source
    return VideoList(source, [fs.unstrip_protocol(p) if keep_scheme else p for p in media], None)


def _parse(source: str, text: str, jsonl: bool) -> VideoList:
    paths: list[str] = []
    labels: list[int | None] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            if jsonl:
                row = json.loads(line)
                path, label = str(row["path"]), row.get("label")
                label = None if label is None else int(label)
            else:
                fields = line.split()
                if len(fields) > 2:
                    raise ValueError("more than two fields")
                path, label = fields[0], int(fields[1]) if len(fields) == 2 else None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            form = "a JSON object with 'path' and an optional integer 'label'" if jsonl else \
                "'path' or 'path label' (a path without spaces, an integer label)"
            raise ConfigError(f"videos to embed, {source}, line {number}: expected {form} ({e})") from None
        paths.append(resolve_entry_path(source, path))
        labels.append(label)
    if any(label is None for label in labels) and any(label is not None for label in labels):
        raise ConfigError(f"videos to embed, {source}: some lines have a label and some do not; label all or none")
    return VideoList(source, paths, None if not labels or labels[0] is None else [int(x) for x in labels])

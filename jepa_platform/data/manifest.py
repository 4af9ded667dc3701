"""Lists of labelled videos: a V-JEPA style ``path label`` file, or a directory of videos."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

import fsspec

from jepa_platform.errors import ConfigError, DataError

__all__ = ["VIDEO_EXTENSIONS", "VideoEntry", "read_manifest"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@dataclass(frozen=True)
class VideoEntry:
    path: str
    label: int


def read_manifest(source: str) -> list[VideoEntry]:
    """Videos and labels from a manifest file or a directory at any fsspec URL or local path.

    A file holds one ``path label`` per line, space separated, no header (the format V-JEPA
    users already have); relative paths are resolved against the manifest's own directory,
    keeping its URL scheme, so a dataset folder can be moved or uploaded as a whole.
    A directory is searched recursively for video files; if every video sits below a
    first-level subdirectory, those folders are the classes (sorted names -> 0, 1, ...),
    otherwise every label is 0.
    """
    try:
        fs, path = fsspec.core.url_to_fs(source)
        if fs.isdir(path):
            return _scan_directory(source, fs, path)
        with fs.open(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"manifest not found: {source}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: manifest is not UTF-8 text") from exc
    except Exception as exc:  # permissions, unreachable storage, unknown protocol
        raise DataError(f"cannot read manifest {source}: {exc}") from exc
    return _parse_lines(source, text)


def _parse_lines(source: str, text: str) -> list[VideoEntry]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not _is_int(fields[1]):
            raise DataError(
                f"{source}, line {number}: expected 'path label' (a path without spaces and an "
                f"integer label), got {line.strip()!r}"
            )
        entries.append(VideoEntry(path=resolve_entry_path(source, fields[0]), label=int(fields[1])))
    return entries


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def resolve_entry_path(manifest: str, path: str) -> str:
    """``path`` as listed, or joined to the manifest's directory if it is relative."""
    if "://" in path or path.startswith("/"):
        return path
    if "://" in manifest:
        scheme, rest = manifest.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), path))}"
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(manifest)), path))


def _scan_directory(source: str, fs: fsspec.AbstractFileSystem, root: str) -> list[VideoEntry]:
    root = root.rstrip("/")
    videos = sorted(p for p in fs.find(root) if p.lower().endswith(VIDEO_EXTENSIONS))
    relative = [posixpath.relpath(p, root).split("/") for p in videos]
    by_class = all(len(parts) > 1 for parts in relative)
    classes = sorted({parts[0] for parts in relative}) if by_class else []
    label_of = {name: label for label, name in enumerate(classes)}
    keep_scheme = "://" in source
    return [
        VideoEntry(
            path=fs.unstrip_protocol(p) if keep_scheme else p,
            label=label_of[parts[0]] if by_class else 0,
        )
        for p, parts in zip(videos, relative, strict=True)
    ]


def check_labelled(source: str, field: str = "data.val") -> None:
    """Refuses, naming `field`, a local labelled set whose videos all carry one label (a flat folder, a
    manifest of zeros): nothing can be classified on it. Remote sets are checked where they are read."""
    if "://" in source:
        return
    labels = {entry.label for entry in read_manifest(source)}
    if len(labels) < 2:
        raise ConfigError(f"{field}: every video of {source} has the same label (an unlabelled folder?); a labelled "
                          f"set of at least two classes is needed")

"""Storage on any fsspec filesystem (local, s3://, gs://): URL joins and all-or-nothing writes."""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem


def join(base: str, *parts: str) -> str:
    """Join URL path parts, keeping the scheme of `base` (s3://b/x + y -> s3://b/x/y)."""
    return posixpath.join(base.rstrip("/"), *parts)


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Writes `data` so that no reader sees it half-written: a local file goes to a temporary name and is
    renamed; an object store's single PUT is all-or-nothing already."""
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


@contextlib.contextmanager
def file_atomic(url: str) -> Iterator[str]:
    """A local path to write `url`'s content to, for writers that want a file (Parquet, a streamed .npy);
    on a clean exit it becomes `url` whole (renamed beside it locally, one upload to an object store), on
    an error it is removed and `url` is untouched."""
    fs, path = fsspec.core.url_to_fs(url)
    local = isinstance(fs, LocalFileSystem)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if local:
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    else:
        handle, tmp = tempfile.mkstemp(suffix=".part")
        os.close(handle)
    try:
        yield tmp
        if local:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            fs.put_file(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def absolute_local(url: str | None) -> str | None:
    """Local paths are taken from the current folder and made absolute, so that workers in other folders
    (Ray Train workers, later stages) find the same files; URLs and None are left as they are."""
    if url is None or "://" in url:
        return url
    return str(Path(url).expanduser().resolve())

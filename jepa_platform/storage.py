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
from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.local import LocalFileSystem


def join(base: str, *parts: str) -> str:
    """Join URL path parts, keeping the scheme of `base` (s3://b/x + y -> s3://b/x/y)."""
    return posixpath.join(base.rstrip("/"), *parts)


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Writes `data` so that no reader sees it half-written: a local file goes to a temporary name and is
    renamed; an object store's single PUT is all-or-nothing already."""
    fs, path = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):  # an object store has no folders to make (and each call costs)
        os.makedirs(posixpath.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data, **deadline(fs, len(data)))


@contextlib.contextmanager
def file_atomic(url: str) -> Iterator[str]:
    """A local path to write `url`'s content to, for writers that want a file (Parquet, a streamed .npy);
    on a clean exit it becomes `url` whole (renamed beside it locally, one upload to an object store), on
    an error it is removed and `url` is untouched."""
    fs, path = fsspec.core.url_to_fs(url)
    local = isinstance(fs, LocalFileSystem)
    if local:
        os.makedirs(posixpath.dirname(path) or ".", exist_ok=True)
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
            fs.put_file(tmp, path, **deadline(fs, os.path.getsize(tmp)))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


_call_timeout_s: float | None = None  # set by configure_object_stores: one request's timeout


def deadline(fs: fsspec.AbstractFileSystem, size: int) -> dict:
    """The overall time limit of one upload to an object store, as the `timeout` fsspec's async filesystems
    take: every try and back-off, plus a second per MiB. The per-request timeouts do not cover all of it:
    a PUT waits for the store's '100 Continue' without one, for ever if the store stopped answering."""
    if _call_timeout_s is None or not isinstance(fs, AsyncFileSystem):
        return {}
    return {"timeout": 8 * _call_timeout_s + size / 2**20}


def configure_object_stores(endpoint_url: str | None = None, region: str | None = None, anonymous: bool = False,
                            timeout_s: float | None = None) -> None:
    """How s3:// (and gs://) URLs are reached, in this process and the processes it forks, for every fsspec
    call (data, checkpoints, metrics): an S3-compatible endpoint (MinIO, Ceph, R2...) and its region,
    unsigned access to public buckets, and connect/read timeouts, so that a store that stops answering
    gives an error in bounded time instead of a hang. Filesystems already made keep what they were made
    with, so they are made again."""
    s3: dict = {}
    gcs: dict = {}
    if endpoint_url:
        s3["endpoint_url"] = endpoint_url
    if region:
        s3["client_kwargs"] = {"region_name": region}
    if anonymous:
        s3["anon"] = True
        gcs["token"] = "anon"
    if timeout_s:
        # botocore tries once: s3fs itself tries each call 5 times, with back-off
        s3["config_kwargs"] = {"connect_timeout": timeout_s, "read_timeout": timeout_s, "retries": {"max_attempts": 1}}
        gcs["timeout"] = timeout_s
    global _call_timeout_s
    _call_timeout_s = timeout_s
    for protocol, options in (("s3", s3), ("gcs", gcs), ("gs", gcs)):
        fsspec.config.conf[protocol] = {**fsspec.config.conf.get(protocol, {}), **options}
        try:
            fsspec.get_filesystem_class(protocol).clear_instance_cache()
        except (ImportError, ValueError):  # its package is not installed: nothing made, nothing to clear
            pass


def absolute_local(url: str | None) -> str | None:
    """Local paths are taken from the current folder and made absolute, so that workers in other folders
    (Ray Train workers, later stages) find the same files; URLs and None are left as they are."""
    if url is None or "://" in url:
        return url
    return str(Path(url).expanduser().resolve())

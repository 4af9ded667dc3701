"""The same dataset read from local disk, S3 (moto), GCS (emulator) and memory:// gives the same clips."""

from pathlib import Path

import fsspec
import pytest
import torch

from jepa_platform.data import BadVideoWarning, VideoDataset, read_manifest


def upload(manifest: Path, url: str) -> str:
    """Copy the manifest's folder (manifest + videos) to ``url``; return the remote manifest URL."""
    fs, root = fsspec.core.url_to_fs(url)
    for local in manifest.parent.rglob("*"):
        if local.is_file():
            fs.pipe_file(f"{root}/{local.relative_to(manifest.parent).as_posix()}", local.read_bytes())
    return f"{url}/{manifest.name}"


def assert_same_clips_as_local(remote_manifest: str, local_manifest: Path) -> None:
    remote = VideoDataset(remote_manifest, frames=4, stride=2, resolution=32, seed=5)
    local = VideoDataset(str(local_manifest), frames=4, stride=2, resolution=32, seed=5)
    assert len(remote) == len(local)
    assert remote.entries[0].path.startswith(remote_manifest.split("://")[0] + "://")
    for i in (0, len(local) - 1):
        r, lo = remote[i], local[i]
        assert torch.equal(r["clip"], lo["clip"]) and r["label"] == lo["label"]
    assert remote.failures == 0


def test_s3_dataset_reads_the_same_clips_as_local(s3_endpoint, synthetic_dataset):
    fs = fsspec.filesystem("s3")
    fs.mkdir("videos-bucket")  # no region: moto's default us-east-1 takes no location constraint
    manifest = upload(synthetic_dataset, "s3://videos-bucket/synthetic")
    assert_same_clips_as_local(manifest, synthetic_dataset)


def test_s3_directory_source_lists_videos_by_class_folder(s3_endpoint, synthetic_dataset):
    fs = fsspec.filesystem("s3")
    fs.mkdir("dir-bucket")
    upload(synthetic_dataset, "s3://dir-bucket/ds")
    entries = read_manifest("s3://dir-bucket/ds/videos")
    assert len(entries) == 12 and entries[0].path.startswith("s3://dir-bucket/ds/videos/move_down/")
    assert sorted({e.label for e in entries}) == list(range(6))


def test_gcs_dataset_reads_the_same_clips_as_local(gcs_endpoint, synthetic_dataset):
    fs = fsspec.filesystem("gs")
    fs.mkdir("videos-bucket")
    manifest = upload(synthetic_dataset, "gs://videos-bucket/synthetic")
    assert_same_clips_as_local(manifest, synthetic_dataset)


def test_memory_dataset_reads_the_same_clips_as_local(synthetic_dataset):
    manifest = upload(synthetic_dataset, "memory://remote-synthetic")
    assert_same_clips_as_local(manifest, synthetic_dataset)


def test_missing_remote_video_is_skipped_like_a_local_one(s3_endpoint, synthetic_dataset, tmp_path):
    fs = fsspec.filesystem("s3")
    fs.mkdir("gap-bucket")
    manifest = upload(synthetic_dataset, "s3://gap-bucket/ds")
    fs.rm(read_manifest(manifest)[0].path)
    ds = VideoDataset(manifest, frames=4, stride=2, resolution=32)
    with pytest.warns(BadVideoWarning, match="gap-bucket/ds/videos/move_left/move_left_000.mp4"):
        assert ds[0]["index"] != 0

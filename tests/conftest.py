"""Shared fixtures: real encoded videos and local object-store emulators (S3 via moto, GCS via
gcp-storage-emulator), all on loopback so tests never leave the machine."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

# Ray Train polls its workers every 2 s by default; tests would spend most of their time waiting.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")

BAR_WIDTH = 8  # pixels per bit: H.264 blocks are 8-aligned, so each bar survives compression intact


@pytest.fixture
def numbered_video() -> Callable[..., Path]:
    """Factory writing an H.264 mp4 whose frame k shows k in binary, as black/white vertical bars.

    ``numbered_video(path, num_frames, gop_size=12, size=64)``; read numbers back with
    ``frame_numbers``. Up to ``size // 8`` bits, so 256 frames at 64 pixels.
    """
    from jepa_platform.data import write_video

    def write(path: Path, num_frames: int, gop_size: int = 12, size: int = 64, fps: int = 8) -> Path:
        bits = size // BAR_WIDTH
        assert num_frames <= 2**bits
        k = np.arange(num_frames)[:, None]
        bar_on = (k >> np.arange(bits)[None, :]) & 1  # [T, bits]
        row = np.repeat(bar_on * 255, BAR_WIDTH, axis=1).astype(np.uint8)  # [T, W]
        frames = np.broadcast_to(row[:, None, :, None], (num_frames, size, size, 3))
        return write_video(path, frames, fps=fps, gop_size=gop_size)

    return write


@pytest.fixture
def frame_numbers() -> Callable[[torch.Tensor], list[int]]:
    """Reads the numbers written by ``numbered_video`` from uint8 frames ``[T, H, W, 3]``."""

    def read(frames: torch.Tensor) -> list[int]:
        t, _, w, _ = frames.shape
        bars = frames.float().mean(dim=(1, 3)).reshape(t, w // BAR_WIDTH, BAR_WIDTH).mean(-1)  # [T, bits]
        weights = 2 ** torch.arange(bars.shape[1])
        return ((bars > 127).long() * weights).sum(-1).tolist()

    return read


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest of a small real-mp4 synthetic dataset (6 classes x 2 videos, 32 frames of 64x64)."""
    from jepa_platform.data import write_synthetic_dataset

    return write_synthetic_dataset(
        tmp_path_factory.mktemp("synthetic"), videos_per_class=2, frames=32, size=64
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def _moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_endpoint(_moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Endpoint URL of a moto S3 server that ``s3://`` URLs reach for this test.

    s3fs takes the endpoint from ``AWS_ENDPOINT_URL_S3`` (read by botocore when the client is
    made). ``FSSPEC_S3_ENDPOINT_URL`` would only work if set before fsspec is imported, because
    fsspec reads ``FSSPEC_*`` variables into its config once, at import.
    """
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", _moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # cached instances keep the endpoint they were made with
    yield _moto_endpoint
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def _gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs_endpoint(_gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Endpoint URL of an in-memory GCS emulator that ``gs://`` URLs reach for this test.

    ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` keeps gcsfs from probing bucket types with real
    Google credentials; it is read when gcsfs is first imported.
    """
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", _gcs_endpoint)
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    import gcsfs

    gcsfs.GCSFileSystem.clear_instance_cache()
    yield _gcs_endpoint
    gcsfs.GCSFileSystem.clear_instance_cache()


@pytest.fixture(autouse=True)
def _job_store_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs submitted by tests are recorded in a temporary job store, never the user's."""
    monkeypatch.setenv("JEPA_HOME", str(tmp_path_factory.mktemp("jepa-home")))

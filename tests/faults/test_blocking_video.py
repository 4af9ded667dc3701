"""A video whose open() never returns (a FIFO stands in for a stalled mount or store) is a bad video after
the per-video timeout, in training, probing and embedding alike, never a hang."""

import os
import time

import pytest

from jepa_platform.data.dataset import VideoDataset
from jepa_platform.data.video import VideoDecodeError, within
from jepa_platform.embed import run_embed
from jepa_platform.spec.embed import EmbedSettings


@pytest.fixture
def fifo(tmp_path):
    """A FIFO named like a video; at the end a writer opens and closes it, which releases any reader left
    blocked in open() (the timed-out read's thread), so that nothing outlives the test."""
    path = tmp_path / "stalled.mp4"
    os.mkfifo(path)
    yield path
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader left: nothing to release
        pass


def test_a_read_that_never_returns_is_a_bad_video_after_the_timeout(fifo):
    started = time.monotonic()
    with pytest.raises(VideoDecodeError, match=r"stalled.mp4: no answer within 0.5 s"):
        within(0.5, str(fifo), lambda: open(fifo, "rb").read())
    assert time.monotonic() - started < 3
    assert within(0.5, "x", lambda: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):  # the read's own error, as it is
        within(0.5, "x", lambda: 1 / 0)


def test_training_skips_a_blocking_video_and_goes_on(tmp_path, synthetic_dataset, fifo):
    manifest = tmp_path / "train.csv"
    lines = [f"{(synthetic_dataset.parent / line.split()[0])} {line.split()[1]}"
             for line in synthetic_dataset.read_text().splitlines()]
    manifest.write_text("\n".join([f"{fifo} 0", *lines]) + "\n")
    dataset = VideoDataset(str(manifest), frames=4, stride=2, resolution=32, max_failure_rate=0.5,
                           video_timeout_s=0.5)
    started = time.monotonic()
    item = dataset[0]  # the FIFO: skipped, another video in its place
    assert time.monotonic() - started < 5
    assert item["bad_reads"] == 1 and "no answer within 0.5 s" in item["skipped"]
    assert item["clip"].shape == (3, 4, 32, 32)


def test_an_embedding_names_a_blocking_video_as_skipped_and_finishes(tmp_path, synthetic_dataset, fifo):
    listing = tmp_path / "videos.txt"
    listing.write_text("\n".join([str(fifo)] + [str(synthetic_dataset.parent / line.split()[0])
                                                  for line in synthetic_dataset.read_text().splitlines()[:3]]))
    report = run_embed(EmbedSettings(
        checkpoint="random", backbone={"kind": "vit", "params": {"size": "tiny"}}, data=str(listing),
        output=str(tmp_path / "out"), frames=4, stride=2, resolution=32, workers=0, video_timeout_s=0.5))
    assert report.written == 3 and [s["path"] for s in report.skipped] == [str(fifo)]
    assert "no answer within 0.5 s" in report.skipped[0]["reason"]

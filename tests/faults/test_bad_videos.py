"""Bad videos in a training run: each is skipped, counted in the metrics and named with why where the user
looks (the rows, the log's warnings, the terminal); too many end the run with one line, also when they are
read in DataLoader worker processes."""

import os
import shutil

import pytest
from user_facing import tiny_training

from jepa_platform.errors import DataError
from jepa_platform.events import Notice, Row
from jepa_platform.spec import validate_spec
from jepa_platform.train.job import run_training
from jepa_platform.train.metrics import read_metrics


def tiny_spec(tmp_path, manifest, name="bad-videos", steps=3):
    return validate_spec(tiny_training(name, manifest, tmp_path / "runs", steps, optim={
        "batch_size": 4, "checkpoint_every": 3}, data={"loader_workers": 2, "params": {"max_failure_rate": 0.5}}))


def with_bad_videos(tmp_path, synthetic_dataset, bad: int):
    """The synthetic set's manifest with `bad` corrupt files added (named bad-N.mp4)."""
    shutil.copytree(synthetic_dataset.parent / "videos", tmp_path / "videos")
    lines = synthetic_dataset.read_text().splitlines()
    for i in range(bad):
        (tmp_path / f"bad-{i}.mp4").write_bytes(os.urandom(3000))
        lines.append(f"bad-{i}.mp4 0")
    manifest = tmp_path / "train.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_skipped_videos_are_counted_per_row_and_named_with_why_in_loader_workers(tmp_path, synthetic_dataset):
    spec = tiny_spec(tmp_path, with_bad_videos(tmp_path, synthetic_dataset, bad=3), steps=6)
    events = []
    run_training(spec, on_event=events.append)
    rows = [e.values for e in events if isinstance(e, Row) and "step" in e.values]
    assert all("skipped_videos" in r for r in rows)
    named = " ".join(r.get("skipped", "") for r in rows)
    warnings = [e.message for e in events if isinstance(e, Notice)]
    skipped = sum(r["skipped_videos"] for r in rows)
    assert skipped >= 1 and "bad-" in named and "cannot open video" in named  # 6 steps x 4 clips of 15 videos
    assert len(warnings) == named.count("cannot open video")
    assert all("skipped an unreadable video" in w for w in warnings)
    logged = read_metrics(str(tmp_path / "runs" / "bad-videos" / "metrics.jsonl"))
    assert sum(r["skipped_videos"] for r in logged) == skipped  # in metrics.jsonl too


def test_too_many_bad_videos_in_loader_workers_end_the_run_with_one_clean_message(tmp_path, synthetic_dataset):
    manifest = tmp_path / "all-bad.csv"
    for i in range(4):
        (tmp_path / f"bad-{i}.mp4").write_bytes(os.urandom(3000))
    manifest.write_text("".join(f"bad-{i}.mp4 {i % 2}\n" for i in range(4)))
    with pytest.raises(DataError) as e:
        run_training(tiny_spec(tmp_path, manifest, name="all-bad"))
    text = str(e.value)
    assert "too many unreadable videos" in text and "bad-0.mp4" in text
    assert "Traceback" not in text and "DataLoader worker" not in text and "\n" not in text

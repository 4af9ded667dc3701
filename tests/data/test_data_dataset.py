import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from jepa_platform.data import BadVideoWarning, VideoDataset, read_manifest
from jepa_platform.errors import ConfigError, DataError


def small(source, **kw) -> VideoDataset:
    return VideoDataset(str(source), **{"frames": 4, "stride": 2, "resolution": 32, **kw})


def test_items_have_clip_label_and_index(synthetic_dataset):
    ds = small(synthetic_dataset)
    item = ds[5]
    assert len(ds) == 12
    assert item["clip"].shape == (3, 4, 32, 32) and item["clip"].dtype == torch.float32
    assert item["label"] == read_manifest(str(synthetic_dataset))[5].label and item["index"] == 5


def test_multiple_clips_stack_on_a_leading_dimension(synthetic_dataset):
    assert small(synthetic_dataset, num_clips=3)[0]["clip"].shape == (3, 3, 4, 32, 32)


def test_eval_clips_are_the_centred_frames_of_each_segment(tmp_path, numbered_video, frame_numbers):
    numbered_video(tmp_path / "v.mp4", 40)
    (tmp_path / "list.csv").write_text("v.mp4 7\n")
    # Resolution 64 on 64x64 frames with zero mean/unit std keeps pixels, so frame numbers can be read back.
    ds = small(tmp_path / "list.csv", frames=3, stride=2, num_clips=2, resolution=64, train=False)
    ds.transform.mean, ds.transform.std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    item = ds[0]
    frames = (item["clip"].permute(0, 2, 3, 4, 1) * 255).round().to(torch.uint8)  # [clips, T, H, W, C]
    # Segments 0-19 and 20-39, span 5: centred starts 7 and 27.
    assert [frame_numbers(clip) for clip in frames] == [[7, 9, 11], [27, 29, 31]]
    assert item["label"] == 7


def test_items_do_not_depend_on_worker_count_or_read_order(synthetic_dataset):
    def clips(num_workers: int, order: list[int]) -> dict[int, torch.Tensor]:
        ds = small(synthetic_dataset, seed=3)
        ds.set_epoch(2)
        loader = DataLoader(torch.utils.data.Subset(ds, order), batch_size=2, num_workers=num_workers)
        return {int(i): c for batch in loader for i, c in zip(batch["index"], batch["clip"], strict=True)}

    in_process = clips(0, list(range(6)))
    with_workers = clips(2, list(reversed(range(6))))
    assert all(torch.equal(in_process[i], with_workers[i]) for i in range(6))


def test_resumed_dataset_reproduces_an_epoch_and_epochs_differ(synthetic_dataset):
    first = small(synthetic_dataset, seed=1)
    first.set_epoch(4)
    [first[i] for i in range(3)]  # earlier reads must not shift later items
    resumed = small(synthetic_dataset, seed=1)
    resumed.set_epoch(4)
    assert torch.equal(first[3]["clip"], resumed[3]["clip"])
    resumed.set_epoch(5)
    assert not torch.equal(first[3]["clip"], resumed[3]["clip"])


def write_manifest(path: Path, entries: list[tuple[Path, int]]) -> Path:
    path.write_text("".join(f"{p} {label}\n" for p, label in entries))
    return path


@pytest.fixture
def bad_videos(tmp_path, synthetic_dataset) -> dict[str, Path]:
    real = read_manifest(str(synthetic_dataset))[0].path
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(
        torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(0)).byte().numpy()
    )
    truncated = tmp_path / "truncated.mp4"
    data = Path(real).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {"corrupt": corrupt, "truncated": truncated, "missing": tmp_path / "missing.mp4"}


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "missing"])
def test_unreadable_video_is_skipped_with_a_warning_and_replaced(
    tmp_path, synthetic_dataset, bad_videos, kind
):
    good = [(Path(e.path), e.label) for e in read_manifest(str(synthetic_dataset))]
    manifest = write_manifest(tmp_path / "list.csv", [(bad_videos[kind], 99), *good])
    ds = small(manifest)
    with pytest.warns(BadVideoWarning, match=f"{kind}.mp4"):
        item = ds[0]
    assert item["index"] != 0 and item["label"] == good[item["index"] - 1][1]
    assert (ds.attempts, ds.failures, ds.bad_files) == (2, 1, {str(bad_videos[kind])})
    # The replacement is chosen by the seeded generator, so it is the same in a fresh process.
    with pytest.warns(BadVideoWarning):
        assert torch.equal(small(manifest)[0]["clip"], item["clip"])


def test_too_many_unreadable_videos_raise_data_error_listing_them(tmp_path, synthetic_dataset, bad_videos):
    good = [(Path(e.path), e.label) for e in read_manifest(str(synthetic_dataset))][:3]
    bad = [(p, 0) for p in bad_videos.values()]
    ds = small(write_manifest(tmp_path / "list.csv", bad + good), max_failure_rate=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadVideoWarning)
        with pytest.raises(DataError, match="max_failure_rate=0.1") as raised:
            for i in range(len(ds)):
                ds[i]
    # 10% of at least 20 attempts tolerates two failures, not three.
    assert ds.failures == 3
    assert ds.bad_files and ds.bad_files <= {str(p) for p in bad_videos.values()}
    assert all(path in str(raised.value) for path in ds.bad_files)


def test_dataset_where_every_video_fails_raises_data_error(tmp_path, bad_videos):
    ds = small(
        write_manifest(tmp_path / "list.csv", [(p, 0) for p in bad_videos.values()]), max_failure_rate=0.9
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadVideoWarning)
        with pytest.raises(
            DataError, match=r"bad files \(3\).*first error: .*(corrupt|truncated|missing)\.mp4"
        ):
            ds[0]


def test_empty_manifest_raises_data_error(tmp_path):
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DataError, match="no videos"):
        small(tmp_path / "empty.csv")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frames", 0),
        ("stride", -1),
        ("num_clips", 0),
        ("max_failure_rate", 1.0),
        ("max_failure_rate", -0.1),
        ("resolution", 0),
    ],
)
def test_impossible_parameters_raise_config_error_naming_the_field(field, value, synthetic_dataset):
    with pytest.raises(ConfigError, match=field):
        small(synthetic_dataset, **{field: value})

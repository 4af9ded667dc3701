import fsspec
import pytest

from jepa_platform.data import VideoEntry, read_manifest
from jepa_platform.errors import DataError


def test_relative_paths_resolve_against_the_manifest_directory(tmp_path):
    (tmp_path / "lists").mkdir()
    manifest = tmp_path / "lists" / "train.csv"
    manifest.write_text("a.mp4 0\n../videos/b.mp4 3\n\n/abs/c.mp4 1\n   \ns3://bucket/d.mp4 2\n")
    assert read_manifest(str(manifest)) == [
        VideoEntry(str(tmp_path / "lists" / "a.mp4"), 0),
        VideoEntry(str(tmp_path / "videos" / "b.mp4"), 3),
        VideoEntry("/abs/c.mp4", 1),
        VideoEntry("s3://bucket/d.mp4", 2),
    ]


def test_relative_paths_keep_the_manifest_url_scheme():
    with fsspec.open("memory://ds/lists/train.csv", "w") as f:
        f.write("videos/a.mp4 1\n../b.mp4 0\n")
    assert read_manifest("memory://ds/lists/train.csv") == [
        VideoEntry("memory://ds/lists/videos/a.mp4", 1),
        VideoEntry("memory://ds/b.mp4", 0),
    ]


@pytest.mark.parametrize("bad_line", ["c.mp4", "c.mp4 one", "my video.mp4 2"])
def test_bad_line_raises_data_error_naming_the_file_and_line_number(tmp_path, bad_line):
    manifest = tmp_path / "train.csv"
    manifest.write_text(f"a.mp4 0\n\nb.mp4 1\n{bad_line}\n")
    with pytest.raises(DataError, match=r"train\.csv, line 4"):
        read_manifest(str(manifest))


def test_missing_manifest_raises_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="not found.*absent.csv"):
        read_manifest(str(tmp_path / "absent.csv"))


def test_directory_with_class_folders_labels_videos_by_sorted_folder_name(tmp_path):
    for rel in ["walk/x.mp4", "run/a.MP4", "run/sub/b.webm", "jump/c.avi", "jump/notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    entries = read_manifest(str(tmp_path))
    labels = {entry.path.removeprefix(str(tmp_path) + "/"): entry.label for entry in entries}
    assert labels == {"jump/c.avi": 0, "run/a.MP4": 1, "run/sub/b.webm": 1, "walk/x.mp4": 2}


def test_directory_with_videos_at_its_top_level_labels_everything_zero(tmp_path):
    for rel in ["top.mkv", "cls/a.mov"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert sorted(e.label for e in read_manifest(str(tmp_path))) == [0, 0]


def test_directory_urls_list_videos_with_their_scheme():
    fs = fsspec.filesystem("memory")
    fs.pipe({"/dirds/cat/1.mp4": b"", "/dirds/dog/2.mp4": b""})
    assert read_manifest("memory://dirds") == [
        VideoEntry("memory:///dirds/cat/1.mp4", 0),
        VideoEntry("memory:///dirds/dog/2.mp4", 1),
    ]

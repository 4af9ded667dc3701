from pathlib import Path

import fsspec
import pytest
import torch

from jepa_platform.data import VideoDecodeError, VideoInfo, VideoReader, probe_video, read_frames
from jepa_platform.errors import DataError


@pytest.fixture
def video_40(tmp_path, numbered_video) -> Path:
    return numbered_video(tmp_path / "forty.mp4", 40, gop_size=12)


def test_probe_reports_frame_count_rate_and_size(video_40):
    assert probe_video(str(video_40)) == VideoInfo(num_frames=40, fps=8.0, width=64, height=64)


def test_read_frames_returns_scattered_indices_in_the_order_asked(video_40, frame_numbers):
    indices = [17, 3, 39, 0, 25, 8]
    frames = read_frames(str(video_40), indices)
    assert frames.dtype == torch.uint8 and frames.shape == (6, 64, 64, 3)
    assert frame_numbers(frames) == indices


def test_read_frames_repeats_frames_for_repeated_indices(video_40, frame_numbers):
    assert frame_numbers(read_frames(str(video_40), [5, 5, 6, 5])) == [5, 5, 6, 5]


def test_indices_past_the_end_give_the_last_frame(video_40, frame_numbers):
    assert frame_numbers(read_frames(str(video_40), [38, 39, 40, 55])) == [38, 39, 39, 39]


def test_read_entirely_past_the_end_gives_the_last_frame(video_40, frame_numbers):
    assert frame_numbers(read_frames(str(video_40), [60, 70])) == [39, 39]


def test_seek_deep_into_a_long_video_decodes_only_from_the_nearest_keyframe(
    tmp_path, numbered_video, frame_numbers, monkeypatch
):
    path = numbered_video(tmp_path / "long.mp4", 240, gop_size=8)
    decoded: list[int] = []
    original = VideoReader._frames_from

    def spy(self, first):
        for index, frame in original(self, first):
            decoded.append(index)
            yield index, frame

    monkeypatch.setattr(VideoReader, "_frames_from", spy)
    assert frame_numbers(read_frames(str(path), [203, 200, 210])) == [203, 200, 210]
    # Keyframes every 8 frames: decoding starts at the keyframe at or before 200 and stops at 210.
    assert 192 <= min(decoded) <= 200 and max(decoded) == 210 and len(decoded) <= 19


def test_one_reader_serves_several_reads_in_any_order(video_40, frame_numbers):
    with VideoReader(str(video_40)) as reader:
        assert frame_numbers(reader.read([30, 31])) == [30, 31]
        assert frame_numbers(reader.read([2, 1])) == [2, 1]  # backwards after a forward read
        assert reader.info.num_frames == 40


def test_reads_through_fsspec_urls(video_40, frame_numbers):
    url = "memory://videos/forty.mp4"
    with fsspec.open(url, "wb") as f:
        f.write(video_40.read_bytes())
    assert probe_video(url).num_frames == 40
    assert frame_numbers(read_frames(url, [33, 1])) == [33, 1]


def test_missing_video_raises_decode_error_naming_it(tmp_path):
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(VideoDecodeError, match="nope.mp4"):
        read_frames(missing, [0])
    with pytest.raises(DataError, match="nope.mp4"):  # a DataError, so the CLI prints one line
        probe_video(missing)


def test_random_bytes_raise_decode_error_naming_the_file(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(
        torch.randint(0, 256, (20_000,), generator=torch.Generator().manual_seed(0)).byte().numpy()
    )
    with pytest.raises(VideoDecodeError, match="noise.mp4"):
        read_frames(str(path), [0])


def test_truncated_mp4_raises_decode_error_naming_the_file(video_40, tmp_path):
    path = tmp_path / "half.mp4"
    path.write_bytes(video_40.read_bytes()[: video_40.stat().st_size // 2])
    with pytest.raises(VideoDecodeError, match="half.mp4"):
        read_frames(str(path), [0, 20])


def test_unknown_url_protocol_is_a_data_error_not_a_skippable_bad_video():
    with pytest.raises(DataError, match="nosuchproto") as raised:
        read_frames("nosuchproto://bucket/a.mp4", [0])
    assert not isinstance(raised.value, VideoDecodeError)

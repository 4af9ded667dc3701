import pytest
import torch

from jepa_platform.data import sample_clip_indices
from jepa_platform.errors import ConfigError, DataError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_eval_clip_is_centred_with_the_given_stride():
    # span (4-1)*3+1 = 10 frames in a 30-frame video: starts 0..20 fit, the centre is 10.
    assert sample_clip_indices(30, frames=4, stride=3, num_clips=1, generator=None) == [[10, 13, 16, 19]]


def test_each_clip_stays_inside_its_own_temporal_segment():
    for seed in range(20):
        clips = sample_clip_indices(100, frames=4, stride=2, num_clips=4, generator=gen(seed))
        for k, clip in enumerate(clips):
            assert 25 * k <= clip[0] and clip[-1] < 25 * (k + 1)
            assert [b - a for a, b in zip(clip, clip[1:], strict=False)] == [2, 2, 2]


def test_random_starts_cover_every_position_that_fits():
    starts = {sample_clip_indices(20, 4, 2, 1, gen(seed))[0][0] for seed in range(300)}
    assert starts == set(range(0, 14))  # span 7: starts 0..13


def test_same_generator_seed_gives_the_same_clips_and_another_seed_differs():
    a = sample_clip_indices(500, 8, 4, 3, gen(7))
    assert a == sample_clip_indices(500, 8, 4, 3, gen(7))
    assert a != sample_clip_indices(500, 8, 4, 3, gen(8))


def test_video_shorter_than_a_clip_starts_at_zero_and_repeats_its_last_frame():
    assert sample_clip_indices(6, frames=5, stride=2, num_clips=1, generator=gen()) == [[0, 2, 4, 5, 5]]


def test_clip_longer_than_its_segment_still_ends_inside_the_video():
    # Segments of 10 frames, clips of span 13: the last clip is moved back to end at frame 29.
    clips = sample_clip_indices(30, frames=4, stride=4, num_clips=3, generator=None)
    assert clips == [[0, 4, 8, 12], [10, 14, 18, 22], [17, 21, 25, 29]]


@pytest.mark.parametrize("field", ["frames", "stride", "num_clips"])
def test_non_positive_clip_parameters_raise_config_error_naming_the_field(field):
    params = {"frames": 4, "stride": 2, "num_clips": 1, field: 0}
    with pytest.raises(ConfigError, match=field):
        sample_clip_indices(30, generator=None, **params)


def test_empty_video_raises_data_error():
    with pytest.raises(DataError):
        sample_clip_indices(0, 4, 2, 1, None)

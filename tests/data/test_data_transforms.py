import pytest
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from jepa_platform.data import ClipTransform
from jepa_platform.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_frames(t: int = 6, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=gen(seed))


@pytest.mark.parametrize("train", [True, False])
def test_output_is_float_channels_first_clip_at_the_resolution(train):
    out = ClipTransform(32, train=train)(random_frames(), gen())
    assert out.dtype == torch.float32 and out.shape == (3, 6, 32, 32)


def test_train_crop_and_flip_are_the_same_for_every_frame():
    still = random_frames(t=1).expand(5, -1, -1, -1)
    for seed in range(10):
        out = ClipTransform(24, train=True)(still, gen(seed))
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(1, 5))


def test_same_generator_seed_gives_the_same_augmentation_and_another_seed_differs():
    frames, transform = random_frames(), ClipTransform(32, train=True)
    a = transform(frames, gen(3))
    assert torch.equal(a, transform(frames, gen(3)))
    assert not torch.equal(a, transform(frames, gen(4)))


def test_train_mode_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ClipTransform(32, train=True)(random_frames(), gen(1))
    assert torch.equal(torch.rand(3), expected)


def test_flip_happens_about_half_the_time():
    # A left-dark, right-bright image: flipping puts the bright half on the left.
    image = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    image[:, :, 16:] = 255
    transform = ClipTransform(16, train=True, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    flips = sum(int(transform(image, gen(s))[0, 0, :, 0].mean() > 0) for s in range(200))
    assert 70 < flips < 130


def test_crop_boxes_respect_scale_and_ratio_and_fit_the_frame():
    transform = ClipTransform(16, scale=(0.3, 0.6), ratio=(0.75, 1.35))
    for seed in range(100):
        top, left, h, w = transform.crop_box(120, 160, gen(seed))
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 160
        assert 0.28 <= h * w / (120 * 160) <= 0.62 and 0.7 <= w / h <= 1.4


def test_eval_mode_resizes_the_shorter_side_and_centre_crops():
    # 32x96 frames, red at the sides and green in columns 24..71. Resizing the shorter side to 16
    # makes them 16x48 with green in 12..35; the centre 16x16 crop (columns 16..31) is all green.
    frames = torch.zeros(2, 32, 96, 3, dtype=torch.uint8)
    frames[:, :, :24, 0] = frames[:, :, 72:, 0] = 255
    frames[:, :, 24:72, 1] = 255
    out = ClipTransform(16, train=False, mean=(0, 0, 0), std=(1, 1, 1))(frames, None)
    assert out.shape == (3, 2, 16, 16)
    assert torch.allclose(out[1], torch.ones_like(out[1]), atol=0.02)
    assert torch.allclose(out[0], torch.zeros_like(out[0]), atol=0.02)


def test_eval_mode_is_deterministic_without_a_generator():
    frames = random_frames()
    assert torch.equal(
        ClipTransform(32, train=False)(frames, None), ClipTransform(32, train=False)(frames, None)
    )


def test_pixels_are_scaled_to_unit_range_then_normalised_with_imagenet_statistics():
    grey = torch.full((2, 16, 16, 3), 128, dtype=torch.uint8)
    out = ClipTransform(8, train=False)(grey, None)
    expected = [(128 / 255 - m) / s for m, s in zip(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, strict=True)]
    assert torch.allclose(out.mean(dim=(1, 2, 3)), torch.tensor(expected), atol=1e-4)


def test_non_positive_resolution_raises_config_error_naming_it():
    with pytest.raises(ConfigError, match="resolution"):
        ClipTransform(0)

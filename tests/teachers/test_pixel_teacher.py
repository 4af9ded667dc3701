import torch

from jepa_platform.masks import MaskCollator, TubeMasker, default_vjepa_maskers
from jepa_platform.models.vit import video_vit
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.teachers.pixel import PixelTeacher, patchify, pixel_targets
from jepa_platform.train.loop import JepaStudent, Trainer

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_pixel_targets_match_a_hand_computed_patchify_and_normalise():
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(1, 3, 4, 8, 8, generator=g)  # 2 x 2 x 2 tokens of 2 x 4 x 4 pixels
    targets = pixel_targets(clips, tubelet=2, patch=4, norm_pix=True)
    assert targets.shape == (1, 8, 2 * 4 * 4 * 3)
    # token (t'=1, h'=0, w'=1) is frames 2-3, rows 0-3, columns 4-7; it is token index 1*4 + 0*2 + 1 = 5
    pixels = clips[0, :, 2:4, 0:4, 4:8] * torch.tensor(STD).view(3, 1, 1, 1) + torch.tensor(MEAN).view(3, 1, 1, 1)
    expected = []
    for c in range(3):
        values = pixels[c].reshape(-1)
        expected.append((values - values.mean()) / (values.std() + 1e-6))
    expected = torch.stack(expected, dim=-1).reshape(-1)  # (tubelet, p, p) major, channel minor
    torch.testing.assert_close(targets[0, 5], expected)


def test_without_norm_pix_targets_are_pixels_in_unit_range():
    clips = (torch.rand(2, 3, 4, 8, 8) - torch.tensor(MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1, 1)
    targets = pixel_targets(clips, tubelet=2, patch=4, norm_pix=False)
    assert targets.min() >= -1e-5 and targets.max() <= 1 + 1e-5
    assert patchify(clips, 2, 4).shape == (2, 8, 32, 3)


def test_pixel_stage_trains_encoder_and_decoder_on_masked_tokens_only():
    # smooth clips (upsampled noise): their pixels are predictable from the visible neighbours
    coarse = torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    clips = torch.nn.functional.interpolate(coarse, size=(4, 32, 32), mode="trilinear", align_corners=False)

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"clip": clips[i], "label": 0}

    teacher = PixelTeacher(2, 8, norm_pix=False, decoder_dim=32, decoder_depth=1, decoder_heads=2)
    for maskers in (default_vjepa_maskers(), [TubeMasker(0.75)]):
        torch.manual_seed(0)
        encoder = video_vit("custom", img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=2, num_heads=3)
        decoder = teacher.make_predictor(encoder, num_mask_tokens=len(maskers))
        assert decoder.predictor_proj.out_features == 2 * 8 * 8 * 3
        trainer = Trainer(JepaStudent(encoder, decoder), teacher, MaskCollator(maskers), Clips(),
                          OptimConfig(steps=30, batch_size=2, warmup_steps=0, lr=2e-3, schedule_scale=1.0))
        losses = [trainer.train_step(clips)["loss"] for _ in range(15)]
        assert losses[-1] < 0.5 * losses[0]
    # masked tokens only: the loss does not change when the pixels of context tokens change
    masks = MaskCollator([TubeMasker(0.5)], seed=1)(1, (2, 4, 4))
    t1 = teacher.targets(clips[:1], masks)[0]
    keep = masks[0].context[0]
    altered = patchify(clips[:1], 2, 8).clone()
    altered[0, keep] += 5.0
    b, c, t, h, w = clips[:1].shape
    unpatched = altered.reshape(1, 2, 4, 4, 2, 8, 8, 3).permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, c, t, h, w)
    torch.testing.assert_close(teacher.targets(unpatched, masks)[0], t1)

"""The training step, pinned: loss and weights after a few steps, recorded before the step was reorganised.

On a CPU of the recorded kind (torch's CPU capability, and as many threads) the step must match bit for
bit; elsewhere the kernels may round differently, so there it must match to float32 rounding.
"""

import hashlib

import pytest
import torch
from random_clips import RandomClips

from jepa_platform.masks import MaskCollator, default_vjepa_maskers
from jepa_platform.models.predictor import Predictor
from jepa_platform.models.vit import video_vit
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.teachers.ema import EmaTeacher
from jepa_platform.train.loop import JepaStudent, Trainer

RECORDED_ON = ("AVX512", 2)  # torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()
PINNED = {  # cpu_shards -> (losses of steps 1..3, sum of the student's weights, sha256 of its weights)
    1: ([0.8294129371643066, 0.8248153924942017, 0.8014035224914551], 340.3320961983178,
        "18455283ea43fabeeda956bc2f2fc351d9cab18f7587d0dee0eeafba4acd833b"),
    2: ([0.8294129371643066, 0.8248153924942017, 0.8014035820960999], 340.33209609253134,
        "9125cec86fe74924932d505f0fc2f6be66658076cc713174b068180ef89023de"),
}


def trained(cpu_shards: int) -> tuple[list[float], float, str]:
    torch.manual_seed(0)
    encoder = video_vit("custom", img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=2, num_heads=3)
    student = JepaStudent(encoder, Predictor(48, encoder.grid, predictor_embed_dim=32, depth=1, num_heads=2))
    cfg = OptimConfig(steps=3, seed=0, batch_size=4, warmup_steps=1, lr=1e-3, log_every=1, checkpoint_every=100)
    trainer = Trainer(student, EmaTeacher(encoder, steps=3), MaskCollator(default_vjepa_maskers(), seed=0),
                      RandomClips(), cfg, cpu_shards=cpu_shards)
    clips = RandomClips().clips[:4]
    losses = [trainer.train_step(clips)["loss"] for _ in range(3)]
    flat = torch.cat([p.detach().flatten() for p in trainer.student.parameters()])
    return losses, float(flat.double().sum()), hashlib.sha256(flat.numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("cpu_shards", [1, 2])
def test_the_step_takes_the_same_loss_and_weights_as_before(cpu_shards):
    losses, total, digest = trained(cpu_shards)
    want_losses, want_total, want_digest = PINNED[cpu_shards]
    if (torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()) == RECORDED_ON:
        assert (losses, total, digest) == (want_losses, want_total, want_digest)
    else:
        assert losses == pytest.approx(want_losses, rel=1e-5) and total == pytest.approx(want_total, rel=1e-5)

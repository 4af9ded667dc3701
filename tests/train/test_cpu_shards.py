"""The Trainer's CPU sharding: a batch cut into shards that run on threads takes the same step as the whole
batch, deterministically, and is not used where it would not be the same step."""

import pytest
import torch
from random_clips import RandomClips
from torch.utils.flop_counter import FlopCounterMode

from jepa_platform.masks import MaskCollator, default_vjepa_maskers
from jepa_platform.models.predictor import Predictor
from jepa_platform.models.vit import video_vit
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.teachers.ema import EmaTeacher
from jepa_platform.train.cpu_shards import CpuShards, split_batch, sum_in_order
from jepa_platform.train.loop import JepaStudent, Trainer


def sharded_trainer(cpu_shards, drop_path=0.0, wrap=None):
    torch.manual_seed(0)
    encoder = video_vit("custom", img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=2, num_heads=3,
                        drop_path_rate=drop_path)
    predictor = Predictor(48, encoder.grid, predictor_embed_dim=32, depth=1, num_heads=2)
    cfg = OptimConfig(steps=10, batch_size=2, warmup_steps=0, lr=1e-3, clip_grad=1.0, schedule_scale=1.0)
    return Trainer(JepaStudent(encoder, predictor), EmaTeacher(encoder, steps=10),
                   MaskCollator(default_vjepa_maskers(), seed=0), RandomClips(), cfg, cpu_shards=cpu_shards,
                   wrap=wrap)


def run_steps(trainer, clips, steps=3):
    rows = [trainer.train_step(clips) for _ in range(steps)]
    return rows, {n: p.detach().clone() for n, p in trainer.student.named_parameters()}


@pytest.mark.parametrize("batch,shards", [(4, 2), (3, 2), (3, 3)])
def test_cpu_shards_take_the_same_step_as_the_whole_batch(batch, shards):
    clips = RandomClips().clips[:batch]
    whole, sharded = sharded_trainer(1), sharded_trainer(shards)
    assert sharded.shard_count(batch) == shards and whole.shard_count(batch) == 1
    whole_rows, whole_params = run_steps(whole, clips)
    sharded_rows, sharded_params = run_steps(sharded, clips)
    for a, b in zip(whole_rows, sharded_rows, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    for name, p in whole_params.items():
        torch.testing.assert_close(sharded_params[name], p, rtol=1e-4, atol=1e-5, msg=name)
    for (name, p), q in zip(whole.teacher.encoder.named_parameters(), sharded.teacher.encoder.parameters(),
                            strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"teacher {name}")


def test_sharded_steps_are_bit_identical_between_runs():
    clips = RandomClips().clips[:4]
    _, first = run_steps(sharded_trainer(2), clips)
    _, second = run_steps(sharded_trainer(2), clips)
    for name, p in first.items():
        assert torch.equal(second[name], p), name


def test_batch_runs_whole_where_shards_would_not_be_the_same_step():
    assert sharded_trainer(2, drop_path=0.1).shard_count(4) == 1  # random draws would interleave across threads
    assert sharded_trainer(2, wrap=lambda m: torch.nn.Sequential(m)).shard_count(4) == 1  # DDP: one forward
    assert sharded_trainer(8).shard_count(3) == 3  # never more shards than clips
    trainer = sharded_trainer(2)
    with FlopCounterMode(display=False) as counter:  # dispatch modes are per thread: they would miss shards
        assert trainer.shard_count(4) == 1
        trainer.train_step(RandomClips().clips[:4])
    assert counter.get_total_flops() > 0


def test_split_batch_cuts_clips_and_every_mask_field_into_near_equal_contiguous_parts():
    trainer = sharded_trainer(2)
    clips = RandomClips().clips[:5]
    masks = trainer.collator(5, trainer.student.encoder.token_grid(clips.shape))
    shards = split_batch(clips, masks, 3)
    assert [len(c) for c, _ in shards] == [1, 2, 2]
    assert torch.equal(torch.cat([c for c, _ in shards]), clips)
    for i, m in enumerate(masks):
        assert torch.equal(torch.cat([s[1][i].context for s in shards]), m.context)
        assert torch.equal(torch.cat([s[1][i].targets for s in shards]), m.targets)


def test_gradients_are_summed_in_shard_order_and_missing_ones_kept():
    a, b, c = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])
    total = sum_in_order([[a.clone(), None, None], [b, c, None], [c, a, None]])
    assert torch.equal(total[0], torch.tensor([7.0]))
    assert torch.equal(total[1], torch.tensor([5.0]))
    assert total[2] is None


def test_a_failing_shard_raises_after_all_shards_finish_and_threads_are_restored():
    threads = torch.get_num_threads()
    finished = []

    def work(i):
        if i == 0:
            raise ValueError("shard 0 failed")
        finished.append(i)
        return i

    with pytest.raises(ValueError, match="shard 0 failed"):
        CpuShards(2).map(work, [0, 1])
    assert finished == [1]
    assert torch.get_num_threads() == threads

import math

import pytest
import torch

from jepa_platform.spec.optim import OptimConfig
from jepa_platform.train.optim import Schedules, build_optimizer, param_groups
from jepa_platform.train.schedules import Cosine, Linear, WarmupCosine, stretched_length


def test_warmup_is_linear_from_start_to_peak():
    s = WarmupCosine(start=2e-4, peak=6e-4, final=1e-6, warmup=10, total=100)
    assert s(0) == pytest.approx(2e-4)
    assert s(5) == pytest.approx(4e-4)
    assert s(10) == pytest.approx(6e-4)


def test_cosine_after_warmup_matches_closed_form_and_ends_at_final():
    s = WarmupCosine(start=0.0, peak=1.0, final=0.1, warmup=10, total=110)
    for step in (10, 35, 60, 85, 110):
        p = (step - 10) / 100
        assert s(step) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
    assert s(110) == pytest.approx(0.1)
    assert s(500) == pytest.approx(0.1)


def test_weight_decay_rises_along_a_cosine():
    wd = Cosine(0.04, 0.4, total=100)
    assert wd(0) == pytest.approx(0.04)
    assert wd(50) == pytest.approx(0.22)
    assert wd(100) == pytest.approx(0.4)


def test_momentum_is_linear():
    m = Linear(0.998, 1.0, total=200)
    assert m(0) == pytest.approx(0.998)
    assert m(100) == pytest.approx(0.999)
    assert m(200) == pytest.approx(1.0)


def test_schedule_scale_truncates_the_schedules():
    cfg = OptimConfig(steps=100, warmup_steps=10, lr=1.0, start_lr=0.0, final_lr=0.0, schedule_scale=1.25)
    sched = Schedules(cfg)
    assert stretched_length(100, 1.25) == 125
    # at the last real step the cosine is 90/115 of the way, not at its end
    assert sched.lr(100) == pytest.approx(0.5 * (1 + math.cos(math.pi * 90 / 115)))
    assert sched.lr(100) > 0.05
    assert sched.wd(100) < 0.4


def test_no_weight_decay_on_biases_and_1d_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups([model])
    assert [p.shape for p in decay["params"]] == [(4, 4)]
    assert len(no_decay["params"]) == 3
    opt = build_optimizer([model], OptimConfig(steps=10, warmup_steps=0))
    Schedules(OptimConfig(steps=10, warmup_steps=0)).apply(opt, 5)
    assert opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[0]["weight_decay"] > 0.04


def test_warmup_longer_than_run_is_refused():
    with pytest.raises(ValueError, match="warmup_steps"):
        OptimConfig(steps=10, warmup_steps=20)

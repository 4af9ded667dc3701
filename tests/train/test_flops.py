import pytest
import torch
from timm.layers import Attention
from torch.utils.flop_counter import FlopCounterMode

from jepa_platform.masks import MaskCollator
from jepa_platform.models.vit import video_vit
from jepa_platform.spec import validate_spec
from jepa_platform.train import flops


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine thread hand-offs cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_spec(**overrides):
    raw = {
        "name": "tiny",
        "backbone": {"kind": "vit", "params": {"size": "custom", "embed_dim": 48, "depth": 2, "num_heads": 3,
                                               "patch_size": 8, "drop_path_rate": 0.1}},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "data": {"train": "never-read.csv", "frames": 4, "resolution": 32},
        "optim": {"batch_size": 2, "steps": 10, "warmup_steps": 0},
    }
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value}
    return validate_spec(raw)


CLIP = (2, 3, 4, 32, 32)


def test_linear_counts_2_b_n_in_out_forward_and_twice_that_backward():
    b, n, fan_in, fan_out = 3, 5, 16, 24
    layer = torch.nn.Linear(fan_in, fan_out)
    x = torch.randn(b, n, fan_in, requires_grad=True)
    forward = 2 * b * n * fan_in * fan_out
    assert flops.count_flops(lambda: layer(x)) == forward
    assert flops.count_flops(lambda: layer(x).sum().backward()) == forward + 2 * forward  # grad input + weight


def test_cpu_attention_counts_qk_and_av_and_is_missed_without_the_mapping():
    b, n, dim, heads = 2, 10, 32, 4
    attn = Attention(dim, num_heads=heads, qkv_bias=True)
    assert attn.fused_attn, "timm must take the SDPA path for this test to mean anything"
    x = torch.randn(b, n, dim, requires_grad=True)
    linears = 2 * b * n * dim * 3 * dim + 2 * b * n * dim * dim  # qkv, proj
    scores_and_values = 4 * b * heads * n * n * (dim // heads)  # QK^T and AV
    assert flops.count_flops(lambda: attn(x)) == linears + scores_and_values

    plain = FlopCounterMode(display=False)  # torch's own registry knows no CPU attention kernel
    with plain:
        attn(x)
    assert plain.get_total_flops() == linears < linears + scores_and_values

    # Backward: linears twice over; the fused kernel recomputes the scores, then four products (5/2 of forward).
    step = flops.count_flops(lambda: attn(x).sum().backward())
    assert step == 3 * linears + scores_and_values + scores_and_values * 5 // 2


def tiny_parts(spec):
    torch.manual_seed(0)
    student, teacher, maskers, notes = flops.build_components(spec)
    assert notes == ()
    return student, teacher, maskers


def test_step_parts_are_positive_and_sum_to_one_global_count_of_the_same_steps():
    spec = tiny_spec()
    student, teacher, maskers = tiny_parts(spec)
    step = flops.measure_step_flops(student, teacher, MaskCollator(maskers, seed=5), CLIP, batches=2)
    assert step.teacher_forward > 0 and step.encoder_train > 0 and step.head_train > 0

    replay = MaskCollator(maskers, seed=5)
    clips = torch.randn(CLIP)
    grid = student.encoder.token_grid(CLIP)

    def train_step():
        masks = replay(CLIP[0], grid)
        with torch.no_grad():
            targets = teacher.targets(clips, masks)
        losses = [teacher.loss(p, t) for p, t in zip(student(clips, masks), targets, strict=True)]
        torch.stack(losses).mean().backward()

    whole = [flops.count_flops(train_step) for _ in range(2)]
    assert step.total() == sum(whole) / 2
    assert step.as_dict()["total"] == step.total()

    replay = MaskCollator(maskers, seed=5)  # the encoder's share is what the encoder alone costs on those masks

    def encoder_alone():
        outputs = student.encoder(clips, keep=[m.context for m in replay(CLIP[0], grid)])
        torch.stack([z.sum() for z in outputs]).sum().backward()

    assert step.encoder_train == sum(flops.count_flops(encoder_alone) for _ in range(2)) / 2


def test_measuring_leaves_weights_grads_rng_modes_and_the_run_masks_untouched():
    spec = tiny_spec()
    student, teacher, maskers = tiny_parts(spec)
    run_collator = MaskCollator(maskers, seed=spec.optim.seed)
    student.eval()
    student.predictor.train()
    weights = {k: v.clone() for k, v in {**student.state_dict(), **teacher.state_dict()}.items()}
    some = next(student.predictor.parameters())
    some.grad = torch.full_like(some, 7.0)
    modes = [m.training for m in student.modules()]
    rng = torch.get_rng_state()

    flops.measure_step_flops(student, teacher, MaskCollator(maskers, seed=123), CLIP, batches=1)

    after = {**student.state_dict(), **teacher.state_dict()}
    assert all(torch.equal(weights[k], after[k]) for k in weights)
    assert torch.equal(some.grad, torch.full_like(some, 7.0))
    assert all(p.grad is None for p in student.parameters() if p is not some)
    assert [m.training for m in student.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)  # drop-path draws from it during the measurement
    assert run_collator.calls == 0


@pytest.mark.parametrize("checkpointing", [False, True])
def test_meta_estimate_equals_the_cpu_measurement_for_the_same_config_and_masks(checkpointing):
    spec = tiny_spec(predictor={"params": {"embed_dim": 32, "depth": 1, "num_heads": 2,
                                           "activation_checkpointing": checkpointing}})
    with flops.weights_on_meta():
        meta_student, meta_teacher, _, _ = flops.build_components(spec)
    assert {p.device.type for p in [*meta_student.parameters(), *meta_student.buffers()]} == {"meta"}
    assert {p.device.type for p in meta_teacher.parameters()} == {"meta"}

    student, teacher, maskers = tiny_parts(spec)
    cpu = flops.measure_step_flops(student, teacher, MaskCollator(maskers, seed=spec.optim.seed), CLIP, batches=2)
    meta = flops.estimate_step_flops(spec, batches=2)
    assert meta.as_dict() == cpu.as_dict()  # exact: attention included, and counted alike


def test_estimate_scales_with_the_global_batch_and_the_schedule_with_the_steps():
    one = flops.estimate_step_flops(tiny_spec())
    report = flops.schedule_flops(tiny_spec(resources={"workers": 3}))
    assert report["global_batch"] == 6
    for name, value in one.as_dict().items():
        assert report["per_step"][name] == pytest.approx(3 * value)
        assert report["schedule"][name] == pytest.approx(3 * value * 10)
    assert "total" in flops.format_schedule(report)


def test_a_frozen_teacher_is_priced_from_its_checkpoint_its_backbone_or_flagged_as_zero(tmp_path):
    ema = flops.estimate_step_flops(tiny_spec())
    backbone = tiny_spec().backbone.model_dump()
    torch.save({"encoder": video_vit(**{**backbone["params"], "img_size": 32, "num_frames": 4}).state_dict()},
               tmp_path / "encoder.pth")

    loaded = flops.estimate_step_flops(tiny_spec(teacher={"kind": "frozen",
                                                          "params": {"checkpoint": str(tmp_path / "encoder.pth")}}))
    assert loaded.as_dict() == ema.as_dict() and loaded.notes == ()  # same architecture as the EMA teacher

    later = str(tmp_path / "stage1")  # a SALT stage-2 spec, priced before stage 1 has written its checkpoint
    priced = flops.estimate_step_flops(tiny_spec(teacher={"kind": "frozen",
                                                          "params": {"checkpoint": later, "backbone": backbone}}))
    assert priced.as_dict() == ema.as_dict()
    assert "estimated" in priced.notes[0] and "stage1" in priced.notes[0]

    unknown = flops.estimate_step_flops(tiny_spec(teacher={"kind": "frozen", "params": {"checkpoint": later}}))
    assert unknown.teacher_forward == 0 and "not counted" in unknown.notes[0]
    assert (unknown.encoder_train, unknown.head_train) == (ema.encoder_train, ema.head_train)


def test_a_run_counts_its_flops_once_on_what_it_built_as_jepa_flops_does(tmp_path, monkeypatch):
    """Plain PyTorch `run_training` with a frozen teacher: its checkpoint is read once (the count uses the
    teacher the run built), and flops.json holds what `jepa flops` (`estimate_step_flops`) prints."""
    import json

    from jepa_platform.teachers import frozen
    from jepa_platform.train.job import run_training

    backbone = tiny_spec().backbone.model_dump()
    torch.save({"encoder": video_vit(**{**backbone["params"], "img_size": 32, "num_frames": 4}).state_dict()},
               tmp_path / "encoder.pth")
    spec = validate_spec({**tiny_spec().resolved(), "name": "counted", "storage": {"output": str(tmp_path)},
                          "data": {"dataset": "synthetic", "frames": 4, "resolution": 32, "loader_workers": 0,
                                   "params": {"videos_per_class": 1, "size": 32}},
                          "optim": {"batch_size": 2, "steps": 1, "warmup_steps": 0},
                          "teacher": {"kind": "frozen", "params": {"checkpoint": str(tmp_path / "encoder.pth")}}})
    expected = flops.estimate_step_flops(spec).as_dict()
    reads = []
    load = frozen.encoder_source
    monkeypatch.setattr(frozen, "encoder_source", lambda *a, **k: reads.append(a) or load(*a, **k))
    run_training(spec)
    assert len(reads) == 1
    assert json.loads((tmp_path / "counted" / "flops.json").read_text())["per_step"] == expected

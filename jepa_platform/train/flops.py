"""FLOPs of a training step, per component, for compute-matched comparisons (V-JEPA vs SALT).

Counting uses torch.utils.flop_counter (matmuls, convolutions, attention; elementwise ops, norms and
losses count as zero) with the CPU attention kernels added: on CPU, SDPA dispatches to
`_scaled_dot_product_flash_attention_for_cpu` (and its backward), which FlopCounterMode does not know;
without them a ViT step is undercounted by a fifth to a third. On the meta device SDPA runs its math
path, whose backward is one matmul short of the fused kernels' (they recompute the attention matrix);
`measure_step_flops` sends meta SDPA to the CPU flash kernel, so meta, CPU and GPU counts agree.

A step is split three ways (`StepFlops`): the teacher's forward, the student encoder's forward and
backward, and the head's (predictor or pixel decoder) forward and backward. Forward FLOPs are split by
the counter's per-module counts. Backward FLOPs are not: torch's module tracker brackets a module's
backward by the gradients of its outputs and inputs, and with one encoder call returning one output per
mask and the predictor called once per mask the brackets overlap, so per-module backward counts neither
add up nor land where they belong (a tiny two-mask step: the encoder and predictor rows add up to 87% of the total).
Instead the backward runs as two `autograd.grad` passes, loss -> head parameters and encoder outputs,
then encoder outputs -> encoder parameters, each under its own counter. Together they do exactly the
work of `loss.backward()` (tests check the sum), and neither touches `.grad`.

`estimate_step_flops(spec)` does this on the meta device, so a paper-scale run (ViT-L, batch 3072) is
priced without memory, and `schedule_flops(spec)` multiplies it out over the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from jepa_platform.masks.base import Masks
from jepa_platform.spec import ComponentSpec, JobSpec

aten = torch.ops.aten

SAMPLE_BATCH = 2
"""Clips per step that `estimate_step_flops` runs on meta; FLOPs are scaled linearly to the global batch."""

IN_CHANNELS = 3
"""Channels of the clips `estimate_step_flops` feeds the job (RGB, as the datasets give)."""


# -- counting ------------------------------------------------------------------------------------------
def _shape(x: Any) -> Any:
    return x.shape if isinstance(x, torch.Tensor) else x


def _cpu_sdpa_flop(query, key, value, *args, out_val=None, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(_shape(query), _shape(key), _shape(value))


def _cpu_sdpa_backward_flop(grad_out, query, key, value, *args, out_val=None, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(_shape(grad_out), _shape(query), _shape(key), _shape(value))


CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}
"""Formulas for the CPU attention kernels; they take shapes (FlopCounterMode's default) or tensors."""


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that also counts the CPU attention kernels."""
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs of one call of `fn` (forward and, if `fn` calls it, backward)."""
    counter = flop_counter()
    with counter:
        fn()
    return counter.get_total_flops()


@contextlib.contextmanager
def fused_attention_on_meta() -> Iterator[None]:
    """While active, SDPA on meta tensors runs the CPU flash kernel (which has a meta implementation).

    On meta, SDPA would take its math path, whose backward reuses the saved attention matrix (4 matmuls);
    the fused kernels that run on CPU and GPU (flash, efficient, cudnn) recompute it (5), and that is
    what the counter charges them. With this a meta count equals a CPU or GPU count. It swaps
    `torch.nn.functional.scaled_dot_product_attention` (other devices pass straight through) rather than
    using a TorchFunctionMode, because activation checkpointing recomputes the forward in the backward,
    where such modes are not active.
    """
    original = F.scaled_dot_product_attention

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if query.device.type != "meta" or enable_gqa:
            return original(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
        return aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
        )[0]

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def module_flops(counter: FlopCounterMode, name: str) -> int:
    """FLOPs the counter attributed to module `name` (its tracker's name: root class, then the FQN)."""
    return sum(counter.get_flop_counts().get(name, {}).values())


# -- one step, per component ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StepFlops:
    """FLOPs of one training step. `notes` says where a number is an estimate or missing."""

    teacher_forward: float
    encoder_train: float
    """Student encoder, forward + backward."""
    head_train: float
    """Predictor (or pixel decoder) and loss, forward + backward."""
    notes: tuple[str, ...] = ()

    def total(self) -> float:
        return self.teacher_forward + self.encoder_train + self.head_train

    def as_dict(self) -> dict[str, float]:
        return {
            "teacher_forward": self.teacher_forward,
            "encoder_train": self.encoder_train,
            "head_train": self.head_train,
            "total": self.total(),
        }

    def scaled(self, factor: float) -> StepFlops:
        return dataclasses.replace(
            self,
            teacher_forward=self.teacher_forward * factor,
            encoder_train=self.encoder_train * factor,
            head_train=self.head_train * factor,
        )


MasksFn = Callable[[int, tuple[int, int, int]], list[Masks]]


def measure_step_flops(
    student: nn.Module,
    teacher: Any,
    collator_like: MasksFn,
    clip_shape: Sequence[int],
    batches: int = 3,
    device: str | torch.device = "cpu",
) -> StepFlops:
    """Mean FLOPs per step over `batches` steps of random clips [B, C, T, H, W] on `device`.

    `student` is a `JepaStudent` (`.encoder`, `.predictor`) and `teacher` a `Teacher` (`plugins.contracts`), both
    already on `device`; `collator_like(batch_size, grid)` gives each step's masks (pass a fresh
    `MaskCollator`, so a run's mask sequence is not advanced). Nothing changes: no optimiser step,
    `.grad` untouched, RNG state and train/eval modes restored. Runs in fp32: autocast changes the
    speed of the FLOPs, not their number. What runs is what counts: with activation checkpointing the
    recomputed forward is in the backward's share.
    """
    device = torch.device(device)
    modes = [(m, m.training) for m in student.modules()]
    generator = torch.Generator().manual_seed(0)
    grid = student.encoder.token_grid(clip_shape)
    steps = []
    cuda = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), fused_attention_on_meta():
        student.train()
        try:
            for _ in range(batches):
                clips = torch.randn(tuple(clip_shape), generator=generator).to(device)
                masks = [m.to(device) for m in collator_like(clip_shape[0], grid)]
                steps.append(_one_step(student, teacher, clips, masks))
        finally:
            for module, training in modes:
                module.training = training
    return StepFlops(*(sum(s[i] for s in steps) / batches for i in range(3)))


def _one_step(student: nn.Module, teacher: Any, clips: torch.Tensor, masks: list[Masks]) -> tuple[int, int, int]:
    """(teacher forward, encoder forward + backward, head forward + backward) FLOPs of one step."""
    with flop_counter() as counter, torch.no_grad():
        targets = teacher.targets(clips, masks)
    teacher_fw = counter.get_total_flops()

    outputs: list[torch.Tensor] = []
    hook = student.encoder.register_forward_hook(lambda _m, _i, out: outputs.extend(_tensors(out)))
    try:
        with flop_counter() as forward:
            predictions = student(clips, masks)
            losses = [teacher.loss(p.float(), t.float()) for p, t in zip(predictions, targets, strict=True)]
            loss = torch.stack(losses).mean()
    finally:
        hook.remove()
    encoder_fw = module_flops(forward, f"{type(student).__name__}.encoder")
    head_fw = forward.get_total_flops() - encoder_fw  # the predictor and the loss

    contexts = [z for z in outputs if z.requires_grad]
    encoder_params = [p for p in student.encoder.parameters() if p.requires_grad]
    encoder_ids = {id(p) for p in encoder_params}
    head_params = [p for p in student.parameters() if p.requires_grad and id(p) not in encoder_ids]
    with flop_counter() as head_bw:
        grads = torch.autograd.grad(loss, head_params + contexts, allow_unused=True)
    used = [(z, g) for z, g in zip(contexts, grads[len(head_params):], strict=True) if g is not None]
    with flop_counter() as encoder_bw:
        if used and encoder_params:
            torch.autograd.grad([z for z, _ in used], encoder_params, [g for _, g in used], allow_unused=True)
    return (
        teacher_fw,
        encoder_fw + encoder_bw.get_total_flops(),
        head_fw + head_bw.get_total_flops(),
    )


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


# -- a job's step on the meta device -------------------------------------------------------------------
@contextlib.contextmanager
def weights_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters and buffers moved to the meta device as they register them.

    Plain `with torch.device("meta")` cannot build our models: their constructors read values
    (`torch.linspace(...).tolist()` for drop-path rates, sin-cos position tables), which meta tensors do
    not have. Here each tensor is made on CPU and moved at once, so peak memory is one tensor; init then
    runs on meta. While active this patches `nn.Module` for the whole process (as accelerate's
    `init_empty_weights` does): do not build real models on another thread meanwhile.
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


class _StandInTeacher(nn.Module):
    """Takes the place of a teacher that cannot be built here: targets from `encoder` on the full clip
    (the forward a frozen-encoder teacher does), or zeros without one (then its forward counts 0)."""

    def __init__(self, target_dim: int, encoder: nn.Module | None = None):
        super().__init__()
        self.target_dim, self.encoder = target_dim, encoder

    @torch.no_grad()
    def targets(self, clips: torch.Tensor, masks: list[Masks]) -> list[torch.Tensor]:
        if self.encoder is None:
            return [clips.new_zeros(*m.targets.shape, self.target_dim) for m in masks]
        from jepa_platform.teachers.latent import layer_normed_targets

        return layer_normed_targets(self.encoder(clips), masks)

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(prediction, target)


def _teacher_backbone(spec: JobSpec) -> ComponentSpec | None:
    """The teacher's own encoder, when its params name one: `backbone: {kind, params}` or bare params of
    the student's backbone kind."""
    backbone = spec.teacher.params.get("backbone")
    if not isinstance(backbone, dict):
        return None
    if "kind" in backbone:
        return ComponentSpec(kind=backbone["kind"], params=backbone.get("params") or {})
    return ComponentSpec(kind=spec.backbone.kind, params=backbone)


def _build_teacher(spec: JobSpec, encoder: nn.Module) -> tuple[Any, tuple[str, ...]]:
    """The job's teacher, or a stand-in (with a note why) when its factory fails here, e.g. a
    frozen teacher whose checkpoint is not written yet."""
    from jepa_platform.plugins.manager import registry
    from jepa_platform.train.build import build_teacher

    kind, data = spec.teacher.kind, spec.data
    try:
        return build_teacher(spec, encoder), ()
    except Exception as e:  # any failure means the same here: price a stand-in, and say so
        why = f"teacher {kind!r} could not be built for counting ({type(e).__name__}: {e})"
    backbone = _teacher_backbone(spec)
    if backbone is None:
        note = f"{why}; its params name no backbone, so teacher_forward is 0 (not counted)"
        return _StandInTeacher(encoder.embed_dim), (note,)
    own = registry("backbones").get(backbone.kind).build(
        backbone.params, img_size=data.resolution, num_frames=data.frames
    )
    note = f"{why}; teacher_forward estimated with a {backbone.kind!r} encoder from teacher.params.backbone"
    return _StandInTeacher(own.embed_dim, own.requires_grad_(False).eval()), (note,)


def build_components(spec: JobSpec) -> tuple[nn.Module, Any, list[Any], tuple[str, ...]]:
    """(JepaStudent, teacher, maskers, notes), assembled by `train.build.build_components` as for training;
    a teacher that cannot be built here is priced by a stand-in, and `notes` says so."""
    from jepa_platform.train import build

    notes: list[str] = []

    def teacher_for(spec: JobSpec, encoder: nn.Module) -> Any:
        teacher, why = _build_teacher(spec, encoder)
        notes.extend(why)
        return teacher

    student, teacher, maskers = build.build_components(spec, teacher_for)
    return student, teacher, maskers, tuple(notes)


def _first_rows(masks: Masks, n: int) -> Masks:
    return Masks(context=masks.context[:n], targets=masks.targets[:n], masked=masks.masked[:n])


def estimate_step_flops(spec: JobSpec, batches: int = 2) -> StepFlops:
    """FLOPs of one global step of the job (all workers), before it runs (`jepa flops`): its components
    built as for training with their weights on the meta device (no compute, no memory), then counted by
    `count_step_flops`, as the run counts the components it built."""
    with torch.random.fork_rng(devices=[]), weights_on_meta(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*to a meta parameter.*")  # a teacher loading its weights
        student, teacher, maskers, notes = build_components(spec)
    step = count_step_flops(spec, student, teacher, maskers, device="meta", batches=batches)
    return dataclasses.replace(step, notes=notes)


def count_step_flops(spec: JobSpec, student: nn.Module, teacher: Any, maskers: Sequence[Any],
                     device: str | torch.device, batches: int = 2) -> StepFlops:
    """FLOPs of one global step of the job (all workers), counted on its components as built, on `device`
    (the meta device counts without computing; counts are the same on every device).

    They run on `SAMPLE_BATCH` clips, and the count is scaled to `optim.batch_size * resources.workers`.
    Masks are drawn at the per-worker batch size, as in training (each mask is cut to its batch's smallest
    count, so token counts depend on it), by a fresh collator seeded like the run's, and their first rows
    used. Nothing of the components changes (`measure_step_flops`).
    """
    from jepa_platform.masks import MaskCollator

    per_worker = spec.optim.batch_size
    sample = min(SAMPLE_BATCH, per_worker)
    collator = MaskCollator(maskers, seed=spec.optim.seed)

    def masks(batch_size: int, grid: tuple[int, int, int]) -> list[Masks]:
        return [_first_rows(m, batch_size) for m in collator(per_worker, grid)]

    res = spec.data.resolution
    shape = (sample, IN_CHANNELS, spec.data.frames, res, res)
    step = measure_step_flops(student, teacher, masks, shape, batches=batches, device=device)
    return step.scaled(per_worker * spec.resources.workers / sample)


def schedule_flops(spec: JobSpec, batches: int = 2) -> dict[str, Any]:
    """Per-step and whole-run FLOPs per component (`jepa flops SPEC`)."""
    step = estimate_step_flops(spec, batches=batches)
    steps = spec.optim.steps
    return {
        "global_batch": spec.optim.batch_size * spec.resources.workers,
        "steps": steps,
        "per_step": step.as_dict(),
        "schedule": {k: v * steps for k, v in step.as_dict().items()},
        "notes": list(step.notes),
    }


def format_flops(value: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}FLOP"
    return f"{value:.3g} FLOP"


def format_schedule(report: dict[str, Any]) -> str:
    """`schedule_flops`'s result as a table: per step and over the run, per component."""
    width = max(len(k) for k in report["per_step"])
    lines = [
        f"global batch {report['global_batch']}, {report['steps']} steps",
        f"{'':{width}}  {'per step':>14}  {'whole run':>14}",
    ]
    for name, per_step in report["per_step"].items():
        lines.append(f"{name:{width}}  {format_flops(per_step):>14}  {format_flops(report['schedule'][name]):>14}")
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)

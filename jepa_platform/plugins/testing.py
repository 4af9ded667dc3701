"""Test helpers for plugin authors: an inline-plugin fixture and a contract check per component.

In your plugin's ``tests/conftest.py``::

    from jepa_platform.plugins.testing import inline_plugin  # noqa: F401  (a pytest fixture)

then, in a test module::

    from jepa_platform.plugins import registry
    from jepa_platform.plugins.testing import check_component, contract_check_all

    def test_my_components_keep_the_contract():
        contract_check_all(provider="my-plugin")  # every component the installed plugin registers

    def test_hooks_before_installing(inline_plugin):
        inline_plugin(my_plugin.hooks, name="dev")  # registered for this test only
        check_component(registry("maskers").get("my_masker"))

The checks build each component small, on CPU, with its default params (shrunk where the params
model has ``size``/``depth``/``embed_dim``), and assert its family's protocol in
``jepa_platform.plugins.contracts`` (the members it declares, and what the training loop relies on
them to do), including the optional capabilities a component declares. Nothing is downloaded; the
dataset check writes a few tiny synthetic videos to a temporary folder.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn as nn
from pydantic import ValidationError

from jepa_platform.plugins import contracts, manager
from jepa_platform.plugins.registries import FAMILIES, Component

BATCH = 2
CLIP = (3, 4, 32, 32)  # C, T, H, W of the tiny clips backbones are checked on
# Shrinking overrides, each group applied when the params model has all its fields and accepts it.
TINY = ({"size": "tiny"}, {"depth": 2}, {"embed_dim": 64, "num_heads": 4})
MASK_GRIDS = ((8, 14, 14), (2, 4, 4))  # V-JEPA's 16x224 grid, and a small one


class ContractSkip(Exception):
    """A component the contract check cannot build on its own; the message says why."""


@dataclass(frozen=True)
class ContractResult:
    family: str
    name: str
    provider: str
    skipped: str | None = None  # the reason, when the component was not checked


# -- inline plugins -------------------------------------------------------------------------------------
class InlinePlugins:
    """Registers plugin objects (modules, or instances with hookimpl methods) without installing them.

    Each call rebuilds the process-wide plugin set from the built-ins, the installed plugins (unless
    `load_entry_points=False`) and every object given so far, and returns it; `restore()` puts back
    the set that was current when this object was made.
    """

    def __init__(self) -> None:
        self.previous = manager._current
        self.extra: dict[str, Any] = {}

    def __call__(self, obj: Any, name: str = "inline", load_entry_points: bool = True) -> manager.Plugins:
        plugins = manager.Plugins(load_entry_points=load_entry_points, extra={**self.extra, name: obj})
        self.extra[name] = obj
        manager.set_plugins(plugins)
        return plugins

    def restore(self) -> None:
        manager.set_plugins(self.previous)


@pytest.fixture
def inline_plugin() -> Iterator[InlinePlugins]:
    """`inline_plugin(obj, name="inline")` registers `obj`'s hookimpls for this test only."""
    inline = InlinePlugins()
    yield inline
    inline.restore()


# -- the contract ---------------------------------------------------------------------------------------
def contract_check_all(
    family: str | None = None,
    *,
    provider: str | None = None,
    plugins: manager.Plugins | None = None,
    skip: Mapping[str, str] | None = None,
) -> list[ContractResult]:
    """Checks every registered component (of one family / one provider); raises AssertionError
    listing every failure. `skip` maps "family/name" to a reason, for components that need params
    or resources the check cannot make up."""
    plugins = plugins or manager.get_plugins()
    skip = skip or {}
    results, failures = [], []
    for fam in [family] if family else FAMILIES:
        for component in plugins.registry(fam):
            if provider and component.provider != provider:
                continue
            reason = skip.get(f"{fam}/{component.name}")
            try:
                reason = reason or check_component(component)
            except Exception as e:  # every failure is reported, not just the first
                who = f"{fam}/{component.name} (from {component.provider!r})"
                failures.append(f"{who}: {type(e).__name__}: {e}")
                continue
            results.append(ContractResult(fam, component.name, component.provider, reason))
    if failures:
        raise AssertionError("components that break the contract:\n  " + "\n  ".join(failures))
    return results


def check_component(component: Component, params: dict[str, Any] | None = None) -> str | None:
    """Builds `component` small on CPU and exercises its interface; raises on a broken contract.

    Returns None when checked, or the reason it could not be (e.g. params without defaults).
    `params` replaces the default/tiny params.
    """
    try:
        params = tiny_params(component) if params is None else params
        CHECKS[component.family](component, params)
    except ContractSkip as e:
        return str(e)
    return None


def tiny_params(component: Component) -> dict[str, Any]:
    """Default params, with each `TINY` group the params model has and accepts."""
    fields = component.config.model_fields
    required = [name for name, f in fields.items() if f.is_required()]
    if required:
        raise ContractSkip(f"params {required} have no default; pass params= to check_component")
    params: dict[str, Any] = {}
    for group in TINY:
        if group.keys() <= fields.keys():
            try:
                component.config.model_validate({**params, **group})
            except ValidationError:
                continue
            params.update(group)
    return params


def tiny_encoder() -> nn.Module:
    """A one-block VideoViT over `CLIP`, the student/context encoder for predictor and teacher checks."""
    from jepa_platform.models.vit import VideoViT

    return VideoViT(img_size=CLIP[-1], num_frames=CLIP[1], embed_dim=32, depth=1, num_heads=2)


def random_clips(seed: int = 0) -> torch.Tensor:
    return torch.randn(BATCH, *CLIP, generator=torch.Generator().manual_seed(seed))


def _shape(x: Any, shape: tuple[int, ...], what: str) -> None:
    assert isinstance(x, torch.Tensor), f"{what}: expected a tensor, got {type(x).__name__}"
    assert tuple(x.shape) == shape, f"{what}: expected shape {list(shape)}, got {list(x.shape)}"
    assert torch.isfinite(x).all(), f"{what}: not finite"


def _follows(obj: Any, protocol: type, what: str) -> None:
    gaps = contracts.missing(obj, protocol)
    assert not gaps, f"{what} lacks {gaps}, which plugins.contracts.{protocol.__name__} requires"


def _trains(module: nn.Module, output: torch.Tensor, what: str) -> None:
    output.float().pow(2).mean().backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads), f"{what}: no gradient reaches the parameters"


# -- per family -----------------------------------------------------------------------------------------
def check_backbone(component: Component, params: dict[str, Any]) -> None:
    """Encoder interface: attributes, token_grid, forward with keep=None | tensor | list, return_layers;
    kept tokens see nothing of the dropped ones; gradients flow."""
    encoder = component.build(params, img_size=CLIP[-1], num_frames=CLIP[1])
    _follows(encoder, contracts.Backbone, "the encoder")
    clips = random_clips()
    grid = tuple(encoder.token_grid(clips.shape))
    assert grid == tuple(encoder.grid), f"token_grid: {grid} for {list(clips.shape)}, grid: {encoder.grid}"
    n, dim = math.prod(grid), encoder.embed_dim
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    keep, other = order[: n // 2].sort().values, order[n // 2 :].sort().values
    keep_b, other_b = keep.expand(BATCH, -1), other.expand(BATCH, -1)
    encoder.eval()
    with torch.no_grad():
        full = encoder(clips)
        _shape(full, (BATCH, n, dim), "forward(clips)")
        part = encoder(clips, keep=keep_b)
        _shape(part, (BATCH, len(keep), dim), "forward(clips, keep=[B, K])")
        both = encoder(clips, keep=[keep_b, other_b])
        assert isinstance(both, (list, tuple)) and len(both) == 2, "keep=[a, b] must give a list of 2 outputs"
        _shape(both[1], (BATCH, len(other), dim), "forward(clips, keep=[a, b])[1]")
        assert torch.allclose(both[0], part, atol=1e-5), "a list of keeps must match keeping each alone"
        layers = encoder(clips, return_layers=[0, -1])
        assert isinstance(layers, (list, tuple)) and len(layers) == 2, "return_layers=[0, -1] must give 2"
        _shape(layers[0], (BATCH, n, dim), "forward(clips, return_layers=[0, -1])[0]")
        assert torch.allclose(layers[1], full, atol=1e-5), "return_layers=[-1] must match the plain output"
        # Context isolation: changing the pixels of one dropped token must not change the kept features.
        t, rest = divmod(int(other[0]), grid[1] * grid[2])
        h, w = divmod(rest, grid[2])
        ts, ps = encoder.tubelet_size, encoder.patch_size
        changed = clips.clone()
        changed[:, :, t * ts : (t + 1) * ts, h * ps : (h + 1) * ps, w * ps : (w + 1) * ps] += 3.0
        assert not torch.allclose(encoder(changed), full, atol=1e-5), "the output ignores a changed patch"
        assert torch.allclose(encoder(changed, keep=keep_b), part, atol=1e-5), (
            "features of kept tokens depend on a dropped token: masked content leaks into the context"
        )
    encoder.train()
    _trains(encoder, encoder(clips, keep=keep_b), "backbone")


def check_masker(component: Component, params: dict[str, Any]) -> None:
    """Masks invariants on each grid: shapes and dtypes, sorted unique rows in range, context and
    targets disjoint and non-empty, every target masked, no context token masked; reproducible."""
    from jepa_platform.masks.base import Masks

    masker = component.build(params)
    assert callable(masker), "a masker must be callable as masker(batch_size, grid, generator)"
    for grid in MASK_GRIDS:
        n = math.prod(grid)
        masks = masker(BATCH + 1, grid, torch.Generator().manual_seed(0))
        where = f"on grid {grid}"
        assert isinstance(masks, Masks), f"{where}: expected Masks, got {type(masks).__name__}"
        assert masks.masked.dtype == torch.bool and tuple(masks.masked.shape) == (BATCH + 1, n), (
            f"{where}: masked must be bool [{BATCH + 1}, {n}], "
            f"got {masks.masked.dtype} {list(masks.masked.shape)}"
        )
        for label, index in (("context", masks.context), ("targets", masks.targets)):
            assert index.dtype == torch.long and index.ndim == 2 and index.shape[0] == BATCH + 1, (
                f"{where}: {label} must be long [B, K], got {index.dtype} {list(index.shape)}"
            )
            assert index.shape[1] > 0, f"{where}: {label} is empty"
            assert ((index >= 0) & (index < n)).all(), f"{where}: {label} index out of range"
            assert (index[:, 1:] > index[:, :-1]).all(), f"{where}: {label} rows must be sorted, no repeats"
        assert masks.masked.gather(1, masks.targets).all(), f"{where}: a target token is not masked"
        assert not masks.masked.gather(1, masks.context).any(), f"{where}: a context token is masked"
        in_context = torch.zeros_like(masks.masked).scatter_(1, masks.context, True)
        assert not in_context.gather(1, masks.targets).any(), f"{where}: context and targets overlap"
        again = masker(BATCH + 1, grid, torch.Generator().manual_seed(0))
        assert torch.equal(again.context, masks.context) and torch.equal(again.targets, masks.targets), (
            f"{where}: the same generator seed gave different masks; draw randomness only from `generator`"
        )


def _tiny_masks(grid: tuple[int, int, int]):
    from jepa_platform.masks import RandomMasker

    return RandomMasker(ratio=0.5)(BATCH, grid, torch.Generator().manual_seed(0))


def check_predictor(component: Component, params: dict[str, Any]) -> None:
    """Predictor(context, context_index, target_index, mask_index, grid) -> [B, Nt, target_dim]."""
    encoder = tiny_encoder()
    target_dim = 24  # unlike the encoder's width, as with SALT's small teacher
    predictor = component.build(
        params, embed_dim=encoder.embed_dim, grid=encoder.grid, target_dim=target_dim, num_mask_tokens=2
    )
    masks = _tiny_masks(encoder.grid)
    context = encoder(random_clips(), keep=masks.context)
    out = predictor(context, masks.context, masks.targets, mask_index=1, grid=encoder.grid)
    _shape(out, (BATCH, masks.targets.shape[1], target_dim), "predictor output")
    _trains(predictor, out, "predictor")


def check_teacher(component: Component, params: dict[str, Any]) -> None:
    """Teacher strategy: one gradient-free target [B, Nt, target_dim] per mask, a finite scalar loss,
    after_step, and a state_dict that loads back."""
    student = tiny_encoder()
    teacher = component.build(params, student=student, steps=10, schedule_scale=1.25)
    _follows(teacher, contracts.Teacher, "the teacher")
    masks = [_tiny_masks(student.grid)] * 2
    targets = teacher.targets(random_clips(), masks)
    assert len(targets) == 2, f"targets: expected one tensor per mask (2), got {len(targets)}"
    for i, (t, m) in enumerate(zip(targets, masks, strict=True)):
        _shape(t, (BATCH, m.targets.shape[1], teacher.target_dim), f"targets[{i}]")
        assert not t.requires_grad, f"targets[{i}] carries gradients; the loss must not train the teacher"
    prediction = torch.randn_like(targets[0], requires_grad=True)
    loss = teacher.loss(prediction, targets[0])
    _shape(loss, (), "loss")
    loss.backward()
    assert prediction.grad is not None, "the loss does not reach the prediction"
    teacher.after_step(1)
    teacher.load_state_dict(teacher.state_dict())
    if isinstance(teacher, contracts.ReportsMetrics):
        values = teacher.metrics(1)
        assert isinstance(values, Mapping) and all(isinstance(v, float | int) for v in values.values()), (
            "metrics(step) must give named numbers"
        )
    if isinstance(teacher, contracts.OwnsPredictor):  # its own head, in place of the spec's predictor
        head = teacher.make_predictor(student, num_mask_tokens=2)
        context = student(random_clips(), keep=masks[0].context)
        out = head(context, masks[0].context, masks[0].targets, mask_index=1, grid=student.grid)
        _shape(out, (BATCH, masks[0].targets.shape[1], teacher.target_dim), "make_predictor(...) output")


def check_probe(component: Component, params: dict[str, Any]) -> None:
    """Probe: features [B, N, embed_dim] -> logits [B, num_classes]."""
    probe = component.build(params, embed_dim=32, num_classes=3)
    out = probe(torch.randn(BATCH, 8, 32))
    _shape(out, (BATCH, 3), "probe logits")
    _trains(probe, out, "probe")


def check_dataset(component: Component, params: dict[str, Any]) -> None:
    """Dataset over a tiny synthetic `path label` manifest: a length and {"clip": [C, T, H, W], "label"}."""
    from jepa_platform.data.synthetic import write_synthetic_dataset
    from jepa_platform.spec import DataSpec

    with tempfile.TemporaryDirectory() as folder:
        manifest = str(write_synthetic_dataset(folder, videos_per_class=1, frames=8, size=32))
        data = DataSpec(train=manifest, frames=CLIP[1], stride=1, resolution=CLIP[-1], loader_workers=0)
        dataset = component.build(params, data=data, source=manifest, train=True)
        _follows(dataset, contracts.Dataset, "the dataset")
        if isinstance(dataset, contracts.EpochAware):
            dataset.set_epoch(1)
        assert len(dataset) > 0, "dataset is empty"
        sample = dataset[0]
        assert isinstance(sample, Mapping) and {"clip", "label"} <= sample.keys(), (
            "a sample must be a mapping with 'clip' and 'label'"
        )
        _shape(sample["clip"].float(), CLIP, "sample['clip']")


def check_runner(component: Component, params: dict[str, Any]) -> None:
    """Runner: builds without side effects and can `submit` a job (not run here: that needs a cluster)."""
    runner = component.build(params)
    _follows(runner, contracts.Runner, "the runner")


def check_logger(component: Component, params: dict[str, Any]) -> None:
    """Run logger: writes under a folder it is given, takes rows, flushes; resumable from a step."""
    with tempfile.TemporaryDirectory() as folder:
        logger = component.build(params, url=f"{folder}/run", resume_step=None)
        _follows(logger, contracts.RunLogger, "the logger")
        for step in (1, 2):
            logger.log({"step": step, "loss": 1.0 / step, "lr": 1e-3})
        logger.flush()
        component.build(params, url=f"{folder}/run", resume_step=1).flush()


CHECKS: dict[str, Callable[[Component, dict[str, Any]], None]] = {
    "backbones": check_backbone,
    "maskers": check_masker,
    "predictors": check_predictor,
    "teachers": check_teacher,
    "probes": check_probe,
    "datasets": check_dataset,
    "runners": check_runner,
    "loggers": check_logger,
}

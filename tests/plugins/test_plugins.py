"""Plugins end to end: the installed example plugin is found, validated, blockable, keeps the
component contract and trains; clashes and contract breaches are reported by name."""

from __future__ import annotations

import math

import pytest
import torch

from jepa_platform.data.synthetic import write_synthetic_dataset
from jepa_platform.layout import CHECKPOINTS
from jepa_platform.masks import Masks, masks_from_masked
from jepa_platform.models.vit import VideoViT
from jepa_platform.plugins import PluginError, get_plugins, hookimpl, registry, testing
from jepa_platform.plugins.manager import DISABLE_ENV, Plugins
from jepa_platform.plugins.testing import InlinePlugins, check_component, contract_check_all
from jepa_platform.spec import SpecError, validate_spec
from jepa_platform.storage import join
from jepa_platform.train.build import build_trainer
from jepa_platform.train.checkpoint import CheckpointStore
from jepa_platform.train.job import run_training

inline_plugin = testing.inline_plugin  # the fixture plugin authors get from their conftest.py

EXAMPLE_COMPONENTS = {"backbones": ["factorized_vit"], "maskers": ["future"], "runners": ["inprocess"]}


def spec_with(**fields):
    return validate_spec({"name": "x", "data": {"train": "x.csv"}, **fields})


def test_the_installed_example_plugin_is_discovered_with_its_version_and_components():
    info = {p.name: p for p in get_plugins().info()}
    assert info["example"].version == "0.1.0"
    assert info["example"].components == EXAMPLE_COMPONENTS
    assert info["example"].hooks == ["jepa_register_backbones", "jepa_register_maskers", "jepa_register_runners"]
    assert "builtin" in info


def test_example_components_are_listed_in_the_registries_as_provided_by_example():
    for family, names in EXAMPLE_COMPONENTS.items():
        for name in names:
            component = registry(family).get(name)
            assert component.provider == "example"
            assert component.description  # the factory's first docstring line
    assert registry("maskers").get("multiblock").provider == "builtin"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"gap": -1}, "gap: Input should be greater than or equal to 0"),
        ({"context_fraction": [0.0, 0.5]}, "context_fraction[0]: Input should be greater than 0"),
        ({"context_fraction": [0.8, 0.4]}, "context_fraction: Value error, min must be <= max"),
        ({"gaps": 1}, "gaps: Extra inputs are not permitted"),
    ],
)
def test_example_masker_params_are_validated_by_its_own_model_with_their_spec_path(params, error):
    with pytest.raises(SpecError) as e:
        spec_with(masks=[{"kind": "future", "params": params}, {"kind": "multiblock"}])
    assert f"masks[0].params.{error}" in str(e.value)


def test_example_params_get_their_defaults_and_normalised_values_in_the_resolved_spec():
    spec = spec_with(
        backbone={"kind": "factorized_vit", "params": {"size": "small"}},
        masks=[{"kind": "future", "params": {"context_fraction": 0.25}}],
    )
    assert spec.masks[0].params == {"context_fraction": [0.25, 0.25], "gap": 0}
    assert spec.backbone.params["patch_size"] == 16
    with pytest.raises(SpecError, match=r"backbone.params: Value error, size 'custom' needs depth, num_heads"):
        spec_with(backbone={"kind": "factorized_vit", "params": {"size": "custom", "embed_dim": 8}})


def test_disable_plugins_env_blocks_the_example_plugin(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "example")
    plugins = Plugins()
    assert "future" not in plugins.registry("maskers")
    assert "factorized_vit" not in plugins.registry("backbones")
    assert "multiblock" in plugins.registry("maskers")
    shown = {p.name: p.blocked for p in plugins.info(include_blocked=True)}
    assert shown == {"builtin": False, "example": True}


class DuplicateMultiblock:
    @hookimpl
    def jepa_register_maskers(self, register):
        register("multiblock", lambda params: None)


def test_a_name_registered_twice_is_an_error_naming_both_providers(inline_plugin):
    with pytest.raises(PluginError, match=r"'multiblock' is registered twice: by 'builtin' and by 'dup'"):
        inline_plugin(DuplicateMultiblock(), name="dup")


class EveryOtherStep:
    """Inline masker: context = even time steps, targets = odd ones."""

    @hookimpl
    def jepa_register_maskers(self, register):
        def build(params):
            """Interleaved time steps."""

            def masker(batch_size, grid, generator):
                t, h, w = grid
                odd = (torch.arange(t * h * w) // (h * w)) % 2 == 1
                return masks_from_masked(odd.expand(batch_size, -1).clone(), "prefix", generator)

            return masker

        register("every_other_step", build)


def test_an_inline_plugin_is_registered_only_until_restored():
    before = get_plugins()
    inline = InlinePlugins()
    inline(EveryOtherStep(), name="interleave", load_entry_points=False)
    assert registry("maskers").get("every_other_step").provider == "interleave"
    assert "future" not in registry("maskers")  # entry points were not loaded
    assert check_component(registry("maskers").get("every_other_step")) is None
    inline.restore()
    assert get_plugins() is before and "every_other_step" not in registry("maskers")


def test_every_registered_component_keeps_the_contract():
    results = contract_check_all()
    checked = {(r.family, r.name): r for r in results}
    assert {r.provider for r in results} == {"builtin", "example"}
    for family, names in EXAMPLE_COMPONENTS.items():
        for name in names:
            assert checked[family, name].skipped is None
    # a frozen teacher needs a checkpoint to load (tests/test_frozen_teacher.py covers it); the timm
    # backbone needs a model name, given here
    skipped = {(r.family, r.name): r.skipped for r in results if r.skipped}
    assert skipped.keys() <= {("teachers", "frozen"), ("backbones", "timm")}, skipped
    # it encodes whole clips for probing (no `keep`, so it cannot be a pretraining student)
    timm = registry("backbones").get("timm").build({"model": "vit_tiny_patch16_224"}, img_size=32, num_frames=4)
    assert timm(torch.randn(1, 3, 4, 32, 32)).shape[-1] == timm.embed_dim
    assert all("no default" in why for why in skipped.values())


class LeakyVit(VideoViT):
    """Encodes the full clip and only then selects the kept tokens: the context sees masked content."""

    def forward(self, clips, keep=None, return_layers=None):
        full = super().forward(clips, return_layers=return_layers)
        if keep is None:
            return full
        pick = lambda x, k: torch.gather(x, 1, k[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
        return pick(full, keep) if isinstance(keep, torch.Tensor) else [pick(full, k) for k in keep]


class BrokenComponents:
    @hookimpl
    def jepa_register_backbones(self, register):
        def build(params, img_size, num_frames):
            return LeakyVit(img_size, num_frames, embed_dim=32, depth=1, num_heads=2)

        register("leaky_vit", build)

    @hookimpl
    def jepa_register_maskers(self, register):
        def overlapping(batch_size, grid, generator):
            every = torch.arange(math.prod(grid)).expand(batch_size, -1)
            nothing_masked = torch.zeros(every.shape, dtype=torch.bool)
            return Masks(context=every, targets=every, masked=nothing_masked)

        register("overlapping", lambda params: overlapping)


def test_the_contract_catches_a_leaky_encoder_and_overlapping_masks(inline_plugin):
    inline_plugin(BrokenComponents(), name="broken", load_entry_points=False)
    with pytest.raises(AssertionError) as e:
        contract_check_all(provider="broken")
    report = str(e.value)
    assert "backbones/leaky_vit (from 'broken')" in report and "leaks into the context" in report
    assert "maskers/overlapping (from 'broken')" in report and "a target token is not masked" in report


class HalfTeacher:
    """Targets and a loss, but no `target_dim`, `state_dict` or `load_state_dict`."""

    def targets(self, clips, masks):
        return [torch.zeros(clips.shape[0], m.targets.shape[1], 4) for m in masks]

    def loss(self, prediction, target):
        return (prediction - target).abs().mean()

    def after_step(self, step):
        pass


class IncompleteComponents:
    @hookimpl
    def jepa_register_teachers(self, register):
        register("half", lambda params, **context: HalfTeacher())

    @hookimpl
    def jepa_register_loggers(self, register):
        class Printer:
            def log(self, row):
                print(row)

        register("printer", lambda params, **context: Printer())


def test_the_contract_names_the_protocol_members_a_component_lacks(inline_plugin):
    inline_plugin(IncompleteComponents(), name="half", load_entry_points=False)
    with pytest.raises(AssertionError) as e:
        contract_check_all(provider="half")
    report = str(e.value)
    assert ("teachers/half (from 'half'): AssertionError: the teacher lacks ['target_dim', 'state_dict', "
            "'load_state_dict'], which plugins.contracts.Teacher requires") in report
    assert "loggers/printer (from 'half'): AssertionError: the logger lacks ['flush']" in report


def test_builtins_load_through_the_packages_own_entry_point_and_can_be_blocked(monkeypatch):
    from importlib import metadata

    (entry,) = [ep for ep in metadata.distribution("jepa-platform").entry_points if ep.group == "jepa_platform"]
    assert (entry.name, entry.value) == ("builtin", "jepa_platform.builtins")
    monkeypatch.setenv(DISABLE_ENV, "builtin")
    plugins = Plugins(load_entry_points=False)
    assert all(not plugins.registry(family).names() for family in plugins.registries)
    assert [p.name for p in plugins.info(include_blocked=True)] == ["builtin"]


def test_optional_capabilities_are_declared_protocols():
    from jepa_platform.plugins import contracts
    from jepa_platform.teachers.ema import EmaTeacher
    from jepa_platform.teachers.pixel import PixelTeacher

    student = VideoViT(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    ema, pixel = EmaTeacher(student, steps=10), PixelTeacher(student.tubelet_size, student.patch_size)
    assert isinstance(ema, contracts.Teacher) and isinstance(pixel, contracts.Teacher)
    assert isinstance(ema, contracts.ReportsMetrics) and not isinstance(ema, contracts.OwnsPredictor)
    assert isinstance(pixel, contracts.OwnsPredictor) and not isinstance(pixel, contracts.ReportsMetrics)
    assert ema.metrics(0) == {"momentum": 0.998}


def test_future_masker_gives_the_past_as_context_and_the_later_future_as_targets():
    masker = registry("maskers").get("future").build({"context_fraction": 0.5, "gap": 1})
    grid = (8, 2, 3)
    masks = masker(2, grid, torch.Generator().manual_seed(0))
    time_of = lambda index: (index // 6).unique().tolist()  # noqa: E731
    assert time_of(masks.context) == [0, 1, 2, 3]
    assert time_of(masks.targets) == [5, 6, 7]
    assert time_of(masks.dropped().nonzero()[:, 1]) == [4]  # the gap is neither seen nor predicted


def test_a_job_trains_with_the_example_backbone_and_masker(tmp_path):
    manifest = write_synthetic_dataset(tmp_path / "data", videos_per_class=1, frames=16, size=32)
    backbone = {"size": "custom", "embed_dim": 64, "depth": 2, "num_heads": 4}
    multiblock = {"num_blocks": 1, "spatial_scale": [0.5, 0.5]}  # the grid is only 2x2x2
    spec = validate_spec({
        "name": "plugin-run",
        "backbone": {"kind": "factorized_vit", "params": backbone},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "masks": [{"kind": "future"}, {"kind": "multiblock", "params": multiblock}],
        "optim": {"steps": 3, "batch_size": 2, "warmup_steps": 1},
        "data": {"train": str(manifest), "frames": 4, "resolution": 32, "loader_workers": 0},
        "storage": {"output": str(tmp_path / "runs")},
    })
    trainer = build_trainer(spec)
    assert type(trainer.student.encoder).__name__ == "FactorizedVideoViT"
    assert type(trainer.collator.maskers[0]).__name__ == "FuturePredictionMasker"

    row = run_training(spec)
    assert row["step"] == 3
    assert math.isfinite(row["loss"]) and math.isfinite(row["loss_mask0"])
    state = CheckpointStore(join(spec.job_dir, CHECKPOINTS)).load()
    assert state["progress"]["step"] == 3
    assert "encoder.blocks.0.time_attn.qkv.weight" in state["student"]

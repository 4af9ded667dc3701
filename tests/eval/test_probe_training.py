"""Frozen evaluation: probes learn, grids equal probes trained alone, the encoder never moves, data and outputs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from jepa_platform.data import CLASSES, write_synthetic_dataset
from jepa_platform.errors import TrainingError
from jepa_platform.eval import (
    FrozenEncoder,
    ProbeDataset,
    ProbeSettings,
    ProbeTrainer,
    build_grid,
    probe_worker,
    read_labelled,
    resolve_settings,
)
from jepa_platform.eval.data import view_boxes
from jepa_platform.models.plugin import (
    AttentiveProbeParams,
    LinearProbeParams,
    TimmBackboneParams,
    build_attentive_probe,
    build_linear_probe,
    build_timm_backbone,
)
from jepa_platform.models.probes import AttentiveProbe, LinearProbe
from jepa_platform.models.vit import VideoViT
from jepa_platform.plugins import hookimpl, registry
from jepa_platform.plugins.testing import InlinePlugins


class EvalComponents:
    """The registrations `models/plugin.py` makes once frozen evaluation is wired in."""

    @hookimpl
    def jepa_register_probes(self, register):
        register("attentive", build_attentive_probe, AttentiveProbeParams)
        register("linear", build_linear_probe, LinearProbeParams)

    @hookimpl
    def jepa_register_backbones(self, register):
        register("timm", build_timm_backbone, TimmBackboneParams)


@pytest.fixture(autouse=True, scope="module")
def eval_components():
    if "attentive" in registry("probes") and "timm" in registry("backbones"):
        yield
        return
    inline = InlinePlugins()
    inline(EvalComponents(), name="eval-test", load_entry_points=False)
    yield
    inline.restore()


# -- a toy task: token sets whose mean tells the class ------------------------------------------------------
DIM, TOKENS, CLASSES_TOY = 16, 6, 4


class TokenSet(Dataset):
    """Items shaped as ProbeDataset's ({"clip": [V=1, S=1, N, D]}), for encoders that take tokens."""

    def __init__(self, n: int, seed: int, spread: float = 1.5):
        g = torch.Generator().manual_seed(123)  # class centres shared by every split
        centres = torch.randn(CLASSES_TOY, DIM, generator=g) * spread
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % CLASSES_TOY
        self.x = torch.randn(n, TOKENS, DIM, generator=g) + centres[self.labels].unsqueeze(1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return {"clip": self.x[i].view(1, 1, TOKENS, DIM), "label": int(self.labels[i]), "index": i}


class ToyEncoder(nn.Module):
    """Tokens -> tokens, with what a frozen encoder must not let move: weights, BatchNorm statistics, dropout."""

    embed_dim = DIM

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.drop = nn.Dropout(0.5)
        with torch.no_grad():
            noise = torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(5))
            self.proj.weight.copy_(torch.eye(DIM) + 0.01 * noise)
            self.proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.norm(x.transpose(1, 2)).transpose(1, 2)))


def trainer(probe_factory, hparams, *, encoder=None, epochs=3, batch_size=16, seed=0, train=None, **kwargs):
    grid = build_grid(probe_factory, hparams, seed)
    return ProbeTrainer(
        FrozenEncoder(encoder or ToyEncoder()), grid, train or TokenSet(128, seed=1), TokenSet(64, seed=2),
        CLASSES_TOY, epochs=epochs, batch_size=batch_size, seed=seed, **kwargs,
    )


@pytest.mark.parametrize("probe", ["linear", "attentive"])
def test_probe_learns_a_separable_task(probe):
    make = {
        "linear": lambda: LinearProbe(DIM, CLASSES_TOY, norm="batchnorm"),
        "attentive": lambda: AttentiveProbe(DIM, CLASSES_TOY, num_heads=4),
    }[probe]
    torch.manual_seed(0)
    metrics = trainer(make, [(1e-2, 0.01)], epochs=6).fit()
    assert metrics.count == 64
    assert metrics.top1()[0] > 0.95, metrics.top1()
    assert metrics.top5()[0] == 1.0  # 4 classes: the true one is always among the top 5


def test_encoder_weights_and_statistics_unchanged_after_probing():
    encoder = ToyEncoder()
    encoder.train()  # handed over in train mode: probing must still not update it
    before = copy.deepcopy(encoder.state_dict())
    run = trainer(lambda: LinearProbe(DIM, CLASSES_TOY), [(1e-2, 0.01)], encoder=encoder, epochs=2)
    run.fit()
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the encoder's weights or buffers changed"
    assert not encoder.training
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())


def test_frozen_encoder_notices_a_changed_weight():
    frozen = FrozenEncoder(ToyEncoder())
    frozen.verify_unchanged()
    with torch.no_grad():
        frozen.encoder.proj.bias[0] += 1e-3
    with pytest.raises(TrainingError, match="proj.bias"):
        frozen.verify_unchanged()


def test_grid_probes_equal_probes_trained_alone_with_the_same_seeds():
    """Dropout on, so each probe's random stream must be its own and not the grid's."""
    make = lambda: AttentiveProbe(DIM, CLASSES_TOY, num_heads=4, depth=1, drop=0.2)  # noqa: E731
    hparams = [(lr, wd) for lr in (1e-3, 3e-3) for wd in (0.01, 0.1)]
    small = TokenSet(64, seed=1)
    together = trainer(make, hparams, epochs=1, seed=7, train=small)
    together.fit()
    probe_x = TokenSet(8, seed=3).x
    for i, hp in enumerate(hparams):
        alone = trainer(make, [hp], epochs=1, seed=7, train=small)
        alone.fit()
        grid_state, solo_state = together.grid.probes[i].state_dict(), alone.grid.probes[0].state_dict()
        for name in solo_state:
            assert torch.allclose(grid_state[name], solo_state[name], atol=1e-6), f"probe {hp}: {name} differs"
        with torch.no_grad():
            assert torch.allclose(together.grid.probes[i](probe_x), alone.grid.probes[0](probe_x), atol=1e-6)
    first, second = together.grid.probes[0].state_dict(), together.grid.probes[1].state_dict()
    assert not torch.allclose(first["head.weight"], second["head.weight"])  # they did train differently


def test_cached_tokens_train_probes_exactly_as_encoding_every_epoch():
    make = lambda: LinearProbe(DIM, CLASSES_TOY, norm="layernorm")  # noqa: E731
    encoder = ToyEncoder()
    live = trainer(make, [(1e-2, 0.01)], encoder=encoder, epochs=2)
    cached = trainer(make, [(1e-2, 0.01)], encoder=encoder, epochs=2, cache_train=True, cache_val=True)
    live_metrics, cached_metrics = live.fit(), cached.fit()
    assert torch.allclose(live.grid.probes[0].head.weight, cached.grid.probes[0].head.weight, atol=1e-6)
    assert torch.equal(live_metrics.confusion, cached_metrics.confusion)


# -- clips: segments and views ------------------------------------------------------------------------------
def tiny_vit(frames: int = 4, size: int = 32) -> VideoViT:
    torch.manual_seed(0)
    return VideoViT(img_size=size, num_frames=frames, patch_size=16, embed_dim=32, depth=1, num_heads=2).eval()


def test_multi_clip_tokens_are_the_segments_tokens_concatenated():
    vit = tiny_vit()
    clips = torch.randn(2, 3, 2, 3, 4, 32, 32)  # [B, V, S, C, T, H, W]
    tokens = FrozenEncoder(vit)(clips)
    per_clip = 2 * 2 * 2  # (4 frames / tubelet 2) x 2 x 2
    assert tokens.shape == (2, 3, 2 * per_clip, 32)
    with torch.no_grad():
        assert torch.allclose(tokens[1, 2, per_clip:], vit(clips[1:2, 2, 1])[0], atol=1e-5)
    layered = FrozenEncoder(vit, layers=[0, -1])
    assert layered.embed_dim == 64 and layered(clips).shape == (2, 3, 2 * per_clip, 64)


def test_evaluation_views_spread_along_the_long_side():
    assert view_boxes(64, 128, 3) == [(0, 0, 64, 64), (0, 32, 64, 64), (0, 64, 64, 64)]
    assert view_boxes(128, 64, 1) == [(32, 0, 64, 64)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Synthetic videos (6 classes x 2, 16 frames of 32x32), one per class held out for validation."""
    root = tmp_path_factory.mktemp("probe-videos")
    write_synthetic_dataset(root, videos_per_class=2, frames=16, size=32, val_fraction=0.5)
    return root


def test_video_items_hold_views_of_every_segment(videos):
    labelled = read_labelled(str(videos / "train.csv"))
    train = ProbeDataset(labelled, frames=4, stride=2, resolution=32, num_segments=2, train=True, num_views=3)
    val = ProbeDataset(labelled, frames=4, stride=2, resolution=32, num_segments=2, num_views=3)
    assert train[0]["clip"].shape == (1, 2, 3, 4, 32, 32)  # one view in training
    clip = val[0]["clip"]
    assert clip.shape == (3, 2, 3, 4, 32, 32)
    assert not torch.equal(clip[0, 0], clip[0, 1])  # segments: different moments
    assert torch.equal(val[0]["clip"], clip)  # evaluation is deterministic


def test_jsonl_manifest_carries_label_names(videos, tmp_path):
    lines = [{"path": str(videos / "videos/static_circle/static_circle_000.mp4"), "label": 4,
              "label_name": "static_circle"},
             {"path": "../videos/move_left/move_left_001.mp4", "label": 0}]
    (tmp_path / "videos").symlink_to(videos / "videos")
    manifest = tmp_path / "lists" / "set.jsonl"
    manifest.parent.mkdir()
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    labelled = read_labelled(str(manifest))
    assert [i.label for i in labelled.items] == [4, 0]
    assert Path(labelled.items[1].path).exists()  # relative to the manifest's folder
    assert labelled.names == {4: "static_circle"} and labelled.num_classes == 5


def test_image_folder_is_a_dataset_of_still_clips(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for k in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / name / f"{k}.png")
    labelled = read_labelled(str(tmp_path))
    assert labelled.names == {0: "cat", 1: "dog"}
    assert [i.label for i in labelled.items] == [0, 0, 1, 1]
    item = ProbeDataset(labelled, frames=16, stride=4, resolution=32, image_frames=2, num_views=2)[3]
    clip = item["clip"]
    assert item["label"] == 1 and clip.shape == (2, 1, 3, 2, 32, 32)  # 2 views of a 2-frame still clip
    assert torch.equal(clip[:, :, :, 0], clip[:, :, :, 1])


# -- the whole job ------------------------------------------------------------------------------------------
def test_probe_worker_trains_a_grid_and_writes_every_output(videos, tmp_path):
    vit = tiny_vit()
    torch.save(vit.state_dict(), tmp_path / "encoder.pt")
    settings = ProbeSettings(
        checkpoint=str(tmp_path / "encoder.pt"), backbone={"kind": "vit", "params": {
            "size": "custom", "embed_dim": 32, "depth": 1, "num_heads": 2}},
        train=str(videos / "train.csv"), val=str(videos / "val.csv"), label_names=CLASSES,
        frames=4, stride=2, resolution=32, num_segments=2, num_views=2,
        probe={"kind": "attentive", "params": {"num_heads": 4}}, lrs=[1e-3, 1e-2], epochs=2, batch_size=3,
        workers=0, eval_every=2, output=str(tmp_path / "out"),
    )
    report = probe_worker({"settings": settings.model_dump(mode="json")})  # one worker, plain torch
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["probe"]) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert "val_top1" in rows[2] and "val_top1" not in rows[0]
    results = json.loads((out / "results.json").read_text())
    assert len(results["results"]) == 2 and {"top1", "top5"} <= results["results"][0].keys()
    assert results["val_items"] == 6 and set(results["groups"]) == {"motion", "appearance"}
    assert report["best"] == max(range(2), key=lambda i: (report["results"][i]["top1"], -i))
    csv_rows = (out / "confusion.csv").read_text().splitlines()
    assert len(csv_rows) == 7 and csv_rows[1].startswith("move_left,")
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = torch.load(out / "probe.pt", weights_only=True)
    probe = AttentiveProbe(saved["embed_dim"], saved["num_classes"], **saved["params"])
    probe.load_state_dict(saved["state_dict"])
    assert saved["label_names"] == CLASSES and saved["lr"] == report["results"][report["best"]]["lr"]


def test_settings_take_the_backbone_and_clip_from_the_checkpoints_job(tmp_path):
    job = tmp_path / "job"
    (job / "checkpoints" / "step_00000010").mkdir(parents=True)
    (job / "spec.resolved.yaml").write_text(
        "backbone: {kind: vit, params: {size: tiny, depth: 2}}\ndata: {frames: 8, stride: 2, resolution: 64}\n"
    )
    settings = ProbeSettings(checkpoint=str(job / "checkpoints" / "step_00000010"), train="t.csv", val="v.csv",
                             resolution=96)
    resolved = resolve_settings(settings)
    assert resolved.backbone.kind == "vit" and resolved.backbone.params["depth"] == 2
    assert (resolved.frames, resolved.stride, resolved.resolution) == (8, 2, 96)  # given values win


# -- several workers ----------------------------------------------------------------------------------------
DDP_HPARAMS = [(1e-2, 0.01), (3e-3, 0.1)]


def ddp_probe_worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    """One of `world_size` gloo workers, each with half of a batch of 16."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        make = lambda: AttentiveProbe(DIM, CLASSES_TOY, num_heads=4)  # noqa: E731
        run = trainer(make, DDP_HPARAMS, epochs=2, batch_size=16 // world_size, rank=rank, world_size=world_size,
                      wrap=DistributedDataParallel, train=TokenSet(64, seed=1))
        metrics = run.fit()
        torch.save({"grid": run.grid.state_dict(), "confusion": metrics.confusion}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: ~10 s on two busy cores
def test_two_workers_train_the_probes_one_worker_trains_with_their_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(ddp_probe_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    make = lambda: AttentiveProbe(DIM, CLASSES_TOY, num_heads=4)  # noqa: E731
    alone = trainer(make, DDP_HPARAMS, epochs=2, batch_size=16, train=TokenSet(64, seed=1))
    metrics = alone.fit()
    x = TokenSet(16, seed=3).x
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in alone.grid.state_dict().items():
            if not name.endswith("kv.bias"):  # the key bias has no true gradient: Adam amplifies rounding noise
                assert torch.allclose(saved["grid"][name], value, atol=1e-5), f"rank {rank}: {name} differs"
        worker = copy.deepcopy(alone.grid)
        worker.load_state_dict(saved["grid"])
        with torch.no_grad():
            assert torch.allclose(worker.eval()(x), alone.grid.eval()(x), atol=1e-5)
        assert torch.equal(saved["confusion"], metrics.confusion)  # validation summed over both workers


def test_a_manifest_names_its_classes_by_their_folders_and_direction_classes_turn_flipping_off(synthetic_dataset):
    from jepa_platform.eval.data import directional, read_labelled

    found = read_labelled(str(synthetic_dataset))
    assert "move_left" in found.names.values() and "move_right" in found.names.values()
    assert directional(list(found.names.values()))
    assert directional(["Pushing something from left to right"]) and directional(["turn-right"])
    assert not directional(["red_square", "blue_circle", "leftover", "copyright"])


def test_the_default_attentive_probe_is_v_jepa_2s_layout():
    from jepa_platform.models.probes import AttentiveProbe

    official = AttentiveProbe(64, 5, num_heads=4, depth=3).state_dict()
    assert "pool.xattn.proj.weight" not in official and "norm.weight" not in official  # V-JEPA 2 has neither
    extended = AttentiveProbe(64, 5, num_heads=4, depth=3, out_proj=True, final_norm=True).state_dict()
    assert extended.keys() - official.keys() == {"pool.xattn.proj.weight", "pool.xattn.proj.bias", "norm.weight",
                                                  "norm.bias"}


def test_each_probe_states_its_best_epoch_beside_its_last():
    from jepa_platform.eval.report import best_epoch

    rows = [{"epoch": 1, "probe": 0, "val_top1": 0.4}, {"epoch": 2, "probe": 0, "val_top1": 0.7},
            {"epoch": 3, "probe": 0, "val_top1": 0.7}, {"epoch": 3, "probe": 1, "val_top1": 0.9},
            {"epoch": 2, "probe": 1}]  # an epoch without validation
    assert best_epoch(rows, 0, 0.7) == (0.7, 2) and best_epoch(rows, 1, 0.9) == (0.9, 3)
    assert best_epoch([], 0, 0.5) == (0.5, 0)

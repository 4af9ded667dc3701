"""The example specs users start from are valid and say what they claim to."""

from pathlib import Path

import pytest

from jepa_platform.spec import load_spec

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates(path):
    spec = load_spec(path)
    assert spec.pipeline()


def test_vjepa_vitl16_is_the_paper_recipe():
    spec = load_spec(EXAMPLES / "vjepa-vitl16.yaml")
    assert spec.backbone.params["size"] == "large" and spec.backbone.params["patch_size"] == 16
    assert spec.optim.batch_size * spec.resources.workers == 3072
    o = spec.optim
    assert (o.steps, o.warmup_steps, o.start_lr, o.lr, o.final_lr) == (90000, 12000, 2e-4, 6.25e-4, 1e-6)
    assert o.weight_decay == (0.04, 0.4) and o.schedule_scale == 1.25 and o.precision == "bf16"
    assert spec.teacher.kind == "ema" and spec.teacher.params["momentum"] == [0.998, 1.0]
    assert [(m.params["num_blocks"], m.params["spatial_scale"]) for m in spec.masks] == [(8, [0.15, 0.15]),
                                                                                        (2, [0.7, 0.7])]
    assert (spec.data.frames, spec.data.stride, spec.data.resolution) == (16, 4, 224)
    assert (spec.predictor.params["depth"], spec.predictor.params["embed_dim"]) == (12, 384)
    assert spec.data.train.startswith("s3://")


def test_salt_vitl16_is_teacher_40k_then_student_200k():
    spec = load_spec(EXAMPLES / "salt-vitl16.yaml")
    teacher, student = spec.pipeline()
    assert teacher.teacher.kind == "pixel" and teacher.optim.steps == 40000
    assert student.teacher.kind == "frozen" and student.optim.steps == 200000
    assert student.teacher.params["checkpoint"] == f"{teacher.job_dir}/checkpoints"
    assert student.backbone.params["size"] == teacher.backbone.params["size"] == "large"
    assert student.optim.batch_size * student.resources.workers == 3072
    assert (student.predictor.params["depth"], student.predictor.params["embed_dim"]) == (12, 384)


def test_salt_quickstart_pairs_a_small_teacher_with_a_wider_student():
    teacher, student = load_spec(EXAMPLES / "salt-quickstart.yaml").pipeline()
    assert teacher.backbone.params["embed_dim"] < student.backbone.params["embed_dim"]
    assert student.teacher.params["backbone"]["params"]["embed_dim"] == teacher.backbone.params["embed_dim"]


def test_vjepa2_vitl16_continues_from_the_released_vit_l_with_rope_at_256_px():
    spec = load_spec(EXAMPLES / "vjepa2-vitl16.yaml", ["init.checkpoint=s3://bucket/vitl.pt"])
    assert spec.init.checkpoint == "s3://bucket/vitl.pt" and spec.init.predictor
    assert spec.backbone.params["size"] == "large" and spec.backbone.params["pos_embed"] == "rope"
    assert spec.predictor.params["pos_embed"] == "rope" and spec.data.resolution == 256
    assert load_spec(EXAMPLES / "vjepa2-vitl16.yaml").init.checkpoint.startswith("https://dl.fbaipublicfiles.com/")


def test_the_notebook_example_runs_whole_and_a_second_run_keeps_its_shards(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "JEPA_NOTEBOOK_DIR": str(tmp_path / "nb")}
    env.pop("JEPA_CHECKPOINT", None)
    env.pop("JEPA_VIDEOS", None)
    script = Path(__file__).parent.parent / "examples" / "notebook_embeddings.py"
    for kept in (0, 1):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert f"12 of 12 videos, 192-d, 0 skipped, {kept} shards kept" in done.stdout
        assert "3-NN leave-one-out accuracy" in done.stdout

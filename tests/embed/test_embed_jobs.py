"""`jepa embed` as a job: Ray Train workers sharing the shards, progress on the terminal, `jepa status`, a
kill -9 mid-run and a rerun that keeps what was finished, and an `embed` stage after pretraining."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from user_facing import save_tiny_vjepa2

from jepa_platform.cli import app
from jepa_platform.embed import read_embeddings, run_embed
from jepa_platform.embed.shards import done_shards
from jepa_platform.errors import ConfigError
from jepa_platform.runners import run_stages, session_members
from jepa_platform.runners.local import RunResult, latest_step
from jepa_platform.spec import validate_spec
from jepa_platform.spec.embed import EmbedSettings
from jepa_platform.train.job import run_training

transformers = pytest.importorskip("transformers")
runner = CliRunner()
JEPA = [sys.executable, "-m", "jepa_platform.cli"]
CLIP = ["--frames", "4", "--set", "stride=2", "--set", "workers=0", "--batch-size", "2"]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "vjepa2-tiny"
    save_tiny_vjepa2(folder)
    return folder


def reference(hf_folder, data, output, **kw):
    """The same embedding, in this process and alone."""
    base = {"checkpoint": str(hf_folder), "data": str(data), "output": str(output), "frames": 4, "stride": 2,
            "workers": 0, "batch_size": 2}
    run_embed(EmbedSettings(**(base | kw)))
    return read_embeddings(str(output), tokens=kw.get("tokens", False))


@pytest.mark.slow
def test_two_ray_workers_share_the_shards_and_write_what_one_process_writes(hf_folder, synthetic_dataset, tmp_path):
    out = tmp_path / "features"
    result = runner.invoke(app, ["embed", str(hf_folder), "--data", str(synthetic_dataset), "--out", str(out),
                                 "--tokens", "--shard-size", "2", "--workers", "2", *CLIP])
    assert result.exit_code == 0, result.output
    assert "Starting features: embedding the videos of" in result.output
    assert "12/12 videos (shard 6/6)" in result.output
    assert "12 of 12 videos embedded (64-d, 6 parquet shards)" in result.output
    ours = read_embeddings(str(out), tokens=True)
    alone = reference(hf_folder, synthetic_dataset, tmp_path / "alone", tokens=True, shard_size=2)
    assert ours.paths == alone.paths
    np.testing.assert_array_equal(ours.vectors, alone.vectors)
    np.testing.assert_array_equal(ours.tokens, alone.tokens)
    status = runner.invoke(app, ["status", "features"])
    assert status.exit_code == 0 and "SUCCEEDED shard 6/6" in status.output, status.output
    again = runner.invoke(app, ["embed", str(hf_folder), "--data", str(synthetic_dataset), "--out", str(out),
                                "--tokens", "--shard-size", "2", "--workers", "2", *CLIP])
    assert again.exit_code == 0 and "features is complete; skipped" in again.output, again.output


@pytest.mark.slow
def test_a_killed_embedding_keeps_its_finished_shards_and_a_rerun_finishes_it(hf_folder, synthetic_dataset, tmp_path):
    """The last video is a FIFO, whose open() blocks: the job is certain to be mid-run when it is killed."""
    videos = tmp_path / "videos"
    shutil.copytree(synthetic_dataset.parent / "videos", videos)
    os.mkfifo(videos / "zz-last.mp4")
    out = tmp_path / "features"
    started = subprocess.run([*JEPA, "embed", str(hf_folder), "--data", str(videos), "--out", str(out),
                              "--shard-size", "4", "--no-wait", "--json", *CLIP],
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    deadline = time.time() + 180
    while len(done_shards(str(out))) < 3:  # videos 0-11; shard 3 is the FIFO's
        assert time.time() < deadline, "the first three shards were not written in time"
        time.sleep(0.2)
    finished = {p.name: p.read_bytes() for p in out.glob("shard-*")}
    os.killpg(pid, signal.SIGKILL)
    while session_members(pid):
        assert time.time() < deadline + 60, "processes of the killed job are still running"
        time.sleep(0.2)
    assert sorted(done_shards(str(out))) == [0, 1, 2]

    (videos / "zz-last.mp4").unlink()
    shutil.copy(next((videos / "move_left").iterdir()), videos / "zz-last.mp4")
    rerun = runner.invoke(app, ["embed", str(hf_folder), "--data", str(videos), "--out", str(out),
                                "--shard-size", "4", *CLIP])
    assert rerun.exit_code == 0, rerun.output
    assert "13/13 videos (shard 4/4)" in rerun.output
    for name, data in finished.items():
        assert (out / name).read_bytes() == data, f"{name} was rewritten"
    whole = reference(hf_folder, videos, tmp_path / "whole", shard_size=4)
    np.testing.assert_array_equal(read_embeddings(str(out)).vectors, whole.vectors)


def test_an_embed_stage_embeds_with_the_encoder_an_earlier_stage_trained(tmp_path, synthetic_dataset):
    class InProcessRunner:
        def __init__(self):
            self.ran = []

        def submit(self, spec, on_row=None):
            self.ran.append(spec.name)
            if spec.embed is not None:
                report = run_embed(spec.embed)
                return RunResult(spec.name, spec.job_dir, "SUCCEEDED", 1, {"written": report.written}, None)
            row = run_training(spec)
            return RunResult(spec.name, spec.job_dir, "SUCCEEDED", row["step"], row, latest_step(spec)[1])

    tiny = {"size": "custom", "embed_dim": 48, "depth": 2, "num_heads": 3, "patch_size": 16}
    raw = {
        "name": "adapt",
        "backbone": {"kind": "vit", "params": tiny},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "optim": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 1},
        "data": {"train": str(synthetic_dataset), "frames": 4, "stride": 2, "resolution": 32, "loader_workers": 0},
        "storage": {"output": str(tmp_path / "runs")},
        "stages": [{"name": "pretrain"},
                   {"name": "features", "embed": {"checkpoint": "stage:pretrain", "data": str(synthetic_dataset),
                                                  "workers": 0, "shard_size": 5}}],
    }
    spec = validate_spec(raw)
    stage = spec.pipeline()[1]
    assert stage.embed.output == str(tmp_path / "runs" / "adapt" / "features") and not stage.trains
    first = InProcessRunner()
    run_stages(spec, first)
    assert first.ran == ["pretrain", "features"]
    got = read_embeddings(stage.embed.output)
    assert got.vectors.shape == (12, 48)
    # The encoder the stage names, on the clips its job saw (its frames and resolution): the same vectors.
    from jepa_platform import load_encoder
    from jepa_platform.eval.data import ProbeDataset, read_labelled

    encoder = load_encoder(str(tmp_path / "runs" / "adapt" / "pretrain"))
    clip = ProbeDataset(read_labelled(str(synthetic_dataset)), frames=4, stride=2, resolution=32)[3]["clip"][0]
    with torch.no_grad():
        expected = encoder.features(clip).mean(1)[0]
    torch.testing.assert_close(torch.from_numpy(got.vectors[3]), expected, atol=1e-5, rtol=1e-4)
    again = InProcessRunner()
    run_stages(spec, again)
    assert again.ran == []  # both complete: skipped

    # Pretraining on would leave embeddings of the old weights behind: refused before it trains.
    longer = validate_spec(raw | {"stages": [{"name": "pretrain", "optim": {"steps": 3}}, raw["stages"][1]]})
    with pytest.raises(ConfigError, match=r"stages\[1\].embed.checkpoint: stage pretrain trains on from step 2 to 3"):
        run_stages(longer, InProcessRunner())
    run_stages(longer, InProcessRunner(), stage="pretrain")  # trained on alone, the embeddings left as they were
    with pytest.raises(ConfigError, match="step_00000002/state.pt; .* now gives .*step_00000003/state.pt"):
        run_stages(longer, InProcessRunner())

"""`jepa embed` and `run_embed`: features equal to transformers' V-JEPA 2 on the same clips, both formats,
resuming after an interruption, bad videos skipped and named, and one line for each bad input."""

import json
import os
import shutil

import fsspec
import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from user_facing import one_error_line, save_tiny_vjepa2

from jepa_platform.cli import app
from jepa_platform.embed import read_embeddings, run_embed
from jepa_platform.embed.shards import INDEX_FILE, done_shards
from jepa_platform.errors import ConfigError, DataError
from jepa_platform.eval.data import ProbeDataset, read_labelled
from jepa_platform.spec.embed import EmbedSettings

transformers = pytest.importorskip("transformers")
runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "vjepa2-tiny"
    return save_tiny_vjepa2(folder), folder


@pytest.fixture(scope="module")
def vjepa2(saved):
    return saved[0]


@pytest.fixture(scope="module")
def hf_folder(saved):
    return saved[1]


def settings(checkpoint, data, output, **kw):
    base = {"checkpoint": str(checkpoint), "data": str(data), "output": str(output), "stride": 2,
            "shard_size": 5, "batch_size": 3, "workers": 0}
    return EmbedSettings(**(base | kw))


def test_pooled_vectors_and_tokens_are_transformers_features_of_the_same_clips(vjepa2, hf_folder, synthetic_dataset,
                                                                              tmp_path):
    report = run_embed(settings(hf_folder, synthetic_dataset, tmp_path / "out", tokens=True, num_segments=2))
    assert (report.videos, report.written, report.skipped, report.shards, report.dim) == (12, 12, [], 3, 64)
    got = read_embeddings(str(tmp_path / "out"), tokens=True)
    listed = read_labelled(str(synthetic_dataset))
    assert got.paths == [item.path for item in listed.items]
    assert got.labels.tolist() == [item.label for item in listed.items]  # the manifest's labels, carried
    # The clips the probe's evaluation takes (frames and size from the Hugging Face config), through transformers.
    clips = ProbeDataset(listed, frames=4, stride=2, resolution=32, num_segments=2)
    for i in (0, 7, 11):
        segments = clips[i]["clip"][0]  # [S, C, T, H, W]
        with torch.no_grad():
            theirs = vjepa2(pixel_values_videos=segments.transpose(1, 2), skip_predictor=True).last_hidden_state
        theirs = theirs.reshape(-1, 64)  # both segments' tokens, in time order
        assert got.tokens.shape == (12, 2 * 32, 64)
        torch.testing.assert_close(torch.from_numpy(got.tokens[i]), theirs, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(torch.from_numpy(got.vectors[i]), theirs.mean(0), atol=1e-5, rtol=1e-4)


def test_npy_and_parquet_hold_the_same_numbers_and_float16_is_half_of_them(hf_folder, synthetic_dataset, tmp_path):
    run_embed(settings(hf_folder, synthetic_dataset, tmp_path / "pq", tokens=True))
    run_embed(settings(hf_folder, synthetic_dataset, tmp_path / "npy", format="npy", tokens=True))
    run_embed(settings(hf_folder, synthetic_dataset, tmp_path / "half", format="npy", dtype="float16"))
    pq, npy, half = (read_embeddings(str(tmp_path / n), tokens=n != "half") for n in ("pq", "npy", "half"))
    assert pq.paths == npy.paths == half.paths
    np.testing.assert_array_equal(pq.vectors, npy.vectors)
    np.testing.assert_array_equal(pq.tokens, npy.tokens)
    assert half.vectors.dtype == np.float16
    np.testing.assert_allclose(half.vectors, pq.vectors, atol=2e-3, rtol=2e-3)
    names = sorted(p.name for p in (tmp_path / "npy").iterdir())
    assert names[:4] == [INDEX_FILE, "shard-00000.json", "shard-00000.npy", "shard-00000.tokens.npy"]
    # Parquet readers see one row per video: path, label, the pooled vector and the tokens.
    import pyarrow.parquet as parquet

    table = parquet.read_table(tmp_path / "pq" / "shard-00000.parquet")
    assert table.column_names == ["path", "label", "embedding", "tokens"] and table.num_rows == 5


def test_an_interrupted_job_keeps_its_finished_shards_and_ends_with_the_same_embeddings(
        hf_folder, synthetic_dataset, tmp_path):
    whole = run_embed(settings(hf_folder, synthetic_dataset, tmp_path / "whole"))

    def stop_after_the_first_shard(row):
        if row["step"] == 1:  # shards done
            raise KeyboardInterrupt

    cut = settings(hf_folder, synthetic_dataset, tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        run_embed(cut, on_progress=stop_after_the_first_shard)
    assert sorted(done_shards(str(tmp_path / "cut"))) == [0]
    first = (tmp_path / "cut" / "shard-00000.parquet").read_bytes()
    with pytest.raises(DataError, match="unfinished"):
        read_embeddings(str(tmp_path / "cut"))
    assert len(read_embeddings(str(tmp_path / "cut"), partial=True).paths) == 5
    # A kill inside the second shard's write: its scratch file is left, and no marker.
    (tmp_path / "cut" / "shard-00001.parquet.tmp-0badf00d").write_bytes(b"half a shard")

    rows = []
    again = run_embed(cut, on_progress=rows.append)
    assert again.resumed_shards == 1 and again.written == whole.written == 12
    assert (tmp_path / "cut" / "shard-00000.parquet").read_bytes() == first  # kept, not redone
    assert [(r["step"], r["videos"]) for r in rows] == [(2, 10), (3, 12)]
    assert (rows[-1]["of"], rows[-1]["videos_of"]) == (3, 12)
    np.testing.assert_array_equal(read_embeddings(str(tmp_path / "cut")).vectors,
                                  read_embeddings(str(tmp_path / "whole")).vectors)
    index = json.loads((tmp_path / "cut" / INDEX_FILE).read_text())
    assert index["complete"] and index["written"] == 12 and index["skipped"] == 0


def test_unreadable_videos_are_skipped_named_and_counted(hf_folder, synthetic_dataset, tmp_path):
    folder = tmp_path / "videos"
    shutil.copytree(synthetic_dataset.parent / "videos", folder)
    (folder / "move_left" / "zz-corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (folder / "notes.txt").write_text("not a video, not listed")
    rows = []
    report = run_embed(settings(hf_folder, folder, tmp_path / "out"), on_progress=rows.append)
    assert (report.videos, report.written) == (13, 12)
    assert [s["path"] for s in report.skipped] == [str(folder / "move_left" / "zz-corrupt.mp4")]
    assert "zz-corrupt.mp4" in report.skipped[0]["reason"]
    assert sum("zz-corrupt.mp4" in r.get("skipped", "") for r in rows) == 1 and rows[-1]["skipped_total"] == 1
    assert sum(r["skipped_videos"] for r in rows) == 1
    got = read_embeddings(str(tmp_path / "out"))
    assert got.labels is None and len(got.paths) == 12 and got.skipped == report.skipped


def test_an_output_with_other_settings_or_other_videos_or_other_files_is_refused(hf_folder, synthetic_dataset,
                                                                                  tmp_path):
    listing = tmp_path / "videos.txt"  # one path per line, no labels
    listing.write_text("\n".join(item.path for item in read_labelled(str(synthetic_dataset)).items))
    run_embed(settings(hf_folder, listing, tmp_path / "out"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    with pytest.raises(ConfigError, match=r"other settings \(tokens: false there, true now\)"):
        run_embed(settings(hf_folder, listing, tmp_path / "out", tokens=True))
    listing.write_text("\n".join(listing.read_text().splitlines()[:4]))  # the list changed since
    with pytest.raises(ConfigError, match="another list of videos .12 videos there, 4 in"):
        run_embed(settings(hf_folder, listing, tmp_path / "out"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before  # nothing lost
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "results.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds other files"):
        run_embed(settings(hf_folder, synthetic_dataset, tmp_path / "busy"))


def test_an_output_on_s3_is_written_and_read_back(hf_folder, synthetic_dataset, tmp_path, s3_endpoint):
    fs = fsspec.filesystem("s3")
    fs.mkdir("emb-bucket")
    run_embed(settings(hf_folder, synthetic_dataset, "s3://emb-bucket/features", format="npy", tokens=True))
    assert fs.exists("emb-bucket/features/shard-00002.tokens.npy")
    local = run_embed(settings(hf_folder, synthetic_dataset, tmp_path / "local", format="npy", tokens=True))
    remote = read_embeddings("s3://emb-bucket/features", tokens=True)
    assert local.written == len(remote.paths) == 12
    np.testing.assert_array_equal(remote.tokens, read_embeddings(str(tmp_path / "local"), tokens=True).tokens)


def test_bad_inputs_get_one_line_and_exit_2(hf_folder, synthetic_dataset, tmp_path):
    base = ["embed", str(hf_folder), "--data", str(synthetic_dataset)]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no videos here")
    assert "no videos found" in one_error_line(
        runner.invoke(app, ["embed", str(hf_folder), "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]))
    assert "no such file or folder" in one_error_line(
        runner.invoke(app, ["embed", str(hf_folder), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]))
    assert "checkpoint" in one_error_line(runner.invoke(app, ["embed", str(tmp_path / "nope.pt"), "--data",
                                                              str(synthetic_dataset), "--out", str(tmp_path / "o")]))
    (tmp_path / "afile").write_text("x")
    assert "cannot be written (Not a directory)" in one_error_line(
        runner.invoke(app, [*base, "--out", str(tmp_path / "afile" / "out")]))
    assert "format" in one_error_line(runner.invoke(app, [*base, "--out", str(tmp_path / "o"), "--format", "hdf5"]))
    assert "dtype" in one_error_line(runner.invoke(app, [*base, "--out", str(tmp_path / "o"), "--set", "dtype=int8"]))
    (tmp_path / "list.txt").write_text("a.mp4 0 extra\n")
    assert "line 1" in one_error_line(
        runner.invoke(app, ["embed", str(hf_folder), "--data", str(tmp_path / "list.txt"), "--out",
                            str(tmp_path / "o")]))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        assert "cannot be written" in one_error_line(runner.invoke(app, [*base, "--out", str(locked / "out")]))
    assert not (tmp_path / "o").exists()  # refused before anything was written

    run_embed(settings(hf_folder, synthetic_dataset, tmp_path / "done"))
    line = one_error_line(runner.invoke(app, [*base, "--out", str(tmp_path / "done"), "--tokens"]))
    assert "other settings" in line and "tokens: false there, true now" in line

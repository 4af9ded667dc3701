# %% [markdown]
# # V-JEPA 2 features in a notebook
#
# Cells in the percent format (`# %%`): open this file in Jupyter (jupytext), VS Code or PyCharm and run it
# cell by cell, or run it whole: `python examples/notebook_embeddings.py`. It
#
# 1. loads an encoder (a V-JEPA 2 Hugging Face folder, an official `.pt`, a `jepa export` or a run),
# 2. turns one video into features by hand, preprocessing spelled out,
# 3. embeds a whole folder of videos into Parquet shards (what `jepa embed` runs) and reads them back,
# 4. finds each video's nearest neighbours and scores a nearest-neighbour classifier on the labels.
#
# Set the three paths below. With nothing set it makes what it needs: the synthetic videos of
# `jepa data synthetic` and a randomly initialised tiny encoder (features of no meaning, but every line runs).

# %%
import os
from pathlib import Path

import numpy as np
import torch

import jepa_platform
from jepa_platform.embed import run_embed
from jepa_platform.spec.embed import EmbedSettings

WORK = Path(os.environ.get("JEPA_NOTEBOOK_DIR", "notebook-embeddings"))
CHECKPOINT = os.environ.get("JEPA_CHECKPOINT")  # e.g. "s3://my-bucket/vjepa2-vitl-fpc64-256" (a HF folder)
VIDEOS = os.environ.get("JEPA_VIDEOS")  # a folder of videos, or a `path label` list
FRAMES, RESOLUTION = 16, 256  # V-JEPA 2's ViT-L/16 clip; the tiny stand-in below uses 4 frames of 32 px

if VIDEOS is None:
    from jepa_platform.data import write_synthetic_dataset

    VIDEOS = str(write_synthetic_dataset(WORK / "videos", videos_per_class=2, frames=16, size=64))
if CHECKPOINT is None:
    from jepa_platform.models.vit import video_vit
    from jepa_platform.weights.export import export_encoder

    FRAMES, RESOLUTION = 4, 32
    tiny = video_vit(size="tiny", img_size=RESOLUTION, num_frames=FRAMES, patch_size=16, pos_embed="rope")
    torch.save({"target_encoder": tiny.state_dict()}, WORK / "tiny.pt")
    CHECKPOINT = str(WORK / "tiny-export")
    if not Path(CHECKPOINT).exists():
        export_encoder(str(WORK / "tiny.pt"), "safetensors", CHECKPOINT, "target_encoder")

# %% [markdown]
# ## 1. An encoder, and one video by hand
# `load_encoder` reads the architecture from the file (a job's spec, a Hugging Face config, an export's
# JSON, or the tensors' shapes) and returns the encoder in eval mode. It wants clips `[B, 3, T, H, W]`: RGB
# in [0, 1], then normalised with the ImageNet mean and std.

# %%
encoder = jepa_platform.load_encoder(CHECKPOINT)
print(type(encoder).__name__, "width", encoder.embed_dim)

from jepa_platform.data.video import VideoReader  # noqa: E402
from jepa_platform.embed import list_videos  # noqa: E402

first_video = list_videos(VIDEOS).paths[0]
with VideoReader(first_video) as reader:
    frames = reader.read(list(range(0, FRAMES * 2, 2)))  # uint8 [T, H, W, 3], every second frame
clip = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float() / 255, size=(RESOLUTION, RESOLUTION),
                                       mode="bilinear", antialias=True)  # [T, 3, H, W]
mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
clip = ((clip - mean[:, None, None]) / std[:, None, None]).permute(1, 0, 2, 3)[None]  # [1, 3, T, H, W]
with torch.no_grad():
    tokens = encoder.features(clip)
print("tokens", tuple(tokens.shape), "-> pooled", tuple(tokens.mean(1).shape))

# %% [markdown]
# ## 2. A folder of videos, embedded
# The same job as `jepa embed CHECKPOINT --data VIDEOS --out OUT` (which runs it on Ray workers, here or on
# a cluster); run in the notebook's own process. Run the cell again: the finished shards are kept.

# %%
out = WORK / "features"
report = run_embed(EmbedSettings(checkpoint=CHECKPOINT, data=VIDEOS, output=str(out), frames=FRAMES,
                                 resolution=RESOLUTION, shard_size=64, workers=0))
print(f"{report.written} of {report.videos} videos, {report.dim}-d, {len(report.skipped)} skipped, "
      f"{report.resumed_shards} shards kept from an earlier run")

embeddings = jepa_platform.read_embeddings(str(out))
vectors = embeddings.vectors.astype(np.float32)
print(vectors.shape, embeddings.paths[0])

# The same shards in pandas (or polars, DuckDB, Spark): one row per video.
import pyarrow.parquet as pq  # noqa: E402

table = pq.read_table(out / "shard-00000.parquet")
print(table.schema)

# %% [markdown]
# ## 3. Nearest neighbours, and a k-NN classifier
# Cosine similarity between the pooled vectors; each video's closest other videos; and, where the list
# gave labels, the leave-one-out accuracy of a 3-nearest-neighbour vote (chance is 1 / classes).

# %%
unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
similarity = unit @ unit.T
np.fill_diagonal(similarity, -np.inf)
neighbours = np.argsort(-similarity, axis=1)[:, :3]
for i in range(min(3, len(vectors))):
    print(Path(embeddings.paths[i]).name, "->", [Path(embeddings.paths[j]).name for j in neighbours[i]])

if embeddings.labels is not None:
    votes = embeddings.labels[neighbours]
    predicted = np.array([np.bincount(v).argmax() for v in votes])
    accuracy = float((predicted == embeddings.labels).mean())
    print(f"3-NN leave-one-out accuracy {accuracy:.3f} (chance {1 / len(set(embeddings.labels)):.3f})")

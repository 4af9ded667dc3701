"""Where an encoder comes from (`encoder_source`) and the one call a notebook needs (`load_encoder`).

A source URL (any fsspec URL) is one of:

- a Hugging Face V-JEPA 2 folder: `config.json` (model_type vjepa2) and `model.safetensors`;
- this platform's safetensors export: `jepa_encoder.json` and `encoder.safetensors` (`weights.export`);
- this platform's run or checkpoint (job, `checkpoints`, `step_N` folder, `state.pt`): the architecture is
  the backbone of the job's `spec.resolved.yaml`;
- an official V-JEPA / V-JEPA 2 / 2.1 `.pt` file: the architecture is read off the tensors' shapes (RoPE
  when there is no `pos_embed`); the number of heads cannot be, and is guessed (`architecture`).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import torch.nn as nn
import yaml
from torch import Tensor

from jepa_platform.errors import ConfigError
from jepa_platform.layout import SPEC_FILE
from jepa_platform.models.timm_video import read_weights
from jepa_platform.weights import hf
from jepa_platform.weights.architecture import EncoderSpec, ratio_for, spec_from_tensors, vit_spec
from jepa_platform.weights.checkpoints import (
    checkpoint_file,
    encoder_tensors,
    fit_encoder,
    predictor_tensors,
    read_checkpoint,
    strip_wrappers,
)

EXPORT_CONFIG = "jepa_encoder.json"
EXPORT_WEIGHTS = "encoder.safetensors"
EXPORT_FORMAT = "jepa-platform encoder"
DEFAULT_CLIP = {"frames": 16, "resolution": 224}
PREDICTOR_HEAD_DIM = 32  # V-JEPA / V-JEPA 2's predictor: 384 wide, 12 heads


@dataclass
class EncoderSource:
    """An encoder's tensors (named as in `VideoViT`), its architecture, and a predictor when the source has one.

    `stated` is the architecture the source states; `spec` is that, or else the one the tensors' shapes
    imply, worked out only when asked for (a caller with its own backbone never needs the guess).
    """

    where: str
    tensors: dict[str, Tensor]
    stated: EncoderSpec | None = None
    predictor: dict[str, Tensor] = field(default_factory=dict)
    predictor_settings: dict[str, Any] | None = None
    num_heads: int | None = None

    @property
    def spec(self) -> EncoderSpec:
        return self.stated or spec_from_tensors(self.tensors, self.where, self.num_heads)


def checkpoint_job_spec(url: str) -> dict[str, Any] | None:
    """The resolved spec of the job that wrote checkpoint `url` (a job, checkpoints or step folder, or a
    state file), read from `spec.resolved.yaml` up to three folders above it; None when there is none."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
        path = path.rstrip("/")
        for _ in range(4):
            candidate = posixpath.join(path, SPEC_FILE)
            if fs.exists(candidate):
                return yaml.safe_load(fs.cat_file(candidate).decode())
            path = posixpath.dirname(path)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return None


def job_encoder_spec(job: Mapping[str, Any]) -> EncoderSpec | None:
    backbone, data = job.get("backbone"), job.get("data") or {}
    if not isinstance(backbone, Mapping) or "kind" not in backbone:
        return None
    return EncoderSpec(str(backbone["kind"]), dict(backbone.get("params") or {}),
                       int(data.get("resolution", DEFAULT_CLIP["resolution"])),
                       int(data.get("frames", DEFAULT_CLIP["frames"])))


def folder_kind(url: str) -> str | None:
    """'hf' or 'export' for such a folder (or a weights file inside one), else None."""
    fs, path = fsspec.core.url_to_fs(url)
    try:
        if fs.isdir(path):
            folder = path
        elif path.endswith(".safetensors"):  # a weights file: its folder's config tells what it is
            folder = posixpath.dirname(path)
        else:
            return None
        names = {posixpath.basename(p.rstrip("/")) for p in fs.ls(folder, detail=False)}
    except (OSError, ValueError):
        return None
    if EXPORT_CONFIG in names:
        return "export"
    if hf.CONFIG in names and (fs.isdir(path) or path.endswith(".safetensors")):
        return "hf"
    if fs.isdir(path) and any(n.endswith(".safetensors") for n in names):
        raise ConfigError(f"{url}: a folder of safetensors without a {hf.CONFIG} (Hugging Face) or {EXPORT_CONFIG} "
                          f"(jepa export): the architecture cannot be told")
    return None


def read_json(url: str) -> Any:
    try:
        with fsspec.open(url, "rb") as f:
            return json.loads(f.read().decode())
    except FileNotFoundError:
        raise ConfigError(f"{url}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{url}: not valid JSON ({e})") from None


def folder_of(url: str) -> str:
    fs, path = fsspec.core.url_to_fs(url)
    return url if fs.isdir(path) else url.rstrip("/").rsplit("/", 1)[0]


def hf_source(url: str) -> EncoderSource:
    folder = folder_of(url)
    config = read_json(f"{folder}/{hf.CONFIG}")
    settings = hf.vit_from_config(config, f"{folder}/{hf.CONFIG}")
    encoder, predictor = hf.from_hf(read_weights(f"{folder}/{hf.WEIGHTS}"))
    pred_settings = {**hf.predictor_from_config(config), "num_mask_tokens": int(config.get("pred_num_mask_tokens", 10)),
                     "target_dim": settings["embed_dim"], "mlp": "gelu"} if predictor else None
    return EncoderSource(folder, encoder, vit_spec(settings), predictor, pred_settings)


def export_source(url: str) -> EncoderSource:
    folder = folder_of(url)
    meta = read_json(f"{folder}/{EXPORT_CONFIG}")
    if not isinstance(meta, Mapping) or meta.get("format") != EXPORT_FORMAT:
        raise ConfigError(f"{folder}/{EXPORT_CONFIG}: not a jepa export (format is not {EXPORT_FORMAT!r})")
    spec = EncoderSpec.from_json(meta, f"{folder}/{EXPORT_CONFIG}")
    return EncoderSource(folder, read_weights(f"{folder}/{EXPORT_WEIGHTS}"), spec)


def encoder_source(url: str, key: str = "auto", num_heads: int | None = None) -> EncoderSource:
    """The encoder at `url` (see the module docstring); `key` picks the encoder of a checkpoint holding two."""
    kind = folder_kind(url)
    if kind == "hf":
        return hf_source(url)
    if kind == "export":
        return export_source(url)
    if url.endswith(".safetensors"):
        return EncoderSource(url, strip_wrappers(read_weights(url)), num_heads=num_heads)
    state, where = read_checkpoint(url)
    tensors = encoder_tensors(state, key, where)
    job = checkpoint_job_spec(url)
    spec = job_encoder_spec(job) if job else None
    predictor = predictor_tensors(state)
    heads = ((job or {}).get("predictor") or {}).get("params", {}).get("num_heads")
    settings = predictor_from_tensors(predictor, heads) if predictor else None
    return EncoderSource(where, tensors, spec, predictor, settings, num_heads)


def predictor_from_tensors(state: Mapping[str, Tensor], num_heads: int | None) -> dict[str, Any] | None:
    """A predictor's settings read off its tensors; heads from the job, else V-JEPA's 32-channel heads;
    None when they cannot be told."""
    embed, proj = state.get("predictor_embed.weight"), state.get("predictor_proj.weight")
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if embed is None or proj is None or fc1 is None:
        return None
    width = int(embed.shape[0])
    heads = num_heads or (width // PREDICTOR_HEAD_DIM if width % PREDICTOR_HEAD_DIM == 0 else None)
    if heads is None:
        return None
    swiglu = "blocks.0.mlp.fc3.weight" in state
    hidden = 3 * int(fc1.shape[0]) // 2 if swiglu else int(fc1.shape[0])
    return {
        "embed_dim": width, "depth": 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
        "num_heads": int(heads), "mlp_ratio": ratio_for(hidden, width), "mlp": "swiglu" if swiglu else "gelu",
        "pos_embed": "sincos" if "pos_embed" in state else "rope", "target_dim": int(proj.shape[0]),
        "num_mask_tokens": sum(1 for k in state if k.startswith("mask_tokens.")),
    }


def weights_file(url: str) -> str:
    """The one file holding the encoder weights `encoder_source(url)` reads (what a SALT student pins)."""
    kind = folder_kind(url)
    if kind == "hf":
        return f"{folder_of(url)}/{hf.WEIGHTS}"
    if kind == "export":
        return f"{folder_of(url)}/{EXPORT_WEIGHTS}"
    return url if url.endswith(".safetensors") else checkpoint_file(url)


def stated_spec(url: str, key: str = "auto") -> EncoderSpec | None:
    """The architecture `url` states (a Hugging Face or export config, a job spec) without reading weights;
    None for a file that states none (an official `.pt`: its shapes tell, once read)."""
    kind = folder_kind(url)
    if kind == "hf":
        folder = folder_of(url)
        return vit_spec(hf.vit_from_config(read_json(f"{folder}/{hf.CONFIG}"), f"{folder}/{hf.CONFIG}"))
    if kind == "export":
        folder = folder_of(url)
        return EncoderSpec.from_json(read_json(f"{folder}/{EXPORT_CONFIG}"), f"{folder}/{EXPORT_CONFIG}")
    job = checkpoint_job_spec(url)
    return job_encoder_spec(job) if job else None


def load_encoder(url: str, key: str = "auto", num_heads: int | None = None, pos_embed: str | None = None
                 ) -> nn.Module:
    """The encoder stored at `url`, built to its architecture, holding its weights, in eval mode.

    `url` is any fsspec URL of a jepa-platform run or checkpoint, an official V-JEPA / V-JEPA 2 / 2.1 `.pt`
    file, a Hugging Face V-JEPA 2 folder, or a `jepa export` folder. `key` picks the encoder of a
    checkpoint that has two ("auto": the teacher / target encoder when saved). `num_heads` is needed only
    for an official file of an unusual width (heads cannot be read from weights). `pos_embed="rope"` is
    needed for V-JEPA 2's released `.pt` files: they carry a `pos_embed` their RoPE encoders do not use,
    so their tensors look like a sin-cos encoder's.

    `encoder.features(clips)` gives per-token features; see its docstring for the preprocessing.
    """
    source = encoder_source(url, key, num_heads)
    spec = source.spec
    overrides = {k: v for k, v in (("num_heads", num_heads), ("pos_embed", pos_embed)) if v}
    if overrides and spec.kind == "vit":
        spec = EncoderSpec(spec.kind, {**spec.params, **overrides}, spec.img_size, spec.num_frames)
    encoder = spec.build()
    fit_encoder(encoder, source.tensors, source.where)
    return encoder.eval()


def load_predictor(source: EncoderSource, grid: tuple[int, int, int] | None = None) -> nn.Module | None:
    """The source's predictor, built and holding its weights (eval mode); None when it has none or its
    settings cannot be told. `grid` is the token grid it is configured for (default: the encoder's)."""
    from jepa_platform.models.predictor import Predictor

    settings, tensors = source.predictor_settings, source.predictor
    if not settings or not tensors:
        return None
    if grid is None:
        spec = source.spec
        patch, tubelet = spec.params.get("patch_size", 16), spec.params.get("tubelet_size", 2)
        grid = (spec.num_frames // tubelet, spec.img_size // patch, spec.img_size // patch)
    predictor = Predictor(
        int(tensors["predictor_embed.weight"].shape[1]), grid, predictor_embed_dim=settings["embed_dim"],
        depth=settings["depth"], num_heads=settings["num_heads"], target_dim=settings["target_dim"],
        num_mask_tokens=settings["num_mask_tokens"], mlp_ratio=settings["mlp_ratio"],
        pos_embed=settings["pos_embed"], mlp=settings.get("mlp", "gelu"),
    )
    fit_encoder(predictor, tensors, f"{source.where} (predictor)")
    return predictor.eval()

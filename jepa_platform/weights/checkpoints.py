"""Pretrained encoder weights from a checkpoint, and fitting them to a configured encoder.

Two layouts are read, from any fsspec URL:

- this platform's checkpoints (`CheckpointStore`): a `checkpoints` folder (its `latest` pointer is
  followed), a job folder holding one, a `step_N` folder or a `state.pt` file. The encoder is the
  teacher's (`state["teacher"]`, `encoder.*`: V-JEPA's EMA target encoder) or, when the teacher saved
  none (a pixel-reconstruction run), the student's (`state["student"]`, `encoder.*`);
- official V-JEPA / V-JEPA 2 files: a dict with `encoder`, `target_encoder` (and `predictor`, `opt`, ...),
  whose tensor names carry the training wrappers' `module.` / `backbone.` prefixes.

Errors a user can cause (a wrong URL, another architecture) end in one `ConfigError` naming the URL.
"""

from __future__ import annotations

import pickle
import posixpath
import re
import warnings
from collections.abc import Mapping
from typing import Any

import fsspec
import torch
import torch.nn as nn
from torch import Tensor

from jepa_platform.errors import ConfigError, JepaError
from jepa_platform.layout import CHECKPOINTS
from jepa_platform.models.pos_embed import resample_pos_embed
from jepa_platform.storage import join
from jepa_platform.train.checkpoint import LATEST, STATE, CheckpointStore

PLATFORM_KEYS = ("teacher", "student")
OFFICIAL_KEYS = ("target_encoder", "encoder")
KEYS = ("auto", *PLATFORM_KEYS, *OFFICIAL_KEYS)
WRAPPERS = ("module", "backbone", "_orig_mod")  # DDP, V-JEPA's MultiMaskWrapper, torch.compile
SHOWN = 8  # tensors listed per kind of mismatch


def load_encoder_state(url: str, key: str = "auto") -> dict[str, Tensor]:
    """Encoder tensors named as in `VideoViT` (wrapper prefixes stripped), read from `url`.

    `key` picks the encoder: "auto" takes the teacher / target encoder when the checkpoint has one and
    the student / online encoder otherwise; "teacher"/"student" force one of a platform checkpoint,
    "target_encoder"/"encoder" one of an official V-JEPA file.
    """
    state, where = read_checkpoint(url)
    return encoder_tensors(state, key, where)


def encoder_tensors(state: Any, key: str, where: str) -> dict[str, Tensor]:
    """The encoder `key` picks (see `load_encoder_state`) from a loaded checkpoint, wrapper prefixes stripped."""
    if key not in KEYS:
        raise ConfigError(f"key: must be one of {list(KEYS)}, got {key!r}")
    if not isinstance(state, Mapping):
        raise ConfigError(f"checkpoint {where}: expected a dict of weights, found a {type(state).__name__}")
    if "student" in state and "teacher" in state:
        tensors = platform_encoder(state, key, where)
    elif any(k in state for k in OFFICIAL_KEYS):
        tensors = official_encoder(state, key, where)
    elif state and all(isinstance(v, Tensor) for v in state.values()) and key == "auto":
        tensors = dict(state)  # a bare encoder state dict
    else:
        found = ", ".join(map(str, list(state)[:8])) or "nothing"
        raise ConfigError(
            f"checkpoint {where}: not a jepa-platform checkpoint (student/teacher) nor a V-JEPA one "
            f"(encoder/target_encoder); its top-level keys are: {found}"
        )
    return strip_wrappers(tensors)


def predictor_tensors(state: Any) -> dict[str, Tensor]:
    """The predictor of a loaded checkpoint, named as in our `Predictor` (official V-JEPA names
    `predictor_blocks`, `predictor_norm`, `predictor_pos_embed` renamed); empty when it has none."""
    if not isinstance(state, Mapping):
        return {}
    if "student" in state:
        return prefixed(state["student"], "predictor.")
    renames = (("predictor_blocks.", "blocks."), ("predictor_norm.", "norm."), ("predictor_pos_embed", "pos_embed"))
    out = {}
    for name, tensor in strip_wrappers(prefixed(state.get("predictor"), "")).items():
        for old, new in renames:
            if name.startswith(old):
                name = new + name[len(old):]
        out[name] = tensor
    return out


# -- reading ---------------------------------------------------------------------------------------------
def read_checkpoint(url: str) -> tuple[Any, str]:
    """(the loaded object, the URL of the file it came from). Folders are resolved to their state file."""
    try:
        file = checkpoint_file(url)
        with fsspec.open(file, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True), file
    except JepaError as e:
        raise ConfigError(str(e)) from None
    except FileNotFoundError:
        raise ConfigError(f"checkpoint {url}: no such file or folder") from None
    except Exception as e:  # noqa: BLE001 - whatever a file of other bytes makes the unpickler raise (KeyError, ...)
        if isinstance(e, pickle.UnpicklingError | KeyError | IndexError | TypeError):  # a pickle of no tensors;
            # torch's own text advises weights_only=False: never ours to give
            reason = "it is not a PyTorch file of tensors (objects other than tensors are never unpickled here)"
        else:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"checkpoint {url} could not be read as a PyTorch weights file: {reason}") from None


def checkpoint_file(url: str) -> str:
    """The file `read_checkpoint` reads for `url`: a file as it is; a `checkpoints` folder's newest complete
    state file (following `latest`), a job folder's, or a `step_N` folder's `state.pt`."""
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.isdir(path):
        return url
    for root, root_path in ((url, path), (join(url, CHECKPOINTS), posixpath.join(path, CHECKPOINTS))):
        if fs.exists(posixpath.join(root_path, LATEST)):
            folder = CheckpointStore(root).latest()
            if folder:
                return join(folder, STATE)
    if fs.exists(posixpath.join(path, STATE)):
        return join(url, STATE)
    raise ConfigError(
        f"checkpoint {url}: the folder holds no checkpoint (expected a '{LATEST}' pointer, "
        f"a '{CHECKPOINTS}/{LATEST}' pointer or a '{STATE}' file)"
    )


# -- picking the encoder ---------------------------------------------------------------------------------
def prefixed(state: Any, prefix: str) -> dict[str, Tensor]:
    if not isinstance(state, Mapping):
        return {}
    return {k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}


def platform_encoder(state: Mapping[str, Any], key: str, where: str) -> dict[str, Tensor]:
    if key in OFFICIAL_KEYS:
        raise ConfigError(
            f"key {key!r} names an encoder of an official V-JEPA file, but {where} is a jepa-platform "
            f"checkpoint: use 'teacher' or 'student'"
        )
    teacher = prefixed(state["teacher"], "encoder.")
    if key == "teacher" and not teacher:
        raise ConfigError(
            f"checkpoint {where}: its teacher saved no encoder (a pixel-reconstruction run?); "
            f"use key 'student' or 'auto'"
        )
    if key == "student" or not teacher:
        student = prefixed(state["student"], "encoder.")
        if not student:
            raise ConfigError(f"checkpoint {where}: the student holds no encoder.* tensors")
        return student
    return teacher


def official_encoder(state: Mapping[str, Any], key: str, where: str) -> dict[str, Tensor]:
    if key in PLATFORM_KEYS:
        raise ConfigError(
            f"key {key!r} names an encoder of a jepa-platform checkpoint, but {where} is a V-JEPA "
            f"file: use 'target_encoder' or 'encoder'"
        )
    name = key if key != "auto" else next(k for k in OFFICIAL_KEYS if k in state)
    tensors = state.get(name)
    if not isinstance(tensors, Mapping) or not tensors:
        present = [k for k in OFFICIAL_KEYS if k in state]
        raise ConfigError(f"checkpoint {where}: has no {name!r} weights (it has {present})")
    return dict(tensors)


def strip_wrappers(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`module.backbone.blocks.0...` -> `blocks.0...`: drops leading DDP / wrapper / compile segments."""
    out = {}
    for name, tensor in state.items():
        parts = name.split(".")
        while len(parts) > 1 and parts[0] in WRAPPERS:
            parts = parts[1:]
        out[".".join(parts)] = tensor
    return out


# -- fitting ---------------------------------------------------------------------------------------------
def shape(t: Tensor) -> str:
    return str(list(t.shape))


def describe(state: Mapping[str, Tensor]) -> str:
    """What architecture the tensors imply, as far as weights can tell (heads cannot be read off)."""
    facts = []
    proj = state.get("patch_embed.proj.weight")
    if proj is not None and proj.ndim == 5:
        facts += [f"embed_dim={proj.shape[0]}", f"tubelet_size={proj.shape[2]}", f"patch_size={proj.shape[3]}"]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if blocks:
        facts.append(f"depth={max(blocks) + 1}")
    fc1, fc2 = state.get("blocks.0.mlp.fc1.weight"), state.get("blocks.0.mlp.fc2.weight")
    if "blocks.0.mlp.fc3.weight" in state:
        facts.append("mlp=swiglu")
    elif fc1 is not None and fc2 is not None and fc2.shape[0]:
        facts.append(f"mlp_ratio={fc1.shape[0] / fc2.shape[0]:g}")
    if blocks:
        facts.append("pos_embed=sincos" if "pos_embed" in state else "pos_embed=rope")
    return ", ".join(facts)


def fit_encoder(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load `state` into `model` strictly, or raise a ConfigError naming every tensor that does not fit.

    A `pos_embed` that differs only in its number of tokens (weights trained at another resolution or
    clip length) is resampled to the model's grid when the checkpoint's grid can be told from the
    token count; otherwise that is refused too.
    """
    own = model.state_dict()
    state = dict(state)
    if "pos_embed" in own and "pos_embed" not in state and any(k.startswith("blocks.") for k in state):
        raise ConfigError(
            f"checkpoint {source}: the encoder has no pos_embed, so it uses rotary position embeddings (RoPE, as "
            f"V-JEPA 2 does), but the configured backbone adds sin-cos positions: set its params.pos_embed: rope"
        )
    if "pos_embed" not in own and "pos_embed" in state and getattr(model, "rope", False):
        # V-JEPA 2's released files carry a pos_embed their RoPE encoders never use (its own loader drops it
        # too); weights cannot tell such a file from a sin-cos one, so the configured RoPE is taken at its word.
        warnings.warn(f"checkpoint {source}: its pos_embed {shape(state['pos_embed'])} is not used by the configured "
                      f"RoPE encoder (V-JEPA 2's files carry one); it was left out", UserWarning, stacklevel=2)
        state.pop("pos_embed")
    if "pos_embed" in own and "pos_embed" in state:
        state["pos_embed"] = fit_pos_embed(state["pos_embed"], own["pos_embed"], getattr(model, "grid", None), source)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    differ = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or differ:
        raise ConfigError(mismatch_message(source, state, own, missing, unexpected, differ))
    model.load_state_dict(state, strict=True)


def mismatch_message(source, state, own, missing, unexpected, differ) -> str:
    parts = [f"checkpoint {source} does not fit the configured encoder"]
    kinds = [
        ("shapes differ", differ, lambda k: f"{k}: checkpoint {shape(state[k])} vs configured {shape(own[k])}"),
        ("missing from the checkpoint", missing, lambda k: f"{k} {shape(own[k])}"),
        ("not in the configured encoder", unexpected, lambda k: f"{k} {shape(state[k])}"),
    ]
    for label, names, fmt in kinds:
        if names:
            more = f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
            parts.append(f"{len(names)} {label}: " + ", ".join(fmt(k) for k in names[:SHOWN]) + more)
    implied = describe(state)
    hint = "configure the backbone to match the checkpoint"
    parts.append(f"{hint} ({implied})" if implied else hint)
    return "; ".join(parts)


def fit_pos_embed(pos: Tensor, own: Tensor, grid: tuple[int, int, int] | None, source: str) -> Tensor:
    """`pos` as is, or resampled to `grid` when only its token count differs and its grid is clear."""
    if pos.shape == own.shape or pos.ndim != 3 or own.ndim != 3 or pos.shape[-1] != own.shape[-1] or grid is None:
        return pos  # equal, or a difference fit_encoder reports with the other tensors
    src = source_grids(pos.shape[1], tuple(grid))
    if len(src) != 1:
        guess = f"could be any of {sorted(src)}" if src else "matches no grid"
        raise ConfigError(
            f"checkpoint {source}: pos_embed has {pos.shape[1]} tokens but the teacher's {tuple(grid)} grid needs "
            f"{own.shape[1]}, and the checkpoint's token grid cannot be told ({pos.shape[1]} tokens {guess}); "
            f"train at the checkpoint's frames and resolution"
        )
    return resample_pos_embed(pos, src.pop(), tuple(grid))


def source_grids(tokens: int, grid: tuple[int, int, int]) -> set[tuple[int, int, int]]:
    """Grids of `tokens` square-framed tokens that keep the frames, the resolution, or their ratio of `grid`."""
    t, h, w = grid
    out = set()
    side = round((tokens / t) ** 0.5)  # same number of frames, another resolution
    if side > 0 and t * side * side == tokens:
        out.add((t, side, side))
    if tokens % (h * w) == 0:  # same resolution, another number of frames
        out.add((tokens // (h * w), h, w))
    scale = round((tokens / (t * h * w)) ** (1 / 3) * h) / h if h else 0  # both scaled alike
    if scale > 0:
        cand = (round(t * scale), round(h * scale), round(w * scale))
        if cand[0] * cand[1] * cand[2] == tokens:
            out.add(cand)
    return out

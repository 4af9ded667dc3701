"""Hugging Face `transformers` V-JEPA 2 folders (`config.json` + `model.safetensors`), both ways.

`VJEPA2Model` holds an encoder (`encoder.*`) and a predictor (`predictor.*`). Its tensors differ from
ours by name, by its separate query/key/value projections where ours (and V-JEPA 2's) are one `qkv`,
and by its mask tokens, stacked in one tensor where ours are a list. Only what `VJEPA2Model` can
express converts: a RoPE encoder with a GELU MLP and qkv biases, and a predictor that projects back to
the encoder's width. `transformers` takes a RoPE token's position from its configured `crop_size` grid,
so its features equal ours on clips of that size.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from jepa_platform.errors import ConfigError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
MODEL_TYPE = "vjepa2"

# (our name, theirs) for the parts that are only renamed; block internals are handled per layer.
ENCODER_NAMES = [("patch_embed.proj.", "encoder.embeddings.patch_embeddings.proj."), ("norm.", "encoder.layernorm.")]
PREDICTOR_NAMES = [
    ("predictor_embed.", "predictor.embeddings.predictor_embeddings."),
    ("norm.", "predictor.layernorm."),
    ("predictor_proj.", "predictor.proj."),
]
BLOCK_NAMES = [("norm1.", "norm1."), ("attn.proj.", "attention.proj."), ("norm2.", "norm2."), ("mlp.fc1.", "mlp.fc1."),
               ("mlp.fc2.", "mlp.fc2.")]


def not_representable(why: str) -> ConfigError:
    return ConfigError(f"not representable as a Hugging Face V-JEPA 2 model: {why}")


def block_to_hf(name: str, tensor: Tensor, prefix: str) -> dict[str, Tensor]:
    """One of our block tensors (`N.rest`) as `transformers` names it under `prefix` (qkv split in three)."""
    index, rest = name.split(".", 1)
    head = f"{prefix}{index}."
    if rest.startswith("attn.qkv."):
        kind = rest.rsplit(".", 1)[1]
        pieces = zip(("query", "key", "value"), tensor.chunk(3, dim=0), strict=True)
        return {f"{head}attention.{part}.{kind}": t.contiguous() for part, t in pieces}
    for ours, theirs in BLOCK_NAMES:
        if rest.startswith(ours):
            return {head + theirs + rest[len(ours):]: tensor}
    raise not_representable(f"block tensor {name!r} has no counterpart (a SwiGLU MLP or another block kind?)")


def to_hf(encoder: Mapping[str, Tensor], predictor: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Our encoder (and predictor) tensors -> a `VJEPA2Model` state dict."""
    if "pos_embed" in encoder:
        raise not_representable("the encoder uses sin-cos position embeddings; transformers' V-JEPA 2 is RoPE only")
    out = convert(encoder, ENCODER_NAMES, "encoder.layer.")
    if predictor is not None:
        tokens = sorted((k for k in predictor if re.fullmatch(r"mask_tokens\.\d+", k)), key=lambda k: int(k[12:]))
        rest = {k: v for k, v in predictor.items() if not k.startswith("mask_tokens.")}
        if "pos_embed" in rest:
            raise not_representable("the predictor uses sin-cos position embeddings")
        out.update(convert(rest, PREDICTOR_NAMES, "predictor.layer."))
        out["predictor.embeddings.mask_tokens"] = torch.stack([predictor[k] for k in tokens])  # [n, 1, 1, D]
    return out


def convert(state: Mapping[str, Tensor], names: list[tuple[str, str]], layers: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name.startswith("blocks."):
            out.update(block_to_hf(name[len("blocks."):], tensor, layers))
            continue
        match = next(((o, t) for o, t in names if name.startswith(o)), None)
        if match is None:
            raise not_representable(f"tensor {name!r} has no counterpart")
        out[match[1] + name[len(match[0]):]] = tensor
    return out


def from_hf(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A `VJEPA2Model` state dict -> (our encoder tensors, our predictor tensors; empty if it has none)."""
    parts: dict[str, dict[str, Tensor]] = {"encoder": {}, "predictor": {}}
    qkv: dict[tuple[str, str, str], dict[str, Tensor]] = {}
    for name, tensor in state.items():
        part, _, rest = name.partition(".")
        if part not in parts:
            continue  # a classification head or pooler: not part of the encoder
        m = re.fullmatch(r"layer\.(\d+)\.attention\.(query|key|value)\.(weight|bias)", rest)
        if m:
            qkv.setdefault((part, m.group(1), m.group(3)), {})[m.group(2)] = tensor
        elif name == "predictor.embeddings.mask_tokens":
            parts["predictor"].update({f"mask_tokens.{i}": token for i, token in enumerate(tensor)})
        else:
            parts[part][our_name(name, part, rest)] = tensor
    for (part, index, kind), pieces in qkv.items():
        if set(pieces) != {"query", "key", "value"}:
            raise ConfigError(f"Hugging Face {part} layer {index}: query/key/value {kind} incomplete")
        parts[part][f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([pieces[p] for p in ("query", "key", "value")])
    return parts["encoder"], parts["predictor"]


def our_name(name: str, part: str, rest: str) -> str:
    """Our name for a `transformers` tensor other than query/key/value and the mask tokens."""
    m = re.fullmatch(r"layer\.(\d+)\.(.+)", rest)
    if m:
        ours = next((o + m.group(2)[len(t):] for o, t in BLOCK_NAMES if m.group(2).startswith(t)), None)
        ours = ours and f"blocks.{m.group(1)}.{ours}"
    else:
        names = ENCODER_NAMES if part == "encoder" else PREDICTOR_NAMES
        ours = next((o + name[len(t):] for o, t in names if name.startswith(t)), None)
    if ours is None:
        raise ConfigError(f"Hugging Face tensor {name!r} is not a V-JEPA 2 tensor")
    return ours


def hf_config(vit: Mapping[str, Any], predictor: Mapping[str, Any] | None, num_mask_tokens: int) -> dict[str, Any]:
    """`config.json` for our resolved encoder (and predictor) settings (see `architecture.EncoderSpec`)."""
    if vit["pos_embed"] != "rope":
        raise not_representable("the encoder uses sin-cos position embeddings; transformers' V-JEPA 2 is RoPE only")
    if vit["mlp"] != "gelu":
        raise not_representable("the encoder has a SwiGLU MLP; transformers' V-JEPA 2 has GELU MLPs")
    config = {
        "model_type": MODEL_TYPE, "architectures": ["VJEPA2Model"], "hidden_size": vit["embed_dim"],
        "num_hidden_layers": vit["depth"], "num_attention_heads": vit["num_heads"], "mlp_ratio": vit["mlp_ratio"],
        "patch_size": vit["patch_size"], "tubelet_size": vit["tubelet_size"], "crop_size": vit["img_size"],
        "frames_per_clip": vit["num_frames"], "in_chans": 3, "layer_norm_eps": 1e-6, "qkv_bias": True,
        "hidden_act": "gelu", "drop_path_rate": 0.0, "torch_dtype": "float32",
    }
    if predictor is not None:
        config.update({
            "pred_hidden_size": predictor["embed_dim"], "pred_num_hidden_layers": predictor["depth"],
            "pred_num_attention_heads": predictor["num_heads"], "pred_mlp_ratio": predictor["mlp_ratio"],
            "pred_num_mask_tokens": num_mask_tokens,
        })
    return config


def vit_from_config(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Our encoder settings (`vit` params plus img_size / num_frames) from a V-JEPA 2 `config.json`."""
    if config.get("model_type") != MODEL_TYPE:
        raise ConfigError(f"{where}: model_type is {config.get('model_type')!r}, not a V-JEPA 2 model ({MODEL_TYPE!r})")
    try:
        return {
            "embed_dim": int(config.get("hidden_size", 1024)), "depth": int(config.get("num_hidden_layers", 24)),
            "num_heads": int(config.get("num_attention_heads", 16)), "mlp_ratio": float(config.get("mlp_ratio", 4.0)),
            "patch_size": int(config.get("patch_size", 16)), "tubelet_size": int(config.get("tubelet_size", 2)),
            "img_size": int(config.get("crop_size", 256)), "num_frames": int(config.get("frames_per_clip", 64)),
            "pos_embed": "rope", "mlp": "gelu",
        }
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: a V-JEPA 2 config with a value of the wrong type ({e})") from None


def predictor_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "embed_dim": int(config.get("pred_hidden_size", 384)), "depth": int(config.get("pred_num_hidden_layers", 12)),
        "num_heads": int(config.get("pred_num_attention_heads", 12)),
        "mlp_ratio": float(config.get("pred_mlp_ratio", 4.0)), "pos_embed": "rope", "mlp": "gelu",
    }


def config_text(config: Mapping[str, Any]) -> bytes:
    return (json.dumps(dict(config), indent=2, sort_keys=True) + "\n").encode()

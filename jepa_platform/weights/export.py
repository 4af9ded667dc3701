"""Encoders out (`jepa export`): a Hugging Face `transformers` V-JEPA 2 folder, or this platform's
safetensors export (the encoder alone, with a small JSON config that `load_encoder` reads back).

Files are written atomically, each one whole or not at all; an existing output folder is refused
rather than mixed with old files.
"""

from __future__ import annotations

import json
from typing import Any

import fsspec
from safetensors.torch import save

from jepa_platform.errors import ConfigError
from jepa_platform.storage import join, write_bytes_atomic
from jepa_platform.weights import hf
from jepa_platform.weights.architecture import predictor_settings, vit_settings
from jepa_platform.weights.checkpoints import fit_encoder
from jepa_platform.weights.load import (
    EXPORT_CONFIG,
    EXPORT_FORMAT,
    EXPORT_WEIGHTS,
    encoder_source,
    load_predictor,
)

FORMATS = ("hf", "safetensors")


def tensors_bytes(state: dict) -> bytes:
    return save({k: v.detach().contiguous() for k, v in state.items()})


def export_encoder(source: str, fmt: str, out: str, key: str = "auto") -> list[str]:
    """Write the encoder at `source` (anything `load_encoder` reads) to the folder `out` as `fmt`; returns
    notes for the user (what was left out and why)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: must be one of {list(FORMATS)}, got {fmt!r}")
    src = encoder_source(source, key)
    encoder = src.spec.build()
    fit_encoder(encoder, src.tensors, src.where)
    check_output(out)
    if fmt == "safetensors":
        meta = {"format": EXPORT_FORMAT, "version": 1, **src.spec.to_json(), "source": source}
        write(join(out, EXPORT_WEIGHTS), tensors_bytes(encoder.state_dict()))
        write(join(out, EXPORT_CONFIG), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        return []
    if not hasattr(encoder, "rope"):
        raise hf.not_representable(f"backbone {src.spec.kind!r} is not jepa-platform's video ViT")
    settings = vit_settings(encoder)
    predictor, notes = hf_predictor(src, settings)
    config = hf.hf_config(settings, predictor_settings(predictor) if predictor else None,
                          len(predictor.mask_tokens) if predictor else 0)
    tensors = hf.to_hf(encoder.state_dict(), predictor.state_dict() if predictor else None)
    write(join(out, hf.WEIGHTS), tensors_bytes(tensors))
    write(join(out, hf.CONFIG), hf.config_text(config))
    return notes


def hf_predictor(src: Any, settings: dict) -> tuple[Any, list[str]]:
    """The source's predictor if `VJEPA2Model` can hold it, and a note when it cannot."""
    if not src.predictor:
        return None, ["the source has no predictor: transformers will initialise VJEPA2Model's predictor at "
                      "random (the encoder is exact)"]
    predictor = load_predictor(src)
    if predictor is None:
        return None, ["the predictor's heads cannot be told from its weights: it was left out"]
    got = predictor_settings(predictor)
    why = ("it uses sin-cos positions" if got["pos_embed"] != "rope" else
           "it has a SwiGLU MLP" if hasattr(predictor.blocks[0].mlp, "fc3") else
           f"it predicts {got['target_dim']} channels, not the encoder's {settings['embed_dim']}"
           if got["target_dim"] != settings["embed_dim"] else None)
    if why:
        return None, [f"the predictor was left out ({why}); transformers will initialise one at random"]
    return predictor, []


def check_output(out: str) -> None:
    """Refuse an output folder that exists with files in it, and one that cannot be written."""
    try:
        fs, path = fsspec.core.url_to_fs(out)
        taken = fs.exists(path) and (not fs.isdir(path) or bool(fs.ls(path, detail=False)))
        if not taken:
            fs.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"output {out}: cannot be written ({e.strerror or e})") from None
    if taken:
        raise ConfigError(f"output {out}: already exists and is not an empty folder; choose a new one")


def write(url: str, data: bytes) -> None:
    try:
        write_bytes_atomic(url, data)
    except OSError as e:
        raise ConfigError(f"output {url}: cannot be written ({e.strerror or e})") from None

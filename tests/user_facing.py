"""What the tests share about what users see and use: the one-line refusal a CLI call must give, a tiny
training spec, and a small random V-JEPA 2 saved by transformers (an implementation independent of ours)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jepa_platform.spec.model import deep_merge


def one_error_line(result, code: int = 2) -> str:
    """The single `error:` line of a refused CLI call (notes aside), after checking its exit code and that no
    traceback was printed."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def tiny_training(name: str, manifest: Path | str, output: Path | str, steps: int = 8, **changes: Any
                  ) -> dict[str, Any]:
    """A raw spec that trains in seconds on 32 px clips of 4 frames; `changes` merge over it."""
    raw = {
        "name": name,
        "backbone": {"kind": "vit", "params": {"size": "custom", "embed_dim": 48, "depth": 1, "num_heads": 3,
                                               "patch_size": 16}},
        "predictor": {"kind": "vit_predictor", "params": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "optim": {"steps": steps, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 1},
        "monitor": {"every": 0, "eval_every": 0},
        "data": {"train": str(manifest), "frames": 4, "stride": 2, "resolution": 32, "loader_workers": 0},
        "storage": {"output": str(output)},
    }
    return deep_merge(raw, changes)


def save_tiny_vjepa2(folder: Path, eager: bool = True):
    """A small random transformers `VJEPA2Model` (RoPE, 64 wide, for 32 px clips of 4 frames) saved to
    `folder`; returns the model, in eval mode."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.VJEPA2Config(
        hidden_size=64, num_attention_heads=2, num_hidden_layers=2, crop_size=32, patch_size=8, frames_per_clip=4,
        tubelet_size=2, pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=1,
        pred_num_mask_tokens=2,
    )
    if eager:
        config._attn_implementation = "eager"  # the plain softmax(QK^T)V, not our SDPA
    model = transformers.VJEPA2Model(config).eval()
    model.save_pretrained(folder)
    return model

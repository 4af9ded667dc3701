"""Our RoPE / SwiGLU encoder and predictor beside the official V-JEPA 2 code, on the same weights.

    # once: a copy of github.com/facebookresearch/vjepa2's `src` folder at /tmp/vjepa2-official/src
    .venv/bin/python scripts/check_official_vjepa2.py --vjepa2 /tmp/vjepa2-official

The official `VisionTransformer` (use_rope, optionally use_silu for SwiGLU) and `VisionTransformerPredictor`
are imported from that checkout (never copied), randomly initialised, saved as an official-layout training
checkpoint (`encoder` / `target_encoder` / `predictor` under `module.backbone.`) and loaded with
`jepa_platform.load_encoder`, which reads the architecture off the shapes. V-JEPA 2's `AttentiveClassifier`
is compared with our default attentive probe, on the same weights. Printed: the largest absolute
difference of the features on full clips at the configured size and at other frame counts and resolutions,
on masked contexts, and of the predictor's outputs. `transformers` is the oracle the test suite uses; this
script is the second, run by hand, because the official code cannot be installed in CI.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from jepa_platform import load_encoder
from jepa_platform.weights.load import encoder_source, load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vjepa2", type=Path, required=True, help="folder holding the official `src` package")
    args = parser.parse_args()
    sys.path.insert(0, str(args.vjepa2))
    from src.models.predictor import vit_predictor
    from src.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    rows = []
    for label, silu in (("gelu", False), ("swiglu", True)):
        official = VisionTransformer(img_size=32, patch_size=8, num_frames=8, tubelet_size=2, embed_dim=128, depth=2,
                                     num_heads=2, use_rope=True, use_silu=silu, norm_layer=_norm()).eval()
        predictor = vit_predictor(img_size=32, patch_size=8, num_frames=8, tubelet_size=2, embed_dim=128,
                                  predictor_embed_dim=64, depth=2, num_heads=2, use_mask_tokens=True,
                                  num_mask_tokens=2, zero_init_mask_tokens=False, use_rope=True).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/official.pt"
            wrap = {"module.backbone." + k: v for k, v in official.state_dict().items()}
            torch.save({"encoder": wrap, "target_encoder": wrap,
                        "predictor": {"module.backbone." + k: v for k, v in predictor.state_dict().items()}}, path)
            ours = load_encoder(path)
            ours_predictor = load_predictor(encoder_source(path), grid=(4, 4, 4))
        rows += compare(label, official, predictor, ours, ours_predictor)
    rows.append(("attentive probe (V-JEPA 2 layout)", compare_probe()))
    width = max(len(r[0]) for r in rows)
    for name, diff in rows:
        print(f"{name:<{width}}  max |ours - official| = {diff:.2e}")


@torch.no_grad()
def compare_probe() -> float:
    """Our default attentive probe against V-JEPA 2's AttentiveClassifier (its 4 blocks = 3 + the cross-attention
    block), the same weights renamed."""
    from src.models.attentive_pooler import AttentiveClassifier

    from jepa_platform.models.probes import AttentiveProbe

    theirs = AttentiveClassifier(embed_dim=64, num_heads=4, depth=4, num_classes=5).eval()
    ours = AttentiveProbe(64, 5, num_heads=4, depth=3).eval()
    renames = (("pooler.cross_attention_block.", "pool."), ("pooler.", ""), ("linear.", "head."))
    state = {}
    for name, tensor in theirs.state_dict().items():
        for old, new in renames:
            name = name.replace(old, new)
        state[name] = tensor
    ours.load_state_dict(state, strict=True)
    tokens = torch.randn(3, 50, 64)
    return float((ours(tokens) - theirs(tokens)).abs().max())


def _norm():
    from functools import partial

    return partial(torch.nn.LayerNorm, eps=1e-6)


@torch.no_grad()
def compare(label, official, predictor, ours, ours_predictor):
    rows = []
    for frames, side in ((8, 32), (4, 32), (8, 48), (12, 64)):  # configured, fewer frames, other resolutions
        clips = torch.randn(2, 3, frames, side, side)
        rows.append((f"{label} encoder, full clip {frames}x{side}px", (ours(clips) - official(clips)).abs().max()))
    clips = torch.randn(2, 3, 8, 32, 32)
    g = torch.Generator().manual_seed(1)
    order = torch.stack([torch.randperm(64, generator=g) for _ in range(2)])
    context, targets = order[:, :24].sort(1).values, order[:, 24:].sort(1).values
    mine, theirs = ours(clips, keep=context), official(clips, masks=[context])
    rows.append((f"{label} encoder, masked context", (mine - theirs).abs().max()))
    out = predictor(theirs, [context], [targets], mask_index=1)
    rows.append((f"{label} predictor", (ours_predictor(mine, context, targets, mask_index=1) - out).abs().max()))
    return [(name, float(diff)) for name, diff in rows]


if __name__ == "__main__":
    main()

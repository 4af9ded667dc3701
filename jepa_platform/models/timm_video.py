"""Image backbones over video: a timm image model applied to every frame, tokens concatenated over time.

This is how image encoders (DINOv2, CLIP, plain ViTs) are evaluated on video tasks. Nothing is ever
downloaded: the model is built with `pretrained=False` and its weights are random or read from a file.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import torch
import torch.nn as nn
from torch import Tensor

from jepa_platform.errors import ConfigError

__all__ = ["TimmVideoBackbone", "load_image_weights"]

HEAD_PREFIXES = ("head.", "fc.", "classifier.", "head_dist.", "last_linear.")
CONTAINER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "module")


class TimmVideoBackbone(nn.Module):
    """`timm.create_model(name, pretrained=False, num_classes=0, img_size=...)` run on each frame.

    Clips [B, C, T, H, W] (or images [B, C, H, W], one frame) give tokens [B, T * h * w, D], frame by
    frame in time order: the patch tokens of a ViT (class and register tokens dropped) or the final
    feature map of a CNN. `tubelet_size` is 1 and `grid` is (frames, h, w). `keep` is not supported:
    the backbone is for frozen evaluation, not for masked pretraining.
    """

    def __init__(
        self,
        model: str,
        img_size: int = 224,
        num_frames: int = 16,
        weights: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        import timm

        kwargs = dict(model_kwargs or {})
        try:
            self.model = timm.create_model(model, pretrained=False, num_classes=0, img_size=img_size, **kwargs)
        except TypeError:  # a model without an `img_size` argument (CNNs): any input size works
            self.model = timm.create_model(model, pretrained=False, num_classes=0, **kwargs)
        except RuntimeError as e:  # timm's "Unknown model"
            raise ConfigError(f"model: {e}") from None
        self.name = model
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0))
        self.embed_dim = int(self.model.num_features)
        self.num_heads = int(getattr(self.model.blocks[0].attn, "num_heads", 1)) if hasattr(self.model, "blocks") else 1
        self.patch_size = _patch_size(self.model)
        self.tubelet_size = 1
        side = img_size // self.patch_size
        self.grid = (num_frames, side, side)
        if weights:
            load_image_weights(self.model, weights)

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        """Token grid (T, h, w) for a clip of shape [..., C, T, H, W]."""
        t, h, w = clip_shape[-3:]
        if h % self.patch_size or w % self.patch_size:
            raise ConfigError(f"frames of {h}x{w} do not divide into {self.patch_size}x{self.patch_size} patches")
        return t, h // self.patch_size, w // self.patch_size

    def frame_tokens(self, frames: Tensor, return_layers: Sequence[int] | None) -> list[Tensor]:
        """Per-frame patch tokens [B*T, h*w, D], one tensor per requested layer (the output if none)."""
        if return_layers is None:
            return [self._tokens(self.model.forward_features(frames), prefix=True)]
        if not hasattr(self.model, "forward_intermediates"):
            raise ConfigError(f"layers: timm model {self.name!r} cannot return intermediate layers")
        depth = len(self.model.blocks) if hasattr(self.model, "blocks") else None
        indices = [i % depth for i in return_layers] if depth else list(return_layers)
        out = self.model.forward_intermediates(frames, indices=indices, norm=True, intermediates_only=True)
        return [self._tokens(x, prefix=False) for x in out]

    def _tokens(self, x: Tensor, prefix: bool) -> Tensor:
        if x.ndim == 4:  # NCHW feature maps (CNNs, and ViT intermediates)
            return x.flatten(2).transpose(1, 2)
        return x[:, self.num_prefix_tokens :] if prefix else x

    def forward(
        self, clips: Tensor, keep: Tensor | None = None, return_layers: Sequence[int] | None = None
    ) -> Tensor | list[Tensor]:
        if keep is not None:
            raise ConfigError(f"backbone 'timm' ({self.name}) does not support keeping a subset of tokens")
        if clips.ndim == 4:
            clips = clips.unsqueeze(2)
        b, c, t, h, w = clips.shape
        frames = clips.transpose(1, 2).reshape(b * t, c, h, w)
        layers = [x.reshape(b, -1, x.shape[-1]) for x in self.frame_tokens(frames, return_layers)]
        return layers[0] if return_layers is None else layers


    @torch.no_grad()
    def features(self, clips: Tensor) -> Tensor:
        """Per-token features [B, T * h * w, D] of clips [B, C, T, H, W]: float RGB in [0, 1], normalised
        with the mean and std the timm model was trained with (ImageNet's for most)."""
        return self(clips)


def _patch_size(model: nn.Module) -> int:
    """Pixels per token side: the patch size of a ViT, the total stride of a CNN."""
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is not None and hasattr(patch_embed, "patch_size"):
        size = patch_embed.patch_size
        return int(size[0] if isinstance(size, Sequence) else size)
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1] if isinstance(info, list) else info.info[-1]
        return int(last["reduction"])
    raise ConfigError(f"cannot tell the patch size / stride of timm model {type(model).__name__}")


def read_weights(url: str) -> dict[str, Tensor]:
    """A state dict from a `.safetensors` or PyTorch file at a local path or fsspec URL (tensors only)."""
    try:
        with fsspec.open(url, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"weights {url}: no such file") from None
    try:
        if url.endswith(".safetensors"):
            from safetensors.torch import load

            return load(data)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling, zip and safetensors header errors all mean "not a weights file"
        raise ConfigError(f"weights {url} could not be read: {str(e).strip().splitlines()[0]}") from None
    for key in CONTAINER_KEYS:  # training checkpoints wrap the model's tensors
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise ConfigError(f"weights {url}: expected a dict of tensors, found a {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}


def load_image_weights(model: nn.Module, url: str) -> None:
    """Load a timm model's weights (original or timm layout), dropping classifier heads; strict otherwise.

    The model's own timm `checkpoint_filter_fn` adapts original layouts and resamples position embeddings
    to the configured image size, as timm does for its pretrained weights.
    """
    state = read_weights(url)
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(HEAD_PREFIXES)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    differ = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or differ:
        parts = [f"weights {url} do not fit timm model {type(model).__name__}"]
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape differs", differ)):
            if names:
                parts.append(f"{len(names)} {label}: {', '.join(names[:8])}" + (" ..." if len(names) > 8 else ""))
        raise ConfigError("; ".join(parts))
    model.load_state_dict(state, strict=True)

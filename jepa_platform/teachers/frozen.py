"""SALT's stage-2 teacher: a pretrained encoder, loaded from a checkpoint and never updated."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from jepa_platform.errors import ConfigError
from jepa_platform.teachers.latent import LatentTeacher
from jepa_platform.weights.checkpoints import fit_encoder
from jepa_platform.weights.load import encoder_source


def clip_size(encoder: nn.Module) -> dict[str, int]:
    """The `img_size` and `num_frames` a VideoViT was built for (its token grid times its patch sizes)."""
    t, h, _ = encoder.grid
    return {"img_size": h * encoder.patch_size, "num_frames": t * encoder.tubelet_size}


def check_same_tokens(teacher: nn.Module, student: nn.Module) -> None:
    """Targets are gathered with the student's mask indices, so both must cut clips into the same tokens."""
    if tuple(teacher.grid) != tuple(student.grid):
        raise ConfigError(
            f"teacher.params.backbone: patch_size {teacher.patch_size} / tubelet_size {teacher.tubelet_size} "
            f"cut clips into a {tuple(teacher.grid)} token grid, but the student's backbone "
            f"(patch_size {student.patch_size} / tubelet_size {student.tubelet_size}) gives {tuple(student.grid)}; "
            f"the teacher must see the same tokens"
        )


class FrozenTeacher(LatentTeacher):
    """Targets from a fixed pretrained encoder run on the full clip; the loss is L1, as with the EMA teacher.

    The teacher may be narrower than the student (`target_dim` is the teacher's width; the predictor
    projects to it). It is never updated, and it saves nothing: `state_dict()` is empty, because the
    checkpoint at `source` stays the source of truth and copying the teacher into every student
    checkpoint would only add its size to each. A resumed run gets its weights by loading `source`
    again (the job builds the teacher from it before resuming), so point `source` at a fixed `step_N`
    checkpoint rather than a `latest` pointer that may still move.
    """

    def __init__(self, encoder: nn.Module, source: str):
        super().__init__()
        self.encoder = encoder.requires_grad_(False)
        self.source = source
        self.target_dim = encoder.embed_dim
        self.eval()

    @classmethod
    def from_checkpoint(
        cls, backbone: nn.Module, url: str, key: str = "auto", student: nn.Module | None = None
    ) -> FrozenTeacher:
        """`backbone` with the encoder weights of `url` (any source `weights.load.encoder_source` reads); with
        `student`, also checks both cut clips into the same tokens."""
        if student is not None:
            check_same_tokens(backbone, student)
        source = encoder_source(url, key)
        fit_encoder(backbone, source.tensors, source.where)
        return cls(backbone, url)

    def after_step(self, step: int) -> None:
        """Nothing: the teacher is frozen."""

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Empty: the weights live in `source` (see the class docstring)."""
        destination = kwargs.get("destination", args[0] if args else None)
        return destination if destination is not None else {}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, assign: bool = False) -> None:
        """Accepts only the empty state `state_dict` gives."""
        if state:
            raise ConfigError(
                f"the frozen teacher saves no state, but the checkpoint being resumed holds teacher tensors "
                f"({len(state)}, e.g. {next(iter(state))}): it was written by another teacher kind"
            )

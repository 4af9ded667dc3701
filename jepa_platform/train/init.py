"""Continued pretraining (`init:`): a fresh run's student, EMA teacher and predictor take their weights from
a pretrained file before the first step; the optimiser and the schedules start fresh. A resumed run never
comes here: its own checkpoint holds everything, init included."""

from __future__ import annotations

import re

from jepa_platform.spec.model import InitSpec
from jepa_platform.teachers.ema import EmaTeacher
from jepa_platform.train.loop import Trainer
from jepa_platform.weights.checkpoints import fit_encoder
from jepa_platform.weights.load import encoder_source


def initialise(trainer: Trainer, init: InitSpec) -> list[str]:
    """Loads `init.checkpoint` into the trainer's student encoder (and its EMA teacher, and the predictor
    where the file has one); returns notes for the log. What does not fit raises a ConfigError naming
    each tensor and both shapes."""
    source = encoder_source(init.checkpoint, init.key)
    encoder = trainer.student.encoder
    fit_encoder(encoder, source.tensors, source.where)
    if isinstance(trainer.teacher, EmaTeacher):
        trainer.teacher.encoder.load_state_dict(encoder.state_dict())
    notes = [f"initialised the encoder from {source.where}"]
    if not init.predictor:
        return notes
    if not source.predictor:
        return [*notes, f"{source.where} has no predictor: the predictor starts fresh"]
    own = trainer.student.predictor.state_dict()
    tensors, dropped = without_extra_mask_tokens(source.predictor, own)
    fit_encoder(trainer.student.predictor, tensors, f"{source.where} (predictor)")
    extra = f" ({dropped} mask tokens beyond the run's {count_tokens(own)} left out)" if dropped else ""
    return [*notes, f"initialised the predictor from {source.where}{extra}"]


def count_tokens(state) -> int:
    return sum(1 for k in state if re.fullmatch(r"mask_tokens\.\d+", k))


def without_extra_mask_tokens(theirs, own) -> tuple[dict, int]:
    """The file's predictor tensors with mask tokens beyond the run's count left out (V-JEPA 2 trains 10,
    one per mask type it used; a run keeps one per masker of its own), and how many were."""
    keep = count_tokens(own)
    tensors = {k: v for k, v in theirs.items()
               if not (re.fullmatch(r"mask_tokens\.\d+", k) and int(k.split(".")[1]) >= keep)}
    return tensors, count_tokens(theirs) - count_tokens(tensors)

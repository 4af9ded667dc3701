"""How a run watches itself (`monitor:`): representation-health metrics and the collapse alarm's rules.
The single source of their defaults, shared by the library (`train.health`) and the job spec."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CollapseRules(BaseModel):
    """When a run is called collapsed. A rule fires when it holds on `patience` health checks in a row; the
    alarm then warns once (log, terminal, `jepa status`) and, with `stop`, ends the run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    rank_fraction: float = Field(
        0.2, ge=0, le=1, description="A watched RankMe below this fraction of its value at the run's first check; "
        "0 turns the rule off.")
    rank_of: list[Literal["targets", "context"]] = Field(
        ["targets"], description="Whose RankMe the rank rule watches. The targets' by default: collapse is the "
        "teacher's targets losing their spread. A small student's context features lose most of their (random-init) "
        "rank in the first steps of a healthy run (the quickstart: 33 to 4-12 in 60 steps), so `context` is opt-in.")
    std_floor: float = Field(
        1e-3, ge=0, description="The targets' mean per-channel standard deviation below this (the teacher gives "
        "(nearly) the same vector everywhere); 0 turns the rule off.")
    below_random: bool = Field(
        True, description="The k-NN accuracy on data.val (after warmup) no better than the same evaluation of the "
        "randomly initialised encoder.")
    patience: int = Field(3, ge=1, description="Consecutive checks a rule must hold before it fires.")
    stop: bool = Field(False, description="End the run (as failed, resumable) when the alarm fires.")


class MonitorConfig(BaseModel):
    """Health metrics, measured every `every` steps on (part of) the step's own batch and masks."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    every: int = Field(50, ge=0, description="Steps between health checks (and the first step); 0 turns them and "
                       "the alarm off.")
    clips: int = Field(4, ge=1, description="Clips of the batch a check encodes (forward only, no gradients).")
    tokens: int = Field(1024, ge=2, description="Tokens (evenly spaced) a rank or a cosine similarity is taken over.")
    eval_every: int = Field(100, ge=0, description="Steps between k-NN evaluations of the encoder on data.val, when "
                            "set (on rank 0; also at the last step); 0 turns them off.")
    knn_k: int = Field(20, ge=1, description="Neighbours that vote in the k-NN evaluation.")
    eval_clips: int = Field(512, ge=2, description="Clips of data.val evaluated at most (decoded once, kept in "
                            "memory).")
    collapse: CollapseRules = CollapseRules()

"""The functions Ray Train workers run: the plain-PyTorch training job, with rank, device and DDP, and the
embedding job (a probe's is `eval.run.probe_worker`)."""

from __future__ import annotations

from typing import Any


def train_worker(config: dict[str, Any]) -> None:
    """`config`: the resolved `spec`, and `events`, a Ray queue the runner follows (rank 0 puts the run's
    events on it, `Trainer.emit`)."""
    import ray.train
    import ray.train.torch
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from jepa_platform.events import encode
    from jepa_platform.spec import resolved_spec
    from jepa_platform.train.job import run_training

    spec = resolved_spec(config["spec"], source=f"job {config['spec'].get('name')}")  # checked where submitted
    spec.storage.configure()
    ctx = ray.train.get_context()
    world_size = ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(spec.resources.cpus_per_worker)))

    def wrap(model):
        if world_size == 1:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def report(row: dict[str, Any], checkpoint: str | None) -> None:
        # Metrics only. The CheckpointStore is the one checkpoint bookkeeping (a restarted worker group
        # resumes from it); registering its folders with Ray Train gave a second list that pruning
        # made stale, after which Ray refused to start the run again.
        del checkpoint
        ray.train.report(row)

    events = config.get("events")
    run_training(spec, rank=ctx.get_world_rank(), world_size=world_size, device=device, wrap=wrap, report=report,
                 on_event=(lambda event: events.put(encode(event))) if events is not None else None)


def embed_worker(config: dict[str, Any]) -> None:
    """`config`: the stage's `EmbedSettings` as a dict, `threads` per worker on CPU, and `events`, a Ray queue
    the runner follows (rank 0 puts a progress row on it after each round of shards)."""
    import ray.train
    import ray.train.torch
    import torch

    from jepa_platform.embed.run import run_embed
    from jepa_platform.events import Row, encode
    from jepa_platform.spec.embed import EmbedSettings
    from jepa_platform.spec.model import StorageSpec

    settings = EmbedSettings.model_validate(config["settings"])
    StorageSpec.model_validate(config.get("storage") or {}).configure()
    ctx = ray.train.get_context()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(config.get("threads") or 1)))
    events = config.get("events")
    run_embed(settings, rank=ctx.get_world_rank(), world_size=ctx.get_world_size(), device=device,
              on_progress=(lambda row: events.put(encode(Row(row)))) if events is not None else None)

"""The training loop: one objective (predict targets of masked tokens), any teacher, resumable.

Runs in plain PyTorch on CPU or GPU; runners add distribution (DDP through Ray Train) by passing
`rank`, `world_size` and a `wrap` for the student, a `report` callback (collective: every rank) and an
`on_event` sink for what the run says (rank 0, `jepa_platform.events`). Nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils._python_dispatch import _len_torch_dispatch_stack
from torch.utils.data import DataLoader, Dataset

from jepa_platform.data.sampler import ResumableSampler
from jepa_platform.errors import ConfigError, JepaError, TrainingError
from jepa_platform.events import Event, Notice, Row
from jepa_platform.masks.base import Masks
from jepa_platform.masks.collator import MaskCollator
from jepa_platform.models.blocks import init_transformer_weights
from jepa_platform.plugins.contracts import EpochAware, ReportsMetrics, Teacher
from jepa_platform.spec.monitor import MonitorConfig
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.teachers.ema import EmaTeacher
from jepa_platform.train.checkpoint import CheckpointStore
from jepa_platform.train.cpu_shards import CpuShards, Shard, split_batch
from jepa_platform.train.health import Alarm, CollapseAlarm, measure, write_alarm
from jepa_platform.train.knn import KnnEvaluator
from jepa_platform.train.metrics import MetricsLog
from jepa_platform.train.optim import Schedules, build_optimizer

Report = Callable[[dict[str, Any], "str | None"], None]


class JepaStudent(nn.Module):
    """Context encoder + predictor in one module, so a DDP wrapper sees a single forward per step."""

    def __init__(self, encoder: nn.Module, predictor: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor

    def forward(self, clips: torch.Tensor, masks: list[Masks]) -> list[torch.Tensor]:
        grid = self.encoder.token_grid(clips.shape)
        contexts = self.encoder(clips, keep=[m.context for m in masks])
        return [
            self.predictor(z, m.context, m.targets, mask_index=i, grid=grid)
            for i, (z, m) in enumerate(zip(contexts, masks, strict=True))
        ]


MAX_FAILED_SAVES = 3  # checkpoints that may fail in a row before the run stops (its progress would be lost)


def unwrapped(error: JepaError) -> JepaError:
    """A DataLoader worker's error as that worker raised it. torch raises it again in the main process with
    "Caught DataError in DataLoader worker process 0. Original Traceback (...)" before the message, which
    would otherwise reach the user whole."""
    text = str(error)
    if "Original Traceback" not in text:
        return error
    marker = f"{type(error).__module__}.{type(error).__qualname__}: "
    start = text.rfind(marker)
    message = text[start + len(marker):] if start >= 0 else text.strip().splitlines()[-1]
    return type(error)(message.strip())


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA (unless fp32 is asked for); plain fp32 elsewhere."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def has_random_layers(module: nn.Module) -> bool:
    """Whether a training forward draws random numbers (dropout, drop-path)."""
    return any(
        (isinstance(m, nn.Dropout) and m.p > 0) or getattr(m, "drop_prob", 0.0) > 0 for m in module.modules()
    )


@dataclasses.dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


class Trainer:
    """Trains `student` to predict `teacher`'s targets on the tokens each mask hides.

    Everything a resumed run needs to continue the same sequence is in `state_dict`: weights, teacher,
    optimiser, step, data position, mask sampler and RNG state. N steps, resume, N more steps end
    where 2N uninterrupted steps end.

    On CPU, a batch is cut into `cpu_shards` shards (default: one per intra-op thread) that run side by side,
    one core each, their gradients summed in shard order: the same step up to float rounding, faster on
    a few cores. It runs whole (intra-op threads only) on GPU, under a wrapper (DDP expects one forward per
    step), with dropout or drop-path (random draws would interleave across threads) and inside torch
    dispatch or function modes such as FLOP counters (they are per thread). Shards call the student's
    forward and the teacher's `targets` and `loss` at the same time, so these must not change state.
    """

    def __init__(
        self,
        student: JepaStudent,
        teacher: Teacher,
        collator: MaskCollator,
        dataset: Dataset,
        optim: OptimConfig,
        *,
        num_workers: int = 0,
        store: CheckpointStore | None = None,
        metrics: MetricsLog | None = None,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        wrap: Callable[[nn.Module], nn.Module] | None = None,
        report: Report | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        cpu_shards: int | None = None,
        monitor: MonitorConfig | None = None,
        job_dir: str | None = None,
        evaluator: KnnEvaluator | None = None,
    ):
        if len(dataset) < world_size * optim.batch_size:
            raise ConfigError(
                f"data: {len(dataset)} clips cannot fill one batch of {optim.batch_size} on each of "
                f"{world_size} workers; lower batch_size or workers, or add videos"
            )
        self.device = torch.device(device)
        self.student = student.to(self.device)
        self.model = wrap(self.student) if wrap else self.student
        self.teacher = teacher.to(self.device) if isinstance(teacher, nn.Module) else teacher
        self.collator, self.dataset, self.cfg = collator, dataset, optim
        self.rank, self.world_size = rank, world_size
        self.store, self.metrics, self.report, self.on_step = store, metrics, report, on_step
        self.on_event = on_event
        self._skipped_count, self._skipped_reasons = 0, []  # unreadable videos since the last logged row
        self._failed_saves, self._save_problem = 0, ""  # checkpoints that could not be written, in a row
        self.optimizer = build_optimizer([self.student], optim)
        self.schedules = Schedules(optim)
        self.progress = Progress()
        self.sampler = ResumableSampler(len(dataset), seed=optim.seed, rank=rank, world_size=world_size)
        self.num_workers = num_workers
        self.batches_per_epoch = self.sampler.per_rank // optim.batch_size
        self.flops_per_step: float | None = None  # of one global step, when the runner measured it
        self.upstream_flops = 0.0  # training FLOPs of earlier pipeline stages (a SALT teacher)
        self.cpu_shards = cpu_shards
        self._random_layers = has_random_layers(self.student)
        self._shards: CpuShards | None = None
        self.monitor = monitor if monitor is not None and monitor.every else None
        self.alarm = CollapseAlarm(monitor.collapse, optim.warmup_steps) if self.monitor else None
        self.job_dir = job_dir  # where the collapse alarm is recorded
        self.evaluator = evaluator  # rank 0's k-NN evaluation on data.val; None elsewhere
        self.eval_every = monitor.eval_every if monitor is not None else 0
        self.knn_random: float | None = None  # the same evaluation of a randomly initialised encoder
        self._masks: list[Masks] = []  # the last step's, for its health check

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "progress": dataclasses.asdict(self.progress),
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "masks": self.collator.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "optim_config": self.cfg.model_dump(mode="json"),
        }
        if self.alarm:
            state["health"] = self.alarm.state_dict()
        if self.knn_random is not None:
            state["knn_random"] = self.knn_random
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.progress = Progress(**state["progress"])
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, chosen in zip(self.optimizer.param_groups, kernels, strict=True):
            group.update(chosen)  # this machine's kernel choice, not the one of the machine that saved
        self.collator.load_state_dict(state["masks"])
        if self.alarm and "health" in state:
            self.alarm.load_state_dict(state["health"])
        self.knn_random = state.get("knn_random", self.knn_random)
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def resume(self) -> int | None:
        """Load the newest checkpoint of the store, if any; returns the step resumed from.

        Rank 0 first clears what an interrupted save left behind; `latest()` never names such a folder. A
        checkpoint that cannot be read gives way to the one before it; when none can, this raises.
        """
        if self.store and self.rank == 0:
            self.store.clean()
        found = self.store.load_newest_readable() if self.store else None
        if found is None:
            return None
        url, state = found
        try:
            self.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, TypeError) as e:  # tensors of another model or optimiser
            raise TrainingError(
                f"checkpoint {url} does not fit this job's model: {str(e).strip()}\n"
                f"It was written by a different run; submit under a new name to start afresh."
            ) from None
        return self.progress.step

    def save(self, final: bool = False) -> str | None:
        """A checkpoint of this step (rank 0). One that cannot be written (a full disk, an object store that
        stopped answering) is said, as a warning and in the next row, and tried again at the next checkpoint;
        the last good one stays. The run fails when the final checkpoint, or `MAX_FAILED_SAVES` in a row, fail."""
        if self.store is None or self.rank != 0:
            return None
        step = self.progress.step
        try:
            url = self.store.save(step, self.state_dict())
            if self.metrics:
                self.metrics.flush()
        except Exception as e:  # noqa: BLE001 - whatever the filesystem raises; said, then retried
            self._failed_saves += 1
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            if final or self._failed_saves >= MAX_FAILED_SAVES:
                raise TrainingError(f"the checkpoint of step {step} could not be written ({reason}); "
                                    f"{self._failed_saves} failed in a row") from None
            self._save_problem = f"the checkpoint of step {step} could not be written ({reason}); kept the last " \
                                 f"good one, trying again at the next checkpoint"
            self.emit(Notice(self._save_problem))
            return None
        self._failed_saves = 0
        return url

    # -- steps -----------------------------------------------------------------------------------
    def train_step(self, clips: torch.Tensor) -> dict[str, float]:
        """One optimiser step on a batch of clips [B, C, T, H, W]: the teacher's targets and the student's
        predictions give each mask's loss (`mask_losses`, on the whole batch or on CPU shards side by
        side), then the optimiser steps and the teacher updates. Returns the step's metrics."""
        clips = clips.to(self.device, non_blocking=True)
        masks = self.masks_for(clips)
        self._masks = masks
        lr, wd = self.schedules.apply(self.optimizer, self.progress.step)
        self.model.train()
        losses, loss, backward = self.losses(clips, masks)
        grad_norm = self.optimiser_step(loss, backward)
        self.progress.step += 1
        self.teacher.after_step(self.progress.step)
        row = {"loss": loss.item(), "lr": lr, "wd": wd, "grad_norm": float(grad_norm)}
        row.update({f"loss_mask{i}": v.item() for i, v in enumerate(losses)})
        return row

    def masks_for(self, clips: torch.Tensor) -> list[Masks]:
        """This step's masks (one set per masker) for the batch's token grid, on the device."""
        grid = self.student.encoder.token_grid(clips.shape)
        return [m.to(self.device, non_blocking=True) for m in self.collator(clips.shape[0], grid)]

    def mask_losses(self, shard: Shard) -> list[torch.Tensor]:
        """Each mask's loss on a batch (or a shard of it): the teacher's targets against the student's
        predictions of the tokens the mask hides."""
        clips, masks = shard
        with autocast_for(self.device, self.cfg.precision):
            targets = self.teacher.targets(clips, masks)
            predictions = self.model(clips, masks)
            return [self.teacher.loss(p.float(), t.float()) for p, t in zip(predictions, targets, strict=True)]

    def losses(self, clips: torch.Tensor, masks: list[Masks]
               ) -> tuple[list[torch.Tensor], torch.Tensor, Callable[[], None]]:
        """(each mask's loss, the loss, its backward), from the whole batch or from CPU shards."""
        shards = self.shard_count(clips.shape[0])
        if shards == 1:
            losses = self.mask_losses((clips, masks))
            loss = torch.stack(losses).mean()
            return losses, loss, loss.backward
        if self._shards is None or self._shards.count != shards:
            self._shards = CpuShards(shards)
        params = [p for p in self.student.parameters() if p.requires_grad]
        return self._shards.losses(self.mask_losses, split_batch(clips, masks, shards), params)

    def optimiser_step(self, loss: torch.Tensor, backward: Callable[[], None]) -> torch.Tensor:
        """Gradients (after checking the loss is finite on every rank), clipping, the update; returns the
        gradient norm."""
        self._check_finite(loss)
        self.optimizer.zero_grad(set_to_none=True)
        backward()
        params = [p for p in self.student.parameters() if p.grad is not None]
        if self.cfg.clip_grad is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        self.optimizer.step()
        return grad_norm

    def shard_count(self, batch: int) -> int:
        """Shards this step's batch runs as (1: whole); see the class docstring for when."""
        if (
            self.device.type != "cpu"
            or self.model is not self.student
            or self._random_layers
            or _len_torch_dispatch_stack() > 0
            or torch._C._len_torch_function_stack() > 0
        ):
            return 1
        wanted = torch.get_num_threads() if self.cpu_shards is None else self.cpu_shards
        return max(1, min(wanted, batch))

    def _check_finite(self, loss: torch.Tensor) -> None:
        bad = (~torch.isfinite(loss.detach())).float()
        if self.world_size > 1 and dist.is_initialized():
            dist.all_reduce(bad)  # every rank stops together, none hangs in the next collective
        if bad.item() > 0:
            last = self.store.latest() if self.store else None
            raise TrainingError(
                f"loss is not finite at step {self.progress.step + 1}; stopping. "
                + (f"Last good checkpoint: {last}" if last else "No checkpoint was written yet.")
            )

    def batches(self):
        """Batches from the current data position onwards, epoch after epoch."""
        bs = self.cfg.batch_size
        while True:
            self.sampler.set_epoch(self.progress.epoch, start=self.progress.batch_in_epoch * bs)
            if isinstance(self.dataset, EpochAware):
                self.dataset.set_epoch(self.progress.epoch)
            loader = DataLoader(
                self.dataset,
                batch_size=bs,
                sampler=self.sampler,
                num_workers=self.num_workers,
                drop_last=True,
                pin_memory=self.device.type == "cuda",
            )
            try:
                for batch in loader:
                    self.progress.batch_in_epoch += 1
                    yield batch
            except JepaError as e:  # raised in a loader process, and wrapped in its traceback by torch
                raise unwrapped(e) from None
            self.progress.epoch += 1
            self.progress.batch_in_epoch = 0

    def note_skipped(self, batch: dict[str, Any]) -> None:
        """Counts this worker's unreadable videos in the batch (the dataset skipped them, each replaced by
        another video) and keeps why, for the next logged row."""
        if "bad_reads" in batch:
            self._skipped_count += int(torch.as_tensor(batch["bad_reads"]).sum())
        self._skipped_reasons += [r for text in batch.get("skipped") or [] for r in str(text).splitlines() if r]

    def report_faults(self, row: dict[str, Any]) -> None:
        """What went wrong since the last logged row, in this row: `skipped_videos` (reads that failed),
        `skipped` (each newly failed video with why; also a warning each for the log), `checkpoint_failed`."""
        if self._save_problem:
            row["checkpoint_failed"], self._save_problem = self._save_problem, ""
        row["skipped_videos"] = self._skipped_count
        if self._skipped_reasons:
            row["skipped"] = "; ".join(self._skipped_reasons)
            for reason in self._skipped_reasons:
                self.emit(Notice(f"skipped an unreadable video (another took its place): {reason}"))
        self._skipped_count, self._skipped_reasons = 0, []

    def emit(self, event: Event) -> None:
        """What the run says, from rank 0 only: a metrics row goes to metrics.jsonl and its loggers, and
        every event to the runner's sink (`on_event`), which carries it to the follower."""
        if self.rank != 0:
            return
        if isinstance(event, Row) and self.metrics:
            self.metrics.log(event.values)
        if self.on_event:
            self.on_event(event)

    def health(self, clips: torch.Tensor) -> tuple[dict[str, Any], Alarm | None]:
        """This step's health metrics, measured by every rank on its own batch (no collective: the ranks agree
        on what to do in `agreed`), and the alarm, if a collapse rule has now fired."""
        values = measure(self.student, self.teacher, clips.to(self.device), self._masks, self.monitor)
        alarm = self.alarm.check(self.progress.step, values)
        return values, alarm

    def raise_alarm(self, alarm: Alarm, row: dict[str, Any]) -> None:
        """Warns (the log, the terminal), records the alarm for `jepa status`, and with `stop` ends the run
        after a checkpoint, so that it can be resumed once the cause is fixed."""
        row["collapse"] = alarm.message()
        if self.rank == 0:
            self.emit(Notice(alarm.message()))
            if self.job_dir:
                write_alarm(self.job_dir, alarm)
        if self.monitor.collapse.stop:
            self.emit(Row(row))
            checkpoint = self.save()
            raise TrainingError(
                f"stopped (monitor.collapse.stop): {alarm.message()}"
                + (f"; checkpoint {checkpoint} kept" if checkpoint else "")
            )

    def step_row(self, metrics: dict[str, float], clips_seen: int, elapsed: float, data_wait: float,
                 step_seconds: float) -> dict[str, Any]:
        """The metrics row of the step just taken: its losses, throughput, system figures and FLOPs."""
        step = self.progress.step
        row = {"step": step, "epoch": self.progress.epoch, "workers": self.world_size, **metrics}
        if isinstance(self.teacher, ReportsMetrics):
            row.update(self.teacher.metrics(step))
        row["clips_per_s"] = clips_seen / elapsed if elapsed > 0 else math.nan
        row["data_wait_frac"] = data_wait / elapsed if elapsed > 0 else 0.0
        row["samples_seen"] = step * self.cfg.batch_size * self.world_size
        row["step_time"] = step_seconds
        if self.device.type == "cuda":
            row["gpu_peak_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        if self.flops_per_step is not None:
            row["flops"] = step * self.flops_per_step
            row["pipeline_flops"] = self.upstream_flops + row["flops"]
            if step_seconds > 0:
                row["flop_rate"] = self.flops_per_step / step_seconds  # achieved, the whole step on all workers
        return row

    def check_due(self) -> bool:
        """Whether this step is a health check: the first step (the alarm's baseline), then every `monitor.every`."""
        step = self.progress.step
        return self.monitor is not None and (step == 1 or step % self.monitor.every == 0)

    def watch(self, row: dict[str, Any], clips: torch.Tensor) -> None:
        """The health metrics into `row`, and the alarm raised if a collapse rule fired."""
        step = self.progress.step
        values, alarm = self.health(clips)
        row.update(values)
        if self.agreed(alarm is not None) and alarm is None:  # rank 0 fired on its batch: every rank acts alike
            alarm = Alarm(step, step, "rank 0", "a collapse rule fired on rank 0 (see its log)")
        if alarm:
            self.raise_alarm(alarm, row)

    def eval_encoder(self) -> nn.Module:
        """The encoder a run is judged by: an EMA teacher's (V-JEPA's target encoder), else the student's."""
        return self.teacher.encoder if isinstance(self.teacher, EmaTeacher) else self.student.encoder

    def random_baseline(self) -> float:
        """The k-NN accuracy of a randomly initialised encoder of this architecture: the encoder itself before
        the first step, else a re-initialised copy (drawn from its own generator: training's RNG is untouched)."""
        encoder = self.eval_encoder()
        if self.progress.step > 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed)
                encoder = copy.deepcopy(encoder)
                for module in encoder.modules():
                    init_transformer_weights(module)
        return self.evaluator.evaluate(encoder, self.device)

    def evaluate(self, row: dict[str, Any]) -> None:
        """The k-NN evaluation on rank 0 into `row`; the k-NN collapse rule is checked with it."""
        alarm = None
        if self.evaluator is not None:
            started = time.perf_counter()
            if self.knn_random is None:
                self.knn_random = self.random_baseline()
            row["knn_top1"] = self.evaluator.evaluate(self.eval_encoder(), self.device)
            row["knn_top1_random"] = self.knn_random
            row["eval_seconds"] = time.perf_counter() - started
            if self.alarm:
                alarm = self.alarm.check(self.progress.step, {k: row[k] for k in ("knn_top1", "knn_top1_random")})
        if self.alarm and self.agreed(alarm is not None):
            self.raise_alarm(alarm or Alarm(self.progress.step, self.progress.step, "rank 0",
                                            "a collapse rule fired on rank 0 (see its log)"), row)

    def agreed(self, fired: bool) -> bool:
        """Rank 0's verdict, on every rank, so that a stop ends all workers together and none hangs."""
        if self.world_size > 1 and dist.is_initialized():
            flag = torch.tensor([float(fired)], device=self.device)
            dist.broadcast(flag, 0)
            return bool(flag.item())
        return fired

    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train up to step `until` (default: the configured steps); returns the last logged row."""
        until = min(until or self.cfg.steps, self.cfg.steps)
        row: dict[str, Any] = {}
        if self.progress.step >= until:
            return row
        t0, clips_seen, data_wait = time.perf_counter(), 0, 0.0
        batches = self.batches()
        while True:
            waited = time.perf_counter()
            batch = next(batches)
            started = time.perf_counter()
            data_wait += started - waited
            metrics = self.train_step(batch["clip"])
            step_seconds = time.perf_counter() - started
            clips_seen += batch["clip"].shape[0] * self.world_size
            self.note_skipped(batch)
            row = self.step_row(metrics, clips_seen, time.perf_counter() - t0, data_wait, step_seconds)
            step = self.progress.step
            done = step >= until
            checked = self.check_due()
            if checked:
                self.watch(row, batch["clip"])
            evaluated = bool(self.eval_every) and (step % self.eval_every == 0 or done)
            if evaluated:
                self.evaluate(row)
            if self.on_step:
                self.on_step(row)
            log_now = step % self.cfg.log_every == 0 or done or checked or evaluated  # their figures are logged
            if log_now:
                self.report_faults(row)
                self.emit(Row(row))
            save_now = step % self.cfg.checkpoint_every == 0 or done
            checkpoint = self.save(final=done) if save_now else None
            if (log_now or save_now) and self.report:  # the same steps on every rank: reports are collective
                self.report(row, checkpoint)
            if done:
                break
        if self.metrics and self.rank == 0:
            self.metrics.flush()
        return row

"""Runner `local`: Ray started in this process, the job run by Ray Train's TorchTrainer.

The laptop path is the cluster path: the same TorchTrainer, worker function and storage layout, only
with an embedded Ray instead of a remote one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from jepa_platform.embed.shards import done_shards, read_index
from jepa_platform.errors import ConfigError, JepaError, TrainingError
from jepa_platform.events import EventReader, Row
from jepa_platform.layout import RAY_TRAIN_DIR
from jepa_platform.runners.host import HostJobs
from jepa_platform.runners.stages import RunResult, latest_step, probe_results, probe_settings
from jepa_platform.spec import JobSpec
from jepa_platform.train.metrics import read_metrics

FIRST_PHASE = "building the model"  # what a training worker group says first (`train.job.run_training`)
RESTARTED = "a worker failed and Ray Train restarted the workers"


def follow_events(queue: Any, on_row: Callable[[dict[str, Any]], None], stop: threading.Event) -> None:
    """Reads the run's events (encoded lines, put on a Ray queue by the training loop's rank 0) and hands
    each metrics row to `on_row`; once `stop` is set, returns when the queue is empty."""
    from ray.util.queue import Empty

    reader = EventReader()
    starts = 0
    while True:
        try:
            line = queue.get(timeout=0.5)
        except Empty:
            if stop.is_set():
                return
            continue
        event = reader.feed(line)
        if not isinstance(event, Row):
            continue
        if str(event.values.get("phase", "")).startswith(FIRST_PHASE):
            starts += 1
            if starts > 1:  # the loop began again: Ray Train restarted the worker group after a failure
                on_row({"phase": f"{RESTARTED} (restart {starts - 1}); resuming from the last checkpoint",
                        "restarts": starts - 1})
        on_row(event.values)


class LocalRunner(HostJobs):
    """Runs a job to completion on this machine through an embedded Ray; its record-level side (in this
    process, or detached in the background) is `HostJobs`."""

    def submit(self, spec: JobSpec, on_row: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
        """Runs one stage (training, or a probe) on Ray Train's workers, to its end."""
        resumed_from, _ = latest_step(spec)
        if on_row:
            on_row({"phase": "starting Ray"})
        joined = start_ray()
        check_resources(spec.resources, joined)
        worker, config = stage_worker(spec)
        stop, watcher = threading.Event(), None
        if on_row and spec.probe is None:  # the job's events come back on a queue (an actor of no CPU)
            from ray.util.queue import Queue

            config["events"] = Queue(actor_options={"num_cpus": 0})
            watcher = threading.Thread(target=follow_events, args=(config["events"], on_row, stop), daemon=True)
            watcher.start()
        error, interrupted = None, False
        sigint = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
        try:
            torch_trainer(spec, worker, config).fit()
        except Exception as e:  # Ray wraps the worker's exception; keep its own message
            error = worker_error_message(e)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, which Ray Train's own handler turns into an exit
            interrupted = True
        finally:
            if sigint is not None:  # Ray Train's Ctrl-C handler outlives fit(), aborting a controller that is gone
                signal.signal(signal.SIGINT, sigint)
            stop.set()
            if watcher:
                watcher.join()
                config["events"].shutdown()
        if interrupted:
            raise KeyboardInterrupt
        return stage_result(spec, error, resumed_from)


def start_ray() -> bool:
    """Joins the Ray of $RAY_ADDRESS (a cluster job's driver), else starts one in this process; returns
    whether it joined a cluster."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    joined = bool(os.environ.get("RAY_ADDRESS"))
    if not ray.is_initialized():
        # Token auth stays on; its notice is noise on a private, in-process cluster.
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
        ray.init(
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=True,
            runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}},
        )
    return joined


def missing_resources(resources: Any) -> list[str]:
    """What the job's workers need that this Ray does not have: in total, or on any one node."""
    import ray

    need = {"CPU": resources.cpus_per_worker, "GPU": resources.gpus_per_worker}
    if resources.accelerator_type:
        need[f"accelerator_type:{resources.accelerator_type}"] = 0.001
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    missing = []
    for name, each in need.items():
        if each <= 0:
            continue
        if total.get(name, 0) < each * resources.workers:
            missing.append(f"{resources.workers} workers x {each:g} {name} need {each * resources.workers:g}, "
                           f"there are {total.get(name, 0):g}")
        elif not any(node.get(name, 0) >= each for node in nodes):
            missing.append(f"one worker needs {each:g} {name} on one node, the largest node has "
                           f"{max((node.get(name, 0) for node in nodes), default=0):g}")
    return missing


def check_resources(resources: Any, joined: bool) -> None:
    """Refuses workers that could never be scheduled (Ray Train would wait for them for ever): at once on
    this machine's own Ray; on a cluster after `schedule_timeout_s`, which gives an autoscaler time."""
    deadline = time.monotonic() + resources.schedule_timeout_s
    while missing := missing_resources(resources):
        if not joined:
            raise ConfigError("resources: " + "; ".join(missing) + " on this machine: lower resources.workers or "
                              "resources.cpus_per_worker / gpus_per_worker, or run on a cluster (--target ray, k8s)")
        if time.monotonic() > deadline:
            raise TrainingError(f"resources: after {resources.schedule_timeout_s:g} s the cluster still lacks what the "
                                "workers need: " + "; ".join(missing))
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


def stage_worker(spec: JobSpec) -> tuple[Callable[[dict[str, Any]], None], dict[str, Any]]:
    """The function each Ray Train worker runs for the stage, and its config."""
    if spec.probe is not None:  # a frozen-evaluation stage
        from jepa_platform.eval.run import probe_worker

        return probe_worker, {"settings": probe_settings(spec).model_dump(mode="json"),
                              "storage": spec.storage.model_dump(mode="json")}
    from jepa_platform.runners.worker import embed_worker, train_worker

    if spec.embed is not None:
        return embed_worker, {"settings": spec.embed.model_dump(mode="json"),
                              "threads": spec.resources.cpus_per_worker,
                              "storage": spec.storage.model_dump(mode="json")}

    return train_worker, {"spec": spec.resolved()}


def torch_trainer(spec: JobSpec, worker: Callable[[dict[str, Any]], None], config: dict[str, Any]) -> Any:
    """Ray Train's TorchTrainer for the stage: its workers, their resources, and restarts on failure."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = spec.resources.gpus_per_worker > 0
    resources = {"CPU": spec.resources.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = spec.resources.gpus_per_worker
    return TorchTrainer(
        worker,
        train_loop_config=config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=spec.resources.workers,
            use_gpu=use_gpu,
            resources_per_worker=resources,
            accelerator_type=spec.resources.accelerator_type,
        ),
        run_config=RunConfig(
            # Ray Train's own files live in a folder of their own inside the job; no checkpoint is
            # registered with it (see CheckpointStore), and a snapshot that an older version left at
            # the job root, listing pruned checkpoints, is never read again.
            name=RAY_TRAIN_DIR,
            storage_path=spec.job_dir,
            failure_config=FailureConfig(max_failures=spec.resources.max_failures),
        ),
    )


def stage_result(spec: JobSpec, error: str | None, resumed_from: int | None) -> RunResult:
    """What a finished stage left: a probe's best results, an embedding's counts, or training's last metrics
    row and checkpoint. A store that cannot be read now (it failed mid-run) makes the stage FAILED, saying so
    in one line beside the workers' own error."""
    try:
        return read_result(spec, error, resumed_from)
    except Exception as e:  # noqa: BLE001 - any filesystem's failure
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        unread = f"its outputs in {spec.job_dir} cannot be read ({reason})"
        return RunResult(spec.name, spec.job_dir, "FAILED", 0, {}, None, resumed_from,
                         f"{error}; {unread}" if error else unread)


def read_result(spec: JobSpec, error: str | None, resumed_from: int | None) -> RunResult:
    if spec.probe is not None:
        results = probe_results(spec)
        best = results["results"][results["best"]] if results else {}
        return RunResult(spec.name, spec.job_dir, "FAILED" if error or not results else "SUCCEEDED",
                         spec.probe.epochs if results else 0, {**best, **(results or {}).get("groups", {})},
                         None, None, error or (None if results else "the probe wrote no results"))
    if spec.embed is not None:
        index = read_index(spec.embed.output) or {}
        done = bool(index.get("complete"))
        return RunResult(spec.name, spec.job_dir, "FAILED" if error or not done else "SUCCEEDED",
                         len(done_shards(spec.embed.output)),
                         {k: index[k] for k in ("videos", "written", "skipped", "shards", "dim") if k in index},
                         None, None, error or (None if done else "the embedding did not finish"))
    rows = read_metrics(spec.layout.metrics)
    step, ckpt = latest_step(spec)
    return RunResult(
        spec.name, spec.job_dir, "FAILED" if error else "SUCCEEDED", rows[-1]["step"] if rows else 0,
        rows[-1] if rows else {}, ckpt, resumed_from, error,
    )


def worker_error_message(exc: BaseException) -> str:
    """The innermost user-facing error of a Ray Train failure, whole: a multi-line message (a state dict's
    "Missing key(s)" and "size mismatch" lines) is never cut to its first or last line."""
    visited: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if any(e is v for v in visited):
            continue
        visited.append(e)
        if isinstance(e, JepaError):
            return str(e)
        for attr in ("cause", "__cause__", "__context__"):
            inner = getattr(e, attr, None)
            if isinstance(inner, BaseException):
                stack.append(inner)
        stack.extend((getattr(e, "worker_failures", None) or {}).values())  # Ray Train: each worker's error
    text = str(exc).strip().splitlines()
    for marker in ("TrainingError", "DataError", "ConfigError"):
        for i, line in enumerate(text):
            if marker in line:  # a message that crossed processes as text: from its first line to the end
                return "\n".join([line.split(":", 1)[-1].strip(), *text[i + 1:]]).strip()
    ours = [e for e in visited if not type(e).__module__.startswith("ray")]
    if ours:  # the worker's own exception, whole
        return f"{type(ours[-1]).__name__}: {str(ours[-1]).strip()}"
    return "\n".join(text) or type(exc).__name__


__all__ = ["LocalRunner", "RunResult", "TrainingError", "latest_step", "probe_results", "probe_settings"]

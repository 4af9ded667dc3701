"""What a frozen evaluation found, and the files it leaves in its output folder.

Output folder (any fsspec URL): `metrics.jsonl` (one row per epoch per probe), `results.json` (the
`ProbeReport`: top-1/top-5 of every probe, the best one, its per-class and per-group accuracy),
`confusion.csv` and `confusion.png` (best probe, rows = true class), `probe.pt` (best probe's weights).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from jepa_platform.data.synthetic import CLASSES as SYNTHETIC_CLASSES
from jepa_platform.errors import ConfigError
from jepa_platform.eval.probing import SplitMetrics
from jepa_platform.storage import join, write_bytes_atomic

__all__ = ["ProbeReport", "ProbeResult", "class_groups", "make_report", "write_outputs"]

METRICS, RESULTS, CONFUSION_CSV, CONFUSION_PNG, WEIGHTS = (
    "metrics.jsonl", "results.json", "confusion.csv", "confusion.png", "probe.pt",
)
SYNTHETIC_GROUPS = {
    "motion": [c for c in SYNTHETIC_CLASSES if c.startswith("move_")],
    "appearance": [c for c in SYNTHETIC_CLASSES if c.startswith("static_")],
}


@dataclasses.dataclass
class ProbeResult:
    """Validation of one probe of the grid after the last epoch."""

    lr: float
    wd: float
    top1: float
    top5: float
    loss: float
    train_loss: float
    best_top1: float = float("nan")  # its best validation top-1 over the evaluated epochs (what V-JEPA 2 reports)
    best_epoch: int = 0  # the epoch of `best_top1` (the first of equals)

    @property
    def name(self) -> str:
        return f"lr={self.lr:g} wd={self.wd:g}"


@dataclasses.dataclass
class ProbeReport:
    results: list[ProbeResult]
    best: int  # index into results: highest validation top-1 (the first of equals)
    label_names: list[str]
    confusion: list[list[int]]  # best probe, rows = true class, columns = predicted
    per_class: list[float]  # best probe's accuracy per true class (nan when a class has no validation items)
    groups: dict[str, float]  # best probe's accuracy over the validation items of each class group
    val_items: int
    seconds: float
    output: str | None = None

    @property
    def best_result(self) -> ProbeResult:
        return self.results[self.best]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"best_probe": self.best_result.name}


def class_groups(names: Sequence[str], groups: dict[str, list[str]] | None) -> dict[str, list[int]]:
    """Labels of each named group; by default motion/appearance when the classes are the synthetic set's."""
    if groups is None:
        groups = SYNTHETIC_GROUPS if set(SYNTHETIC_CLASSES) <= set(names) else {}
    index = {name: i for i, name in enumerate(names)}
    out = {}
    for group, members in groups.items():
        unknown = [m for m in members if m not in index]
        if unknown:
            raise ConfigError(f"class_groups.{group}: {unknown} are not class names (known: {list(names)})")
        out[group] = [index[m] for m in members]
    return out


def make_report(
    metrics: SplitMetrics,
    hparams: list[tuple[float, float]],
    train_losses: list[float],
    names: list[str],
    groups: dict[str, list[int]],
    seconds: float,
    output: str | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> ProbeReport:
    """The report of the last validation; each probe's result also states its best epoch (`rows`, the
    per-epoch metrics rows, when given)."""
    top1, top5, loss = metrics.top1(), metrics.top5(), metrics.loss()
    results = [ProbeResult(lr, wd, top1[i], top5[i], loss[i], train_losses[i], *best_epoch(rows, i, top1[i]))
               for i, (lr, wd) in enumerate(hparams)]
    best = max(range(len(results)), key=lambda i: (results[i].top1, -i))
    confusion = metrics.confusion[best].cpu()
    per_class = (confusion.diagonal().double() / confusion.sum(1).double()).tolist()
    group_acc = {g: _accuracy(confusion, labels) for g, labels in groups.items()}
    return ProbeReport(results, best, names, confusion.tolist(), per_class, group_acc, metrics.count, seconds, output)


def best_epoch(rows: list[dict[str, Any]] | None, probe: int, last_top1: float) -> tuple[float, int]:
    """(best validation top-1, its epoch) of one probe over its evaluated epochs."""
    evaluated = [(r["val_top1"], -r["epoch"]) for r in rows or [] if r["probe"] == probe and "val_top1" in r]
    if not evaluated:
        return last_top1, 0
    top1, epoch = max(evaluated)
    return top1, -epoch


def _accuracy(confusion: Tensor, labels: list[int]) -> float:
    rows = confusion[labels]
    total = int(rows.sum())
    return float(rows[:, labels].diagonal().sum()) / total if total else float("nan")


def write_metrics(output: str, rows: list[dict[str, Any]]) -> None:
    """The whole metrics.jsonl, rewritten (atomically) so object stores get it too."""
    write_bytes_atomic(join(output, METRICS), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())


def write_outputs(report: ProbeReport, output: str, probe_state: dict[str, Any]) -> None:
    """results.json, confusion.csv/.png and probe.pt (the best probe and what it needs to be rebuilt)."""
    write_bytes_atomic(join(output, RESULTS), json.dumps(report.to_dict(), indent=1).encode())
    write_bytes_atomic(join(output, CONFUSION_CSV), confusion_csv(report.confusion, report.label_names).encode())
    write_bytes_atomic(join(output, CONFUSION_PNG), confusion_png(report.confusion, report.label_names))
    buf = io.BytesIO()
    torch.save(probe_state, buf)
    write_bytes_atomic(join(output, WEIGHTS), buf.getvalue())


def confusion_csv(confusion: list[list[int]], names: list[str]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["true \\ predicted", *names])
    for name, row in zip(names, confusion, strict=True):
        writer.writerow([name, *row])
    return text.getvalue()


def confusion_png(confusion: list[list[int]], names: list[str]) -> bytes:
    """The confusion matrix as a PNG: counts in the cells, colour = share of the true class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.tensor(confusion, dtype=torch.float64)
    share = counts / counts.sum(1, keepdim=True).clamp_min(1)
    n = len(names)
    side = min(2.5 + 0.45 * n, 30)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    colour = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()

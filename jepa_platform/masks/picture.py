"""The picture behind ``jepa masks``: what each masker hides, frame by frame, on a training-sized batch.

Masks are drawn exactly as the first training step draws them (a ``MaskCollator`` with the run's
seed, one batch of ``batch_size``), so the tokens that truncation to the batch minimum drops show
up too. Rendering uses matplotlib's Agg canvas directly: no display, no pyplot global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch

from jepa_platform.masks import _checks
from jepa_platform.masks.base import Masker, Masks
from jepa_platform.masks.collator import MaskCollator

# Token categories as drawn; targets win where a (plugin) masker puts a token in both sets.
CONTEXT, TARGET, DROPPED = 0, 1, 2
COLOURS = ("#3b75af", "#f28e2b", "#c8c8c8")
LABELS = ("context (student sees)", "targets (predicted)", "dropped by truncation")
CELL_INCHES = 1.1  # one H'xW' frame panel; shrunk so that a row of many frames stays ~12 inches wide
MAX_ROW_INCHES = 12.0
LABEL_INCHES = 0.8  # the five-line per-sample label, so flat frames do not make labels collide


@dataclass
class MaskStats:
    """One masker's measured ratios, each a fraction of the T'*H'*W' tokens, averaged over the batch."""

    name: str
    context_ratio: float
    target_ratio: float
    dropped_ratio: float


def mask_picture(
    maskers: Sequence[tuple[str, Masker]],
    grid: tuple[int, int, int],
    out: str | Path,
    samples: int = 3,
    batch_size: int = 8,
    seed: int = 0,
) -> list[MaskStats]:
    """Draws one batch per masker as training's first step would, writes a PNG of its first ``samples``
    samples (all of them if the batch is smaller; one row per sample, one H'xW' panel per frame) to
    ``out``, and returns each masker's ratios over the whole batch."""
    grid = _checks.check_grid(grid)
    batch_size = _checks.positive_int("batch_size", batch_size)
    samples = min(_checks.positive_int("samples", samples), batch_size)
    names = [name for name, _ in maskers]
    collator = MaskCollator([masker for _, masker in maskers], seed=seed)
    drawn = [masks.to("cpu") for masks in collator(batch_size, grid)]
    categories = [_categories(masks, grid) for masks in drawn]
    masked = [masks.masked.float().mean(dim=1).numpy() for masks in drawn]
    stats = [_stats(name, cats) for name, cats in zip(names, categories, strict=True)]
    fig = _figure(names, categories, masked, stats, grid, samples, f"batch {batch_size}, seed {seed}")
    fig.savefig(Path(out), format="png", dpi=100)
    return stats


def _categories(masks: Masks, grid: tuple[int, int, int]) -> np.ndarray:
    """[B, T', H', W'] int: each token's category (CONTEXT, TARGET or DROPPED)."""
    cats = torch.full(masks.masked.shape, DROPPED, dtype=torch.int8)
    cats.scatter_(1, masks.context, CONTEXT)
    cats.scatter_(1, masks.targets, TARGET)
    return cats.view(-1, *grid).numpy()


def _ratios(cats: np.ndarray) -> np.ndarray:
    """[..., 3]: the fraction of tokens in each category, per sample (over all but the first axis)."""
    flat = cats.reshape(cats.shape[0], -1)
    return np.stack([(flat == c).mean(axis=1) for c in (CONTEXT, TARGET, DROPPED)], axis=-1)


def _stats(name: str, cats: np.ndarray) -> MaskStats:
    context, target, dropped = _ratios(cats).mean(axis=0).tolist()
    return MaskStats(name, context_ratio=context, target_ratio=target, dropped_ratio=dropped)


def _figure(
    names: list[str], categories: list[np.ndarray], masked: list[np.ndarray], stats: list[MaskStats],
    grid: tuple[int, int, int], samples: int, drawn_as: str,
) -> Figure:
    """``masked``: per masker, each sample's masked fraction before truncation."""
    frames, height, width = grid
    cell = min(CELL_INCHES, MAX_ROW_INCHES / frames)
    panel_h = cell * height / width
    row_h = max(panel_h, LABEL_INCHES) + 0.15
    group_h = samples * row_h + 0.45  # + the masker's header
    left = 1.7  # per-sample labels
    fig = Figure(figsize=(left + frames * cell + 0.2, len(names) * group_h + 1.1), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(
        f"Masks on the {frames}x{height}x{width} token grid (T' x H' x W'; {drawn_as}): "
        "one row per sample, one panel per frame t'\n"
        "each row: share of tokens masked (before truncation), then kept as targets, context, dropped",
        fontsize=10,
    )
    fig.legend(
        handles=[Patch(color=c, label=label) for c, label in zip(COLOURS, LABELS, strict=True)],
        loc="outside lower center", ncols=3, fontsize=9, frameon=False,
    )
    groups = fig.subfigures(len(names), 1, squeeze=False)[:, 0]
    for group, name, cats, before, st in zip(groups, names, categories, masked, stats, strict=True):
        group.suptitle(
            f"{name}\nmean over the batch: targets {st.target_ratio:.1%}, context {st.context_ratio:.1%}, "
            f"dropped {st.dropped_ratio:.1%}",
            fontsize=9, x=0.01, ha="left", linespacing=1.4,
        )
        _draw_samples(group, cats[:samples], before[:samples])
    return fig


def _draw_samples(group: SubFigure, cats: np.ndarray, before: np.ndarray) -> None:
    """One row per sample of ``cats`` [S, T', H', W'], labelled with its ratios; frames left to right."""
    samples, frames = cats.shape[:2]
    cmap = ListedColormap(COLOURS)
    axes = group.subplots(samples, frames, squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.08})
    for s, (context, target, dropped) in enumerate(_ratios(cats)):
        axes[s, 0].set_ylabel(
            f"sample {s}\n(masked {before[s]:.1%})\ntgt {target:.1%}\nctx {context:.1%}\ndrop {dropped:.1%}",
            fontsize=8, rotation=0, ha="right", va="center", labelpad=6,
        )
        for t, ax in enumerate(axes[s]):
            ax.imshow(cats[s, t], cmap=cmap, vmin=-0.5, vmax=2.5, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(0.4)
            if s == samples - 1:
                ax.set_xlabel(f"t'={t}", fontsize=7, labelpad=2)


def key_params(params: dict[str, Any], config: Any, siblings: list[dict[str, Any]]) -> str:
    """``k=v`` for the params that set this masker apart: changed from their default, or differing
    among ``siblings`` (the spec's maskers of the same kind); when none do, every numeric param.
    (lo, hi) pairs print as one number when lo == hi, else as lo-hi."""
    try:
        defaults = config.model_validate({}).model_dump(mode="json")
    except Exception:  # a params model with required fields: nothing counts as a default
        defaults = {}
    missing = object()
    keys = [
        k for k, v in params.items()
        if defaults.get(k, missing) != v or any(other.get(k, missing) != v for other in siblings)
    ]
    if not keys:
        keys = [k for k, v in params.items() if _is_number(v) or _is_pair(v)]
    return ", ".join(f"{k}={_short(params[k])}" for k in keys)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_pair(value: object) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value))


def _short(value: object) -> str:
    if _is_pair(value):
        lo, hi = value  # type: ignore[misc]
        return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)

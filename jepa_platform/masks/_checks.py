"""Config checks shared by the maskers: each failure is a ConfigError naming the field and its range."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from jepa_platform.errors import ConfigError

Grid = tuple[int, int, int]


def _pair(field: str, value: object) -> tuple[float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ConfigError(f"{field}: expected (min, max), got {value!r}")
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ConfigError(f"{field}: expected two numbers (min, max), got {value!r}") from None
    if lo > hi:
        raise ConfigError(f"{field}: min must be <= max, got {value!r}")
    return lo, hi


def unit_range(field: str, value: object) -> tuple[float, float]:
    """A (min, max) pair with both ends in (0, 1]."""
    lo, hi = _pair(field, value)
    if not (0.0 < lo <= 1.0 and 0.0 < hi <= 1.0):
        raise ConfigError(f"{field}: each value must be in (0, 1], got {tuple(value)!r}")
    return lo, hi


def positive_range(field: str, value: object) -> tuple[float, float]:
    """A (min, max) pair of finite values > 0."""
    lo, hi = _pair(field, value)
    if not (0.0 < lo and math.isfinite(hi)):
        raise ConfigError(f"{field}: each value must be > 0 and finite, got {tuple(value)!r}")
    return lo, hi


def positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field}: must be an int >= 1, got {value!r}")
    return value


def open_unit(field: str, value: object) -> float:
    """A fraction in (0, 1): both ends would leave the student or the predictor nothing to do."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"{field}: must be in (0, 1), got {value!r}")
    return float(value)


def one_of(field: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{field}: must be one of {names}, got {value!r}")
    return value  # type: ignore[return-value]


def check_grid(grid: object) -> Grid:
    """The token grid (T', H', W'): three integers >= 1 (numpy and torch integers accepted)."""
    try:
        dims = tuple(operator.index(g) for g in grid)  # type: ignore[attr-defined]
    except TypeError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise ConfigError(f"grid: expected three ints >= 1 (T', H', W'), got {grid!r}")
    return dims  # type: ignore[return-value]


def exact_count(field: str, ratio: float, total: int, what: str) -> int:
    """``int(ratio * total)``, refused when the grid is too small for it to leave targets and context."""
    count = int(ratio * total)
    if not 0 < count < total:
        raise ConfigError(
            f"{field}: {ratio} masks {count} of {total} {what}; it must mask at least one and leave "
            "at least one visible, so use a larger grid or a ratio nearer 0.5"
        )
    return count

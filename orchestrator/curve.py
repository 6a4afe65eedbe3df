"""One rule for reading a compression curve at a given sparsity.

A trial's curve is one point per compression step. Objectives (``at: 0.9``) and the report's
matched-sparsity tables both ask what a metric was at some sparsity; they must answer alike,
so both read the curve through :func:`value_at_sparsity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# A level within this of a curve's end is that end: a mean of equal sparsities can differ from
# them in the last bit.
LEVEL_SLACK = 1e-9

__all__ = ["LEVEL_SLACK", "compressed_points", "value_at_sparsity"]


def compressed_points(
    steps: Sequence[int], sparsity: Sequence[float], values: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Sparsity and value of the compressed steps (1 and later), by increasing sparsity.

    Step 0 (dense) is left out: it is the same network in every arm. Of two steps at the same
    sparsity the later one counts (it had more training).
    """
    latest: dict[float, tuple[int, float]] = {}
    for step, level, value in zip(steps, sparsity, values, strict=True):
        if step >= 1 and (level not in latest or latest[level][0] < step):
            latest[float(level)] = (int(step), float(value))
    levels = sorted(latest)
    return np.array(levels, dtype=float), np.array([latest[x][1] for x in levels], dtype=float)


def value_at_sparsity(
    steps: Sequence[int], sparsity: Sequence[float], values: Sequence[float], level: float
) -> float:
    """The value at ``level`` sparsity, linear between the compressed steps around it.

    NaN outside the measured range: a curve is never extrapolated.
    """
    x, y = compressed_points(steps, sparsity, values)
    if len(x) == 0:
        return math.nan
    if x[0] - LEVEL_SLACK <= level < x[0]:
        level = x[0]
    if x[-1] < level <= x[-1] + LEVEL_SLACK:
        level = x[-1]
    return float(np.interp(level, x, y, left=math.nan, right=math.nan))

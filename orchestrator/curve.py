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

__all__ = ["LEVEL_SLACK", "curve_points", "value_at_sparsity"]


def curve_points(
    steps: Sequence[int],
    sparsity: Sequence[float],
    values: Sequence[float],
    *,
    first_step: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Sparsity and value of the steps from ``first_step`` on, by increasing sparsity.

    Of two steps at the same sparsity the later one counts (it had more training).
    """
    latest: dict[float, tuple[int, float]] = {}
    for step, level, value in zip(steps, sparsity, values, strict=True):
        if step >= first_step and (level not in latest or latest[level][0] < step):
            latest[float(level)] = (int(step), float(value))
    levels = sorted(latest)
    return np.array(levels, dtype=float), np.array([latest[x][1] for x in levels], dtype=float)


def value_at_sparsity(
    steps: Sequence[int],
    sparsity: Sequence[float],
    values: Sequence[float],
    level: float,
    *,
    first_step: int = 1,
) -> float:
    """The value at ``level`` sparsity, linear between the steps around it.

    Args:
        steps, sparsity, values: the curve, one entry per step.
        level: the sparsity to read the curve at.
        first_step: the first step that counts. The report compares arms and leaves the dense
            network (step 0) out, since it is the same network in every arm (1, the default);
            an objective reads a trial's whole curve, so a target below what ALDS alone
            reached lies between the dense and the compressed network (0).

    Returns:
        The interpolated value; NaN outside the measured range (never extrapolated).
    """
    x, y = curve_points(steps, sparsity, values, first_step=first_step)
    if len(x) == 0:
        return math.nan
    if x[0] - LEVEL_SLACK <= level < x[0]:
        level = x[0]
    if x[-1] < level <= x[-1] + LEVEL_SLACK:
        level = x[-1]
    return float(np.interp(level, x, y, left=math.nan, right=math.nan))

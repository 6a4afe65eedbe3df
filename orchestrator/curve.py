"""One rule for reading a compression curve at a given sparsity.

A trial's curve is one point per compression step. Objectives (``at: 0.9``), the report's
matched-sparsity tables and the pruner's intermediate values all ask what a metric was at some
sparsity; they must answer alike, so all read the curve through :func:`value_at_sparsity`:
linear between the two steps around the level in log(remaining weights), the scale on which
IMP's steps are evenly spaced (each cycle keeps a fixed share of what remains).

The pruner compares trials on one grid of sparsities shared by every trial of every sweep
(:data:`PRUNING_GRID`), not at step indices: step k of a trial pruning 30% per cycle and of
one pruning 10% are networks of very different sizes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator import stored_names

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from orchestrator.config import Objective

# A level within this of a curve's end is that end: a mean of equal sparsities can differ from
# them in the last bit.
LEVEL_SLACK = 1e-9

# Remaining weights are never quite zero on this scale.
SMALLEST_REMAINING = 1e-12
# The pruner's sparsities: weights remaining halve every two levels (70.7%, 50%, 35.4%, ...),
# down to 0.1% remaining.
PRUNING_GRID: tuple[float, ...] = tuple(1.0 - 2.0 ** (-k / 2) for k in range(1, 21))

__all__ = [
    "LEVEL_SLACK",
    "POSITION",
    "PRUNING_GRID",
    "curve_points",
    "grid_values",
    "intermediate_values",
    "mean_between",
    "measures",
    "objective_value",
    "value_at_sparsity",
]

Row = Mapping[str, Any]
"""One step of a trial's curve: ``step``, ``sparsity`` and each metric it measured (a metric
it did not measure is absent or ``None``)."""


def _position(sparsity: np.ndarray | float) -> np.ndarray:
    """Where a sparsity lies on the interpolation scale: log of the weights remaining."""
    return np.log(np.maximum(1.0 - np.asarray(sparsity, dtype=float), SMALLEST_REMAINING))


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
    """The value at ``level`` sparsity, linear in log(remaining) between the steps around it.

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
    if not x[0] <= level <= x[-1]:
        return math.nan
    # np.interp wants increasing positions: log(remaining) falls as sparsity grows.
    return float(np.interp(-_position(level), -_position(x), y))


def mean_between(
    steps: Sequence[int],
    sparsity: Sequence[float],
    values: Sequence[float],
    low: float,
    high: float,
    *,
    first_step: int = 1,
) -> float:
    """The curve's mean value from ``low`` to ``high`` sparsity: the area under it against
    log(remaining), read as :func:`value_at_sparsity` reads it (linear between the steps),
    over the range's width. The report's primary endpoint: one number per curve that weighs
    every sparsity of the range alike on the scale IMP prunes on.

    Args:
        steps, sparsity, values: the curve, one entry per step.
        low, high: the range of sparsities, ``low <= high``.
        first_step: as for :func:`value_at_sparsity`.

    Returns:
        The mean; NaN unless the curve covers the whole range (never extrapolated).
    """
    x, y = curve_points(steps, sparsity, values, first_step=first_step)
    if len(x) == 0 or low > high or x[0] > low + LEVEL_SLACK or x[-1] < high - LEVEL_SLACK:
        return math.nan
    low, high = max(low, x[0]), min(high, x[-1])
    if high <= low:
        return value_at_sparsity(steps, sparsity, values, low, first_step=first_step)
    points = np.concatenate([[low], x[(x > low) & (x < high)], [high]])
    # Increasing positions, as np.interp wants: minus log(remaining).
    position = -_position(points)
    curve = np.interp(position, -_position(x), y)
    area = float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(position)))
    return area / float(position[-1] - position[0])


def grid_values(
    steps: Sequence[int],
    sparsity: Sequence[float],
    values: Sequence[float],
    *,
    start: int = 0,
) -> list[tuple[int, float]]:
    """The curve read at :data:`PRUNING_GRID` levels from index ``start`` on, as far as it
    reaches, by :func:`value_at_sparsity` (the dense step included, as an objective reads it).

    Returns:
        ``(grid index, value)`` of each level the curve has reached; missing values skipped.
    """
    reached = max(sparsity, default=0.0)
    found = []
    for index in range(start, len(PRUNING_GRID)):
        level = PRUNING_GRID[index]
        if level > reached + LEVEL_SLACK:
            break
        value = value_at_sparsity(steps, sparsity, values, level, first_step=0)
        if not math.isnan(value):
            found.append((index, value))
    return found


def _metric(rows: Sequence[Row], metric: str) -> list[float]:
    return [math.nan if row.get(metric) is None else float(row[metric]) for row in rows]


def objective_value(rows: Sequence[Row], objective: Objective) -> float:
    """The value of one objective on a finished curve.

    ``at: final`` reads the last step, ``best`` the best compressed step (1 and later),
    a number reads the metric at that sparsity by :func:`value_at_sparsity` (linear between
    the steps around it, the dense step included); a curve that never reached it gives NaN
    (the trial fails with that reason).
    """
    values = _metric(rows, objective.metric)
    if objective.at == "final":
        return values[-1]
    if objective.at == "best":
        compressed = values[1:] or values[-1:]
        return max(compressed) if objective.direction == "maximize" else min(compressed)
    return value_at_sparsity(
        [int(row["step"]) for row in rows],
        [float(row["sparsity"]) for row in rows],
        values,
        float(objective.at),
        first_step=0,
    )


def intermediate_values(
    rows: Sequence[Row], metric: str, *, start: int = 0
) -> list[tuple[int, float]]:
    """What a trial with this curve reports to its study for ``metric``: the curve at every
    :data:`PRUNING_GRID` level from index ``start`` on that it reached (:func:`grid_values`)."""
    return grid_values(
        [int(row["step"]) for row in rows],
        [float(row["sparsity"]) for row in rows],
        _metric(rows, metric),
        start=start,
    )


def measures(row: Row) -> dict[str, float]:
    """A row's measurements: what its step logs to MLflow (all but step, phase and cycle)."""
    return {k: float(v) for k, v in row.items() if k not in POSITION and v is not None}


POSITION = ("step", "phase", "cycle")
"""What a row says of where a step is, beside what it measured."""


def encode_curve(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A curve (rows of ``curve.Row``) as one compact record: the column names once, then
    each row's values (``None`` where a step did not measure a metric)."""
    columns: list[str] = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    return {"columns": columns, "rows": [[row.get(name) for name in columns] for row in rows]}


def curve_of(trial: FrozenTrial) -> list[dict[str, Any]] | None:
    """The curve a finished trial kept, as rows; ``None`` for one that kept none (a trial of
    a version before results were kept, or one that did not complete)."""
    stored = trial.system_attrs.get(stored_names.TRIAL_CURVE)
    if stored is None:
        return None
    record = curve_record(stored)
    columns = record["columns"]
    return [
        {name: value for name, value in zip(columns, row, strict=True) if value is not None}
        for row in record["rows"]
    ]


def curve_record(stored: str | Mapping[str, Any]) -> Mapping[str, Any]:
    """A kept curve as stored (:func:`encode_curve`; text where a storage kept it so) as the
    record: ``columns``, and ``rows`` of values in their order."""
    return json.loads(stored) if isinstance(stored, str) else stored

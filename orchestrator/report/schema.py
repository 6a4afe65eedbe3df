"""What every part of the report shares: metric and parameter names, the report, its columns.

The bottom of the package: the readers, the tables, the figures and the renderers all speak
these names, and it imports none of them. Each table is declared once in ``tables.TABLES``
(file name, section title, computation, the columns shown) and each figure once in
``figures.FIGURES``; adding one is one function and one entry there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from orchestrator.config_fields import shorten
from orchestrator.plan import ALDS_RATE, PRUNE_FRACTION
from orchestrator.report.options import FORMATS, LEVELS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The metrics each trial's run logs once per compression step: the numeric fields of
# procedure.Step (tests/test_report.py holds them equal; the report does not import procedure,
# which imports torch).
METRICS = (
    "accuracy",
    "loss",
    "val_accuracy",
    "sparsity",
    "remaining",
    "params_nonzero",
    "compression_ratio",
    "params_effective",
    "flops_effective",
    "mass_smallest_decile",
    "mass_largest_decile",
)
RATE = ALDS_RATE
FRACTION = PRUNE_FRACTION
TOLERANCE = 0.01  # one accuracy point
# Effective FLOPs kept, relative to the dense network, of the at_flops table (speedups 2-20×).
FLOPS_LEVELS = (0.5, 0.2, 0.1, 0.05)
NOTE_LIMIT = 120  # characters of a trial's note in Markdown, HTML and the notes

__all__ = [
    "FLOPS_LEVELS",
    "FORMATS",
    "FRACTION",
    "LEVELS",
    "METRICS",
    "NOTE_LIMIT",
    "NUMERIC",
    "RATE",
    "TOLERANCE",
    "Column",
    "FigureSpec",
    "Report",
    "config_fields",
    "is_missing",
    "param_text",
    "plain",
    "shorten",
]


def config_fields(params: Sequence[str]) -> list[str]:
    """The fields that say which configuration a row is: the searched parameters, then the
    ALDS rate (every configuration has one, searched or not)."""
    return list(dict.fromkeys([*params, RATE]))


def is_missing(value: Any) -> bool:
    """Whether ``value`` is a missing number (NaN, None, NaT); a list or a text is not."""
    # The common cases first: the report asks this of every cell of every table.
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    if isinstance(value, str | bool | int):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def plain(value: Any) -> Any:
    """``value`` as a Python scalar (a NumPy one unwrapped), for JSON and stable labels."""
    return value.item() if isinstance(value, np.generic) else value


def param_text(value: Any) -> str:
    """A parameter value as shown in tables, labels and legends: floats to 4 digits."""
    return f"{value:.4g}" if isinstance(value, float | np.floating) else str(value)


@dataclass
class Report:
    """Everything ``orchestrate report`` writes: the tables, the figures, and what they cover."""

    study: str
    params: list[str]
    objectives: list[str]
    directions: list[str]
    counts: dict[str, int]
    notes: list[str]
    tables: dict[str, pd.DataFrame]
    figures: dict[str, Figure] = field(default_factory=dict)
    tracking_uri: str = ""
    parent_run_id: str | None = None
    tolerance: float = TOLERANCE
    margin: float | None = None  # the equivalence margin (TOST), in accuracy
    # Each configuration label by its name (tables.Inputs.names); a label missing: itself.
    names: dict[str, str] = field(default_factory=dict)

    def status(self) -> str:
        """One line: how many trials are in which state."""
        c = self.counts
        total = sum(c.values())
        from orchestrator.study.counts import finished_count  # Optuna: not for validate

        done = finished_count(c)
        return (
            f"{done} of {total} trials finished: {c['COMPLETE']} complete, {c['PRUNED']} pruned, "
            f"{c['FAIL']} failed; {c['RUNNING']} running, {c['WAITING']} queued"
        )


# --------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Column:
    """One presented column: its header, the table column it shows, and how."""

    header: str
    source: str
    # text, arm (a configuration shown as its arm), param, int, pct, points, ratio, seconds,
    # p (a p-value), flag (yes/no)
    kind: str = "text"
    std: str | None = None
    paper: bool = True  # shown in LaTeX (run ids and notes are not)
    limit: int | None = None  # characters shown of a long text (CSV and JSON keep it whole)
    bound: str | None = None  # a column that, when true, makes the value a lower bound (≥)
    upper: str | None = None  # the interval's upper end: the cell shows [source, upper]


NUMERIC = frozenset({"param", "int", "pct", "points", "ratio", "seconds", "p"})


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: its file name (``<name>.png``), title, and how it is drawn.

    ``draw(table, params, title=...)`` draws from the report's table ``table`` (the curves
    unless said) and returns ``None`` where the figure does not apply. ``after`` names the
    table the Markdown document shows it under; ``None``: above the tables.
    """

    name: str
    title: str
    draw: Callable[..., Figure | None]
    after: str | None = None
    table: str = "curves"

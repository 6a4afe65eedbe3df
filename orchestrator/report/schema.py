"""What every part of the report shares: metric and parameter names, the report, its tables.

The bottom of the package: the readers, the tables, the figures and the renderers all speak
these names. Each table is declared once in :data:`TABLES` (file name, section title, the
columns shown) and each figure once in ``figures.FIGURES``; adding one is one entry there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from orchestrator import keys
from orchestrator.counts import finished_count
from orchestrator.plan import ALDS_RATE, PRUNE_FRACTION

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The metrics each trial's run logs once per compression step.
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
FORMATS = ("csv", "md", "latex", "html", "json")
RATE = ALDS_RATE
FRACTION = PRUNE_FRACTION
TOLERANCE = 0.01  # one accuracy point
LEVELS = (0.5, 0.8, 0.9, 0.95)  # sparsities of the at_sparsity table
NOTE_LIMIT = 120  # characters of a trial's note in Markdown, HTML and the notes

__all__ = [
    "FORMATS",
    "FRACTION",
    "LEVELS",
    "METRICS",
    "NOTE_LIMIT",
    "NUMERIC",
    "RATE",
    "TABLES",
    "TOLERANCE",
    "Column",
    "FigureSpec",
    "Report",
    "TableSpec",
    "config_fields",
    "is_missing",
    "param_text",
    "plain",
    "shorten",
    "table_spec",
]


def config_fields(params: Sequence[str]) -> list[str]:
    """The fields that say which configuration a row is: the searched parameters, then the
    ALDS rate (every configuration has one, searched or not)."""
    return list(dict.fromkeys([*params, RATE]))


def is_missing(value: Any) -> bool:
    """Whether ``value`` is a missing number (NaN, None, NaT); a list or a text is not."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def plain(value: Any) -> Any:
    """``value`` as a Python scalar (a NumPy one unwrapped), for JSON and stable labels."""
    return value.item() if isinstance(value, np.generic) else value


def shorten(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


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

    def status(self) -> str:
        """One line: how many trials are in which state."""
        c = self.counts
        total = sum(c.values())
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
    # flag (yes/no)
    kind: str = "text"
    std: str | None = None
    paper: bool = True  # shown in LaTeX (run ids and notes are not)
    limit: int | None = None  # characters shown of a long text (CSV and JSON keep it whole)
    bound: str | None = None  # a column that, when true, makes the value a lower bound (≥)
    upper: str | None = None  # the interval's upper end: the cell shows [source, upper]


NUMERIC = frozenset({"param", "int", "pct", "points", "ratio", "seconds"})


@dataclass(frozen=True)
class TableSpec:
    """One table of the report: its file name, its section title, the columns it shows.

    ``columns`` is ``None`` for a table written as data only (CSV, JSON), shown nowhere.
    """

    name: str
    title: str
    columns: Callable[[Report], list[Column]] | None = None

    @property
    def presented(self) -> bool:
        """Whether the table is shown (LaTeX, Markdown, HTML) and not only written as data."""
        return self.columns is not None


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


def _config_columns(report: Report) -> list[Column]:
    return [Column(p, p, "param") for p in config_fields(report.params)]


def _objective(name: str, source: str, std: str | None = None) -> Column:
    """An objective's column, in the unit of its metric (``accuracy@0.9`` is an accuracy)."""
    metric = name.split("@", 1)[0]
    kind = {"accuracy": "pct", "val_accuracy": "pct", "sparsity": "pct", "params_nonzero": "int"}
    unit = {"pct": " (%)"}.get(kind.get(metric, "param"), "")
    return Column(f"objective {name}{unit}", source, kind.get(metric, "param"), std)


def _objectives(report: Report) -> list[Column]:
    return [_objective(o, f"value:{o}") for o in report.objectives]


def _outcome(*, mean: bool = False, final: bool = False) -> list[Column]:
    """What a network ended at: accuracy, sparsity, nonzero weights (a trial's, or means)."""
    source = "{}_mean" if mean else "{}"
    header = "final {}" if final else "{}"
    return [
        Column(header.format("accuracy (%)"), source.format("accuracy"), "pct"),
        Column(header.format("sparsity (%)"), source.format("sparsity"), "pct"),
        Column("nonzero params", source.format("params_nonzero"), "int"),
    ]


# An arm against its baseline at one sparsity (tables.versus_baseline, tables.at_sparsity).
_AGAINST_BASELINE = [
    Column("IMP only (%)", "baseline_accuracy_mean", "pct", "baseline_accuracy_std"),
    Column("Δ (pt)", "difference_mean", "points", "difference_std"),
    Column("Δ 95% CI (pt)", "difference_ci_low", "points", upper="difference_ci_high"),
    Column("seeds", "paired_n", "int"),
]


def _summary(report: Report) -> list[Column]:
    within = f"max sparsity within {100 * report.tolerance:g} pt of dense (%)"
    return [
        *_config_columns(report),
        Column("arm", "role"),
        Column("n", "n", "int"),
        Column("final sparsity (%)", "final_sparsity", "pct"),
        Column("final accuracy (%)", "final_accuracy_mean", "pct", "final_accuracy_std"),
        Column("matched sparsity (%)", "matched_sparsity", "pct"),
        Column("Δ vs IMP only there (pt)", "difference_mean", "points", "difference_std"),
        Column("Δ 95% CI (pt)", "difference_ci_low", "points", upper="difference_ci_high"),
        Column("paired seeds", "paired_n", "int"),
        Column("verdict", "verdict"),
        Column(
            within,
            "max_sparsity_within_mean",
            "pct",
            "max_sparsity_within_std",
            bound="within_lower_bound",
        ),
    ]


def _at_sparsity(report: Report) -> list[Column]:
    return [
        Column("sparsity (%)", "sparsity", "pct"),
        Column("configuration", "config"),
        Column("accuracy (%)", "accuracy_mean", "pct", "accuracy_std"),
        Column("n", "n", "int"),
        *_AGAINST_BASELINE,
    ]


def _versus_baseline(report: Report) -> list[Column]:
    return [
        Column("configuration", "config", "arm"),
        Column("step", "step", "int"),
        Column("sparsity (%)", "sparsity", "pct"),
        Column("ALDS + IMP (%)", "accuracy_mean", "pct", "accuracy_std"),
        *_AGAINST_BASELINE,
    ]


def _magnitudes(report: Report) -> list[Column]:
    columns = [Column("configuration", "config", "arm")]
    for decile in ("smallest", "largest"):
        columns += [
            Column(f"{decile} tenth, dense (%)", f"{decile}_dense", "pct"),
            Column("after ALDS (%)", f"{decile}_alds", "pct"),
            Column("IMP only (%)", f"{decile}_baseline", "pct"),
            Column("Δ 95% CI (pt)", f"{decile}_ci_low", "points", upper=f"{decile}_ci_high"),
            Column("verdict", f"{decile}_verdict"),
        ]
    return [*columns, Column("seeds", "paired_n", "int")]


def _layers(report: Report) -> list[Column]:
    return [
        Column("configuration", "config", "arm"),
        Column("layer", "layer"),
        Column("step", "step", "int"),
        Column("sparsity (%)", "sparsity", "pct"),
        Column("remaining (%)", "remaining_mean", "pct"),
        Column("lowest seed (%)", "remaining_min", "pct"),
        Column("emptied", "collapsed", "flag"),
        Column("IMP only (%)", "baseline_remaining_mean", "pct"),
        Column("emptied in IMP only", "baseline_collapsed", "flag"),
    ]


def _curves(report: Report) -> list[Column]:
    return [
        *_config_columns(report),
        Column("step", "step", "int"),
        Column("phase", "phase"),
        Column("n", "n", "int"),
        Column("accuracy (%)", "accuracy_mean", "pct", "accuracy_std"),
        Column("sparsity (%)", "sparsity_mean", "pct"),
        Column("nonzero params", "params_nonzero_mean", "int"),
        Column("compression (×)", "compression_ratio_mean", "ratio"),
    ]


def _best(report: Report) -> list[Column]:
    params = [Column(p, p, "param") for p in report.params]
    if len(report.objectives) > 1:  # the Pareto front: trials, not configurations
        return [
            Column("trial", "number", "int"),
            Column("seed", "seed", "int"),
            *params,
            *_objectives(report),
            *_outcome(),
        ]
    return [
        Column("rank", "rank", "int"),
        *params,
        Column("n", "n", "int"),
        _objective(report.objectives[0], "value_mean", "value_std"),
        Column("best trial", "best_trial", "int"),
        *_outcome(mean=True, final=True),
    ]


def _trials(report: Report) -> list[Column]:
    return [
        Column("trial", "number", "int"),
        Column("state", "state"),
        Column("seed", "seed", "int"),
        *[Column(p, p, "param") for p in report.params],
        *_objectives(report),
        Column("last step", "last_step", "int"),
        *_outcome(),
        Column("compression (×)", "compression_ratio", "ratio"),
        Column("duration (s)", "duration_s", "seconds"),
        Column("MLflow run", keys.TRIAL_RUN_ID, paper=False),
        Column("note", "note", paper=False, limit=NOTE_LIMIT),
    ]


# In the order the report shows them.
TABLES = (
    TableSpec("summary", "ALDS + IMP against IMP only", _summary),
    TableSpec("at_sparsity", "At fixed sparsities", _at_sparsity),
    TableSpec("versus_baseline", "At matched sparsity, step by step", _versus_baseline),
    TableSpec(
        "magnitudes",
        "Share of the weights' magnitude in their smallest and largest tenth, after ALDS",
        _magnitudes,
    ),
    TableSpec("layers", "Weights remaining per layer, at the last step", _layers),
    TableSpec("curves", "Curves (mean ± std over seeds)", _curves),
    TableSpec("best", "Best configurations", _best),
    TableSpec("trials", "Trials", _trials),
    TableSpec("steps", "Every logged step of every trial"),
)


def table_spec(name: str) -> TableSpec | None:
    """The declaration of the table ``name``; ``None`` for a table the report does not declare."""
    return next((spec for spec in TABLES if spec.name == name), None)

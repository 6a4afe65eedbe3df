"""The tables' one registry, :data:`TABLES`: each table's name, title, computation and columns.

A table of the report is one function (pure, of tidy frames of trials and steps, checkable on
hand-built curves: in ``compare`` or ``describe``) and one :class:`TableSpec` in
:data:`TABLES`: its file name, title, how it is computed from the report's :class:`Inputs`,
and the columns shown.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from orchestrator import plan, stored_names
from orchestrator.report.compare import (
    at_flops,
    at_sparsity,
    baseline_pairs,
    controls_table,
    endpoint_table,
    summary_table,
    tolerance_table,
    versus_baseline,
)
from orchestrator.report.describe import (
    best_table,
    collapse_table,
    curve_table,
    layer_table,
    magnitude_table,
    trials_table,
)
from orchestrator.report.schema import (
    FLOPS_LEVELS,
    LEVELS,
    NOTE_LIMIT,
    TOLERANCE,
    Column,
    Report,
    config_fields,
)

__all__ = ["TABLES", "Inputs", "TableSpec", "judgement_columns", "table_spec"]


@dataclass
class Inputs:
    """What every table is computed from: the sweep's frames and choices, and each table of
    :data:`TABLES` computed once on demand (:meth:`table`), so a table can build on another.

    ``trials`` is the study's trials as read (``sources.read_trials``) with ``missing``, the
    reason a trial's run could not be read; ``steps`` the labelled steps of every trial
    (``sources.label_steps``). ``twin_lookup``, ``label`` and ``name`` are the sweep's: a
    configuration's IMP-only twin (:func:`orchestrator.trial.spec.twin_configuration`), a
    trial's configuration label (``sources.config_label``) and a configuration's name, passed
    in so the tables import neither the config nor the readers.
    """

    trials: pd.DataFrame
    steps: pd.DataFrame
    params: list[str]
    twin_lookup: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    label: Callable[[pd.Series], str]
    objectives: list[str]
    directions: list[str]
    front: list[int] = field(default_factory=list)  # the Pareto front's trials (several objectives)
    tolerance: float = TOLERANCE
    levels: Sequence[float] = LEVELS
    margin: float | None = None  # the equivalence margin (TOST), in accuracy; None: no test
    primary_level: float | None = None  # report.primary at one sparsity; None: the AUC
    chance: float | None = None  # a guess's accuracy, 1/classes: the collapse table's floor
    # A sequential sweep's decisions from the labelled steps (report.looks.decisions_table,
    # with the sweep's config); None: a sweep of fixed seeds, an empty table.
    decide: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    # The control trials (imp.controls) and their labelled steps, with each one's ``twin``:
    # kept out of ``trials`` and ``steps``, compared with their twins alone (controls_table).
    control_trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    control_steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    # A configuration's name from its searched parameters (plan.configuration_name, with the
    # sweep's config): what every table, note and figure calls it; None: its label.
    name: Callable[[Mapping[str, Any]], str] | None = None
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, init=False, repr=False)
    _pending: set[str] = field(default_factory=set, init=False, repr=False)

    def table(self, name: str) -> pd.DataFrame:
        """The table ``name`` of :data:`TABLES`, computed on the first call.

        Args:
            name: a table's file name, as in :data:`TABLES`.

        Returns:
            The whole table; the same frame on every call.
        """
        if name not in self._tables:
            spec = table_spec(name)
            if spec is None:
                raise KeyError(f"no table '{name}' in tables.TABLES")
            if name in self._pending:  # a cycle would otherwise end in a RecursionError
                raise ValueError(f"table '{name}' depends on itself")
            self._pending.add(name)
            try:
                self._tables[name] = spec.compute(self)
            finally:
                self._pending.discard(name)
        return self._tables[name]

    @functools.cached_property
    def complete(self) -> pd.DataFrame:
        """The steps of the complete trials: what every aggregate is computed from."""
        return _of_complete(self.steps)

    @functools.cached_property
    def pairs(self) -> dict[str, str]:
        """Each ALDS configuration's IMP-only twin, where one completed (:func:`baseline_pairs`)."""
        return baseline_pairs(self.table("curves"), self.params, self.twin_lookup)

    @functools.cached_property
    def names(self) -> dict[str, str]:
        """Each configuration label of the curves by its name (:attr:`name`)."""
        curves = self.table("curves")
        fields = [p for p in self.params if p in curves]
        return {
            row["config"]: self.name({p: row[p] for p in fields}) if self.name else row["config"]
            for row in curves.drop_duplicates("config").to_dict("records")
        }

    @functools.cached_property
    def configs(self) -> list[str]:
        """The configurations with a complete trial, in the curve table's order."""
        return list(self.table("curves")["config"].unique())

    @functools.cached_property
    def within(self) -> pd.DataFrame:
        """:func:`tolerance_table` of the complete trials: a part of the summary, not written."""
        return tolerance_table(self.complete, self.tolerance)


@dataclass(frozen=True)
class TableSpec:
    """One table of the report: its file name, section title, computation and shown columns.

    ``compute`` returns the whole table (CSV and JSON write every column) from the report's
    :class:`Inputs`. ``columns`` are those LaTeX, Markdown and HTML show: a sequence, a
    function of the :class:`Report` where they depend on the sweep (its parameters, objectives,
    tolerance), or ``None`` for a table written as data only, shown nowhere.
    """

    name: str
    title: str
    compute: Callable[[Inputs], pd.DataFrame]
    columns: Sequence[Column] | Callable[[Report], Sequence[Column]] | None = None
    applies: Callable[[Inputs], bool] = lambda inputs: True  # else the report leaves it out
    # The data formats it is written in whenever data is asked for (CSV or JSON); None: those
    # asked. A row per step of every trial is written once, as CSV, not again as JSON.
    data: tuple[str, ...] | None = None

    @property
    def presented(self) -> bool:
        """Whether the table is shown (LaTeX, Markdown, HTML) and not only written as data."""
        return self.columns is not None

    def shown(self, report: Report) -> list[Column]:
        """The columns shown of this table in ``report``.

        Args:
            report: the report the table is part of.

        Returns:
            The presented columns, in order; a data-only table raises ``ValueError``.
        """
        if self.columns is None:
            raise ValueError(f"no presentation for table '{self.name}'")
        return list(self.columns(report) if callable(self.columns) else self.columns)


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


# A paired difference judged within its table's family by one rule (statistics.judge): the
# adjusted p, the simultaneous interval and the verdict agree by construction.
def _judgement(report: Report) -> list[Column]:
    return judgement_columns(report.margin)


def judgement_columns(margin: float | None) -> list[Column]:
    """The columns that show a paired difference's judgement (:func:`statistics.judge`).

    Args:
        margin: the equivalence margin, in accuracy; None: no equivalence column.

    Returns:
        The unadjusted and family-wise intervals, the adjusted p-values, the verdict.
    """
    equivalence = (
        [Column("p equivalence (Bonferroni)", "p_equivalence_adjusted", "p")]
        if margin is not None
        else []
    )
    return [
        Column("Δ 95% CI (pt)", "difference_ci_low", "points", upper="difference_ci_high"),
        Column("Δ family-wise CI (pt)", "adjusted_ci_low", "points", upper="adjusted_ci_high"),
        Column("p (Bonferroni)", "p_adjusted", "p"),
        *equivalence,
        Column("verdict", "verdict"),
    ]


# An arm against its baseline at one sparsity (versus_baseline, at_sparsity).
def _against_baseline(report: Report) -> list[Column]:
    return [
        Column("IMP only (%)", "baseline_accuracy_mean", "pct", "baseline_accuracy_std"),
        Column("Δ (pt)", "difference_mean", "points", "difference_std"),
        *_judgement(report),
        Column("seeds", "paired_n", "int"),
    ]


def _summary_columns(report: Report) -> list[Column]:
    within = f"max sparsity within {100 * report.tolerance:g} pt of dense (%)"
    return [
        *_config_columns(report),
        Column("arm", "role"),
        Column("n", "n", "int"),
        Column("final sparsity (%)", "final_sparsity", "pct"),
        Column("final accuracy (%)", "final_accuracy_mean", "pct", "final_accuracy_std"),
        Column("matched sparsity (%)", "matched_sparsity", "pct"),
        Column("Δ vs IMP only there (pt)", "difference_mean", "points", "difference_std"),
        *_judgement(report),
        Column("differences beyond (±pt) excluded", "equivalence_bound", "pct"),
        Column("paired seeds", "paired_n", "int"),
        Column(
            within + ", median", "max_sparsity_within_median", "pct", bound="within_lower_bound"
        ),
        Column(
            "range over seeds (%)",
            "max_sparsity_within_min",
            "pct",
            upper="max_sparsity_within_max",
        ),
    ]


def _magnitude_columns() -> tuple[Column, ...]:
    columns = [Column("configuration", "config", "arm")]
    for decile in ("smallest", "largest"):
        columns += [
            Column(f"{decile} tenth, dense (%)", f"{decile}_dense", "pct"),
            Column("after ALDS (%)", f"{decile}_alds", "pct"),
            Column("IMP only (%)", f"{decile}_baseline", "pct"),
            Column("Δ 95% CI (pt)", f"{decile}_ci_low", "points", upper=f"{decile}_ci_high"),
            Column(
                "family-wise CI (pt)",
                f"{decile}_adjusted_ci_low",
                "points",
                upper=f"{decile}_adjusted_ci_high",
            ),
            Column("verdict", f"{decile}_verdict"),
        ]
    return (*columns, Column("seeds", "paired_n", "int"))


def _curve_columns(report: Report) -> list[Column]:
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


def _best_columns(report: Report) -> list[Column]:
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


def _trial_columns(report: Report) -> list[Column]:
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
        Column("MLflow run", stored_names.TRIAL_RUN_ID, paper=False),
        Column("trial key", stored_names.TRIAL_KEY, paper=False),
        Column("copied from (run)", stored_names.TRIAL_REUSED_FROM, paper=False),
        Column("note", "note", paper=False, limit=NOTE_LIMIT),
    ]


def _of_complete(steps: pd.DataFrame) -> pd.DataFrame:
    """The steps of the complete trials among ``steps`` (none in a frame without trials)."""
    return steps[steps["state"] == "COMPLETE"] if "state" in steps else steps


def _listed(inputs: Inputs) -> pd.DataFrame:
    """The trials table of every trial, controls included, each labelled with its
    configuration."""
    table = trials_table(
        _together(inputs.trials, inputs.control_trials),
        _together(inputs.steps, inputs.control_steps),
    ).drop(columns="missing")
    table["config"] = [inputs.label(row) for _, row in table.iterrows()]
    return table


def _together(frame: pd.DataFrame, controls: pd.DataFrame) -> pd.DataFrame:
    """A frame of the plain trials and that of the controls, as one."""
    return frame if controls.empty else pd.concat([frame, controls], ignore_index=True)


def _plain_trials(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a trials table that are no control."""
    return table[table[plan.CONTROL].isna()] if plan.CONTROL in table else table


# Every table of the report, in the order it shows them; a table is written as <name>.csv etc.
TABLES = (
    TableSpec(
        "decisions",
        "Decisions of the sequential design, per ALDS configuration against its IMP-only twin",
        lambda inputs: inputs.decide(inputs.complete) if inputs.decide else pd.DataFrame(),
        lambda report: [
            Column("configuration", "config", "arm"),
            Column("decision", "decision"),
            Column("look", "look", "int"),
            Column("seeds", "seeds", "int"),
            Column("Δ (pt)", "difference_mean", "points", "difference_std"),
            Column("repeated CI (pt)", "ci_low", "points", upper="ci_high"),
            Column("its level", "ci_level", "ratio"),
            Column("fixed design (seeds)", "fixed_seeds", "int"),
            Column("seeds saved", "trials_saved", "int"),
            Column("planned", "planned", paper=False),
        ],
        applies=lambda inputs: inputs.decide is not None,  # a sequential sweep's alone
    ),
    TableSpec(
        "endpoint",
        "The primary endpoint: mean accuracy over the sparsity range every configuration reaches",
        lambda inputs: endpoint_table(
            inputs.complete, inputs.pairs, inputs.margin, inputs.primary_level
        ),
        lambda report: [
            Column("configuration", "config", "arm"),
            Column("from sparsity (%)", "sparsity_low", "pct"),
            Column("to sparsity (%)", "sparsity_high", "pct"),
            Column("ALDS + IMP (%)", "auc_mean", "pct", "auc_std"),
            Column("IMP only (%)", "baseline_auc_mean", "pct", "baseline_auc_std"),
            Column("Δ (pt)", "difference_mean", "points", "difference_std"),
            *_judgement(report),
            Column("seeds", "paired_n", "int"),
            Column("pair's own range (%)", "pair_sparsity_low", "pct", upper="pair_sparsity_high"),
            Column("Δ there (pt)", "pair_difference_mean", "points"),
        ],
    ),
    TableSpec(
        "summary",
        "ALDS + IMP against IMP only",
        lambda inputs: summary_table(
            inputs.table("curves"),
            inputs.table("versus_baseline"),
            inputs.within,
            inputs.pairs,
            inputs.params,
            inputs.margin,
        ),
        _summary_columns,
    ),
    TableSpec(
        "at_sparsity",
        "At fixed sparsities",
        lambda inputs: at_sparsity(
            inputs.complete, inputs.configs, inputs.pairs, inputs.levels, inputs.margin
        ),
        lambda report: [
            Column("sparsity (%)", "sparsity", "pct"),
            Column("configuration", "config", "arm"),
            Column("accuracy (%)", "accuracy_mean", "pct", "accuracy_std"),
            Column("n", "n", "int"),
            *_against_baseline(report),
        ],
    ),
    TableSpec(
        "at_flops",
        "At fixed effective FLOPs (theoretical speedup over the dense network)",
        lambda inputs: at_flops(
            inputs.complete, inputs.configs, inputs.pairs, FLOPS_LEVELS, inputs.margin
        ),
        lambda report: [
            Column("FLOPs kept (%)", "flops_kept", "pct"),
            Column("speedup (×)", "speedup", "ratio"),
            Column("configuration", "config", "arm"),
            Column("accuracy (%)", "accuracy_mean", "pct", "accuracy_std"),
            Column("n", "n", "int"),
            *_against_baseline(report),
        ],
    ),
    TableSpec(
        "versus_baseline",
        "At matched sparsity, step by step",
        lambda inputs: versus_baseline(inputs.complete, inputs.pairs, inputs.margin),
        lambda report: [
            Column("configuration", "config", "arm"),
            Column("step", "step", "int"),
            Column("sparsity (%)", "sparsity", "pct"),
            Column("ALDS + IMP (%)", "accuracy_mean", "pct", "accuracy_std"),
            *_against_baseline(report),
        ],
    ),
    TableSpec(
        "controls",
        "The lottery-ticket controls against their IMP-only twin, cycle by cycle",
        lambda inputs: controls_table(
            inputs.complete, _of_complete(inputs.control_steps), inputs.margin
        ),
        lambda report: [
            Column("twin", "baseline", "arm"),
            Column("control", "control"),
            Column("step", "step", "int"),
            Column("sparsity (%)", "sparsity", "pct"),
            Column("control (%)", "accuracy_mean", "pct", "accuracy_std"),
            *_against_baseline(report),
        ],
        applies=lambda inputs: not inputs.control_trials.empty,  # imp.controls asked for
    ),
    TableSpec(
        "magnitudes",
        "Share of the weights' magnitude in their smallest and largest tenth, after ALDS",
        lambda inputs: magnitude_table(inputs.complete, inputs.pairs),
        _magnitude_columns(),
    ),
    TableSpec(
        "layers",
        "Weights remaining per layer, at the last step",
        lambda inputs: layer_table(inputs.complete, inputs.pairs),
        (
            Column("configuration", "config", "arm"),
            Column("layer", "layer"),
            Column("step", "step", "int"),
            Column("sparsity (%)", "sparsity", "pct"),
            Column("after ALDS (%)", "after_alds_mean", "pct"),
            Column("remaining (%)", "remaining_mean", "pct"),
            Column("lowest seed (%)", "remaining_min", "pct"),
            Column("emptied", "collapsed", "flag"),
            Column("IMP only (%)", "baseline_remaining_mean", "pct"),
            Column("emptied in IMP only", "baseline_collapsed", "flag"),
        ),
    ),
    TableSpec(
        "collapse",
        "Collapse: the first step at chance accuracy or with an empty layer",
        lambda inputs: collapse_table(inputs.complete, inputs.pairs, inputs.chance),
        (
            Column("configuration", "config", "arm"),
            Column("seeds", "n", "int"),
            Column("collapsed", "collapsed", "int"),
            Column("sparsity at collapse, median (%)", "sparsity_median", "pct"),
            Column("range (%)", "sparsity_min", "pct", upper="sparsity_max"),
            Column("reached without collapsing (%)", "reached_max", "pct"),
            Column("first sign", "reason"),
            Column("Δ at collapse (halvings)", "difference_mean", "ratio", "difference_std"),
            Column("Δ 95% CI", "difference_ci_low", "ratio", upper="difference_ci_high"),
            Column("Δ family-wise CI", "adjusted_ci_low", "ratio", upper="adjusted_ci_high"),
            Column("p (Bonferroni)", "p_adjusted", "p"),
            Column("verdict", "verdict"),
            Column("seeds paired", "paired_n", "int"),
        ),
    ),
    TableSpec(
        "curves",
        "Curves (mean ± std over seeds)",
        lambda inputs: curve_table(inputs.complete, inputs.params),
        _curve_columns,
    ),
    TableSpec(
        "best",
        "Best configurations",
        lambda inputs: best_table(
            _plain_trials(inputs.table("trials")),
            inputs.objectives,
            inputs.directions,
            inputs.params,
            front=inputs.front,
        ),
        _best_columns,
    ),
    TableSpec("trials", "Trials", _listed, _trial_columns),
    TableSpec(
        "steps",
        "Every logged step of every trial",
        lambda inputs: _together(inputs.steps, inputs.control_steps).drop(
            columns=["config", "twin"], errors="ignore"
        ),
        data=("csv",),
    ),
)


def table_spec(name: str) -> TableSpec | None:
    """The registry entry of the table ``name``.

    Args:
        name: a table's file name.

    Returns:
        Its :class:`TableSpec` in :data:`TABLES`; ``None`` for a table the report does not
        declare.
    """
    return next((spec for spec in TABLES if spec.name == name), None)

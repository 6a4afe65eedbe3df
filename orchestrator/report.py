"""``orchestrate report``: tables and plots from a sweep's study and its MLflow curves.

The seed's question is whether ALDS before IMP gives a better network than IMP alone at the
same sparsity, and at which ALDS rate. Nothing is recomputed here: trial states and parameters
come from the Optuna study, whole curves (one MLflow metric step per compression step) from the
trials' runs. The tables are pandas DataFrames computed by pure functions over a tidy frame of
steps (one row per trial and step), so they can be checked on hand-built curves.

Aggregates (curves, the comparison with the baseline, the best configurations) use complete
trials only, with ``n`` the number of seeds behind each number; the trials table lists every
trial, running, pruned and failed ones included, with what they logged so far.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import TrialState

from orchestrator.config import ConfigError, SweepConfig, flatten
from orchestrator.outbox import PENDING
from orchestrator.study import describe_params
from orchestrator.tracking import PARENT_ATTR, URI_ATTR, check_reachable, trial_runs

METRICS = (
    "accuracy",
    "loss",
    "val_accuracy",
    "sparsity",
    "remaining",
    "params_nonzero",
    "params_total",
    "compression_ratio",
    "flops",
)
FORMATS = ("csv", "md", "latex", "html", "json")
RATE = "alds.rate"
FRACTION = "imp.prune_fraction"
TOLERANCE = 0.01  # one accuracy point
LEVELS = (0.5, 0.8, 0.9, 0.95)  # sparsities of the at_sparsity table
NOTE_LIMIT = 120  # characters of a trial's note in Markdown, HTML and the notes
# Interpolation levels within this of a curve's end are that end: a mean of equal sparsities
# can differ from them in the last bit.
_LEVEL_SLACK = 1e-9

__all__ = [
    "FORMATS",
    "METRICS",
    "Report",
    "at_sparsity",
    "baseline_pairs",
    "best_table",
    "build",
    "config_label",
    "curve_table",
    "label_steps",
    "latex_escape",
    "latex_table",
    "log_artifacts",
    "markdown_table",
    "open_tracking",
    "parse_formats",
    "parse_levels",
    "plot_accuracy_vs_rate",
    "plot_accuracy_vs_remaining",
    "plot_heatmap",
    "present",
    "read_steps",
    "read_trials",
    "summary_table",
    "tolerance_table",
    "trials_table",
    "versus_baseline",
    "write",
]


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
        done = c["COMPLETE"] + c["PRUNED"] + c["FAIL"]
        return (
            f"{done} of {total} trials finished: {c['COMPLETE']} complete, {c['PRUNED']} pruned, "
            f"{c['FAIL']} failed; {c['RUNNING']} running, {c['WAITING']} queued"
        )


# --------------------------------------------------------------------------- reading the stores


def open_tracking(study: optuna.Study, tracking_uri: str | None) -> tuple[Any, str]:
    """An ``MlflowClient`` on ``tracking_uri`` or the URI the sweep recorded, checked to answer.

    A SQLite store must already exist: opening a missing file would create an empty store and
    the report would find no curves instead of saying that the URI is wrong.
    """
    from mlflow import MlflowClient

    uri = tracking_uri or study.user_attrs.get(URI_ATTR)
    if not uri:
        raise ConfigError(
            f"study '{study.study_name}' records no MLflow tracking URI (no sweep has run on "
            "it yet); pass --tracking-uri"
        )
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.exists():
            raise ConfigError(f"no MLflow tracking store at {uri} (the file {path} is missing)")
    check_reachable(uri)
    return MlflowClient(uri), uri


def read_trials(study: optuna.Study, params: Sequence[str]) -> pd.DataFrame:
    """One row per trial of ``study``: number, state, seed, parameters, values, bookkeeping."""
    names = _objective_names(study)
    now = dt.datetime.now()
    rows = []
    for trial in study.get_trials(deepcopy=False):
        values = trial.values or [math.nan] * len(names)
        start, end = trial.datetime_start, trial.datetime_complete
        # A queued trial (or one claimed but not started) has only its enqueued parameters.
        chosen = trial.params or trial.system_attrs.get("fixed_params", {})
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "seed": trial.user_attrs.get("seed"),
                **{path: chosen.get(path, math.nan) for path in params},
                **{f"value:{name}": value for name, value in zip(names, values, strict=True)},
                "reported_step": trial.user_attrs.get("step"),
                "datetime_start": start.isoformat() if start else None,
                "datetime_complete": end.isoformat() if end else None,
                "duration_s": (end - start).total_seconds() if start and end else math.nan,
                "elapsed_s": (now - start).total_seconds()
                if start and trial.state == TrialState.RUNNING
                else math.nan,
                "worker": trial.user_attrs.get("worker"),
                "device": trial.user_attrs.get("device"),
                "mlflow_run_id": trial.user_attrs.get("mlflow_run_id"),
                "retry_of": trial.system_attrs.get("failed_trial"),
                "fail_reason": trial.user_attrs.get("fail_reason"),
            }
        )
    return pd.DataFrame(rows)


def _objective_names(study: optuna.Study) -> list[str]:
    names = study.metric_names
    if names:
        return list(names)
    count = len(study.directions)
    return ["value"] if count == 1 else [f"value{i}" for i in range(count)]


def read_steps(client: Any, runs: Mapping[int, str]) -> tuple[pd.DataFrame, dict[int, str]]:
    """The whole curves of the trials' runs: one row per trial and step, a column per metric.

    ``runs`` maps trial numbers to MLflow run ids. Returns the tidy frame and, per trial whose
    run could not be read, the reason.
    """
    from mlflow.exceptions import MlflowException

    records: list[tuple[int, str, int, float, int]] = []
    missing: dict[int, str] = {}
    for number, run_id in runs.items():
        try:
            for key in METRICS:
                history = client.get_metric_history(run_id, key)
                records += [(number, key, m.step, m.value, m.timestamp) for m in history]
        except MlflowException as exc:
            missing[number] = f"MLflow run {run_id} unreadable: {exc.message[:200]}"
    columns = ["trial", "step", *METRICS]
    if not records:
        return pd.DataFrame(columns=columns), missing
    long = pd.DataFrame(records, columns=["trial", "key", "step", "value", "at"])
    long = long.sort_values("at", kind="stable")
    # A step logged twice (a retried batch) counts with its latest value.
    wide = long.pivot_table(
        index=["trial", "step"], columns="key", values="value", aggfunc="last"
    ).reset_index()
    wide.columns.name = None
    for key in METRICS:
        if key not in wide:
            wide[key] = math.nan
    return wide[columns].sort_values(["trial", "step"], ignore_index=True), missing


def label_steps(
    steps: pd.DataFrame, trials: pd.DataFrame, params: Sequence[str], fixed: Mapping[str, Any]
) -> pd.DataFrame:
    """``steps`` with each trial's state, seed, parameters and configuration label.

    ``fixed`` gives parameters that were not searched (the sweep's ``alds.rate`` when only
    other fields are), so every row says which ALDS rate it belongs to.
    """
    info = trials[["number", "state", "seed", *params]].rename(columns={"number": "trial"})
    labelled = steps.merge(info, on="trial", how="left")
    for path, value in fixed.items():
        if path not in labelled:
            labelled[path] = value
    labelled["config"] = [config_label(row, params) for _, row in labelled.iterrows()]
    return labelled


def config_label(row: pd.Series | Mapping[str, Any], params: Sequence[str]) -> str:
    """The configuration a trial ran (its searched parameters), as a short stable text;
    empty for a queued placeholder that has no parameters yet."""
    if any(_missing(row[p]) for p in params):
        return ""
    return describe_params({p: _plain(row[p]) for p in params}) or "default"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- the tables


def trials_table(trials: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Every trial with what its curve ended at (the last logged step) and a note."""
    last = (
        steps.sort_values("step")
        .groupby("trial")
        .tail(1)
        .set_index("trial")[
            ["step", "accuracy", "sparsity", "remaining", "params_nonzero", "compression_ratio"]
        ]
        .rename(columns={"step": "last_step"})
    )
    table = trials.join(last, on="number")
    table["note"] = [_note(row) for _, row in table.iterrows()]
    return table


def _note(row: pd.Series) -> str:
    parts = []
    if row["state"] == "RUNNING":
        step = "no step yet" if pd.isna(row["last_step"]) else f"at step {int(row['last_step'])}"
        elapsed = "" if pd.isna(row["elapsed_s"]) else f", {_duration(row['elapsed_s'])}"
        parts.append(f"running, {step}{elapsed}")
    elif row["state"] == "PRUNED":
        parts.append(f"pruned after step {_int_text(row['last_step'])}")
    elif row["state"] == "WAITING":
        parts.append("queued")
    if isinstance(row.get("fail_reason"), str) and row["fail_reason"]:
        parts.append(row["fail_reason"])
    if not pd.isna(row.get("retry_of")):
        parts.append(f"retry of trial {int(row['retry_of'])}")
    if isinstance(row.get("missing"), str):
        parts.append(row["missing"])
    return "; ".join(parts)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _int_text(value: Any) -> str:
    return "-" if pd.isna(value) else str(int(value))


def _phase(step: int) -> str:
    return "dense" if step == 0 else "alds" if step == 1 else "imp"


def _config_params(steps: pd.DataFrame, params: Sequence[str]) -> pd.DataFrame:
    columns = ["config", *dict.fromkeys([*params, RATE])]
    columns = [c for c in columns if c in steps]
    return steps[columns].drop_duplicates("config").set_index("config")


def curve_table(steps: pd.DataFrame, params: Sequence[str]) -> pd.DataFrame:
    """Per configuration and step: n seeds, accuracy mean and std, sparsity and sizes (means).

    ``steps`` is a labelled frame (:func:`label_steps`) of the trials to aggregate.
    """
    spread = ("accuracy", "val_accuracy", "loss", "sparsity")
    aggregations: dict[str, tuple[str, str]] = {"n": ("trial", "nunique")}
    for key in METRICS:
        aggregations[f"{key}_mean"] = (key, "mean")
        if key in spread:
            aggregations[f"{key}_std"] = (key, "std")
    if steps.empty:
        keys = ["config", *params, RATE, "step", "phase", *aggregations]
        return pd.DataFrame(columns=list(dict.fromkeys(keys)))
    table = steps.groupby(["config", "step"]).agg(**aggregations).reset_index()
    table = table.join(_config_params(steps, params), on="config")
    table["phase"] = table["step"].map(_phase)
    front = ["config", *[c for c in dict.fromkeys([*params, RATE]) if c in table], "step", "phase"]
    table = table[front + [c for c in table if c not in front]]
    return table.sort_values([*front[1:-2], "step"], ignore_index=True)


def baseline_pairs(
    configs: pd.DataFrame, params: Sequence[str], defaults: Mapping[str, Any]
) -> dict[str, str]:
    """For each ALDS configuration, the IMP-only configuration (``alds.rate`` 0) to compare with.

    ``configs`` has a ``config`` column, the parameters and ``alds.rate``. The baseline with the
    same other parameters wins; else the one at the sweep's defaults (the enqueued baseline);
    else the first baseline.
    """
    others = [p for p in params if p != RATE]
    unique = configs.drop_duplicates("config")
    baselines = unique[unique[RATE] == 0]
    if baselines.empty:
        return {}

    def key(row: pd.Series | Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(_plain(row[p]) for p in others)

    by_others = {key(row): row["config"] for _, row in baselines.iterrows()}
    fallback = by_others.get(tuple(defaults.get(p) for p in others), baselines["config"].iloc[0])
    return {
        row["config"]: by_others.get(key(row), fallback)
        for _, row in unique[unique[RATE] != 0].iterrows()
    }


def _compressed_curve(trial: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Sparsity and accuracy of one trial's compressed steps (1 and later), increasing.

    Step 0 (dense) is left out: it is the same network in both arms. Of two steps at the same
    sparsity the later one counts (it had more training).
    """
    curve = trial[trial["step"] >= 1].sort_values("step")
    curve = curve.drop_duplicates("sparsity", keep="last").sort_values("sparsity")
    return curve["sparsity"].to_numpy(float), curve["accuracy"].to_numpy(float)


def _interpolate(x: np.ndarray, y: np.ndarray, level: float) -> float:
    """Accuracy at ``level`` sparsity, linear between the measured steps (as objectives are);
    NaN outside the measured range: a curve is never extrapolated."""
    if len(x) == 0:
        return math.nan
    if x[0] - _LEVEL_SLACK <= level < x[0]:
        level = x[0]
    if x[-1] < level <= x[-1] + _LEVEL_SLACK:
        level = x[-1]
    return float(np.interp(level, x, y, left=math.nan, right=math.nan))


def _per_seed(steps: pd.DataFrame, config: str, level: float) -> pd.Series:
    values = {
        seed: _interpolate(*_compressed_curve(trial), level)
        for seed, trial in steps[steps["config"] == config].groupby("seed")
    }
    return pd.Series(values, dtype=float).dropna()


def _std(values: pd.Series) -> float:
    return float(values.std()) if len(values) > 1 else math.nan


def versus_baseline(steps: pd.DataFrame, pairs: Mapping[str, str]) -> pd.DataFrame:
    """Each ALDS configuration against its baseline at matched sparsity, per compressed step.

    The levels are the ALDS configuration's mean sparsities at its steps 1, 2, ...; both arms'
    curves are interpolated there seed by seed. The difference is paired by seed (a seed's two
    arms share θ0 and the dense network): its mean and std over the seeds both arms have. A
    level beyond the baseline's curve has no baseline value (never extrapolated).
    """
    rows = []
    for config, baseline in pairs.items():
        own = steps[(steps["config"] == config) & (steps["step"] >= 1)]
        levels = own.groupby("step")[["sparsity", "remaining"]].mean()
        for step, (level, remaining) in levels.iterrows():
            rows.append(
                {
                    "config": config,
                    "baseline": baseline,
                    "step": int(step),
                    "sparsity": level,
                    "remaining": remaining,
                    **_matched(steps, config, baseline, level),
                }
            )
    columns = ["config", "baseline", "step", "sparsity", "remaining", *_MATCHED]
    return pd.DataFrame(rows, columns=columns)


_MATCHED = [
    "accuracy_mean",
    "accuracy_std",
    "n",
    "baseline_accuracy_mean",
    "baseline_accuracy_std",
    "baseline_n",
    "difference_mean",
    "difference_std",
    "paired_n",
]


def _matched(steps: pd.DataFrame, config: str, baseline: str | None, level: float) -> dict:
    """One configuration against its baseline at one sparsity, interpolated seed by seed."""
    ours = _per_seed(steps, config, level)
    theirs = _per_seed(steps, baseline, level) if baseline else pd.Series(dtype=float)
    common = ours.index.intersection(theirs.index)
    paired = ours[common] - theirs[common]
    return {
        "accuracy_mean": ours.mean() if len(ours) else math.nan,
        "accuracy_std": _std(ours),
        "n": len(ours),
        "baseline_accuracy_mean": theirs.mean() if len(theirs) else math.nan,
        "baseline_accuracy_std": _std(theirs),
        "baseline_n": len(theirs),
        "difference_mean": paired.mean() if len(paired) else math.nan,
        "difference_std": _std(paired),
        "paired_n": len(paired),
    }


def at_sparsity(
    steps: pd.DataFrame, configs: Sequence[str], pairs: Mapping[str, str], levels: Sequence[float]
) -> pd.DataFrame:
    """Every configuration at the same fixed sparsity levels, for a table across a paper.

    Accuracy per level as in :func:`versus_baseline` (interpolated seed by seed, never
    extrapolated: a configuration that never had a network at a level has no value there), and
    for ALDS configurations the paired difference to their baseline. Rows by level, then in
    the order of ``configs``.
    """
    rows = [
        {
            "config": config,
            "baseline": pairs.get(config),
            "sparsity": level,
            "remaining": 1.0 - level,
            **_matched(steps, config, pairs.get(config), level),
        }
        for level in levels
        for config in configs
    ]
    return pd.DataFrame(rows, columns=["config", "baseline", "sparsity", "remaining", *_MATCHED])


def tolerance_table(steps: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Per configuration: the highest sparsity up to which accuracy stays within ``tolerance``.

    Per seed: walk the measured steps in order from the dense network (step 0, that seed's
    reference) and take the highest sparsity before the first step more than ``tolerance``
    below it. ``to_end`` counts the seeds that never dropped (their value is a lower bound).
    """
    rows = []
    for config, group in steps.groupby("config"):
        reached: dict[Any, float] = {}
        to_end = 0
        for seed, trial in group.groupby("seed"):
            curve = trial.sort_values("step")
            dense = curve.loc[curve["step"] == 0, "accuracy"]
            if dense.empty:
                continue
            floor = float(dense.iloc[0]) - tolerance - 1e-12
            within = (curve["accuracy"] >= floor).to_numpy()
            cut = len(within) if within.all() else int(np.argmin(within))
            to_end += int(within.all())
            reached[seed] = float(curve["sparsity"].iloc[:cut].max())
        values = pd.Series(reached, dtype=float)
        rows.append(
            {
                "config": config,
                "max_sparsity_within_mean": values.mean() if len(values) else math.nan,
                "max_sparsity_within_std": _std(values),
                "within_n": len(values),
                "within_to_end": to_end,
            }
        )
    columns = [
        "config",
        "max_sparsity_within_mean",
        "max_sparsity_within_std",
        "within_n",
        "within_to_end",
    ]
    return pd.DataFrame(rows, columns=columns)


def summary_table(
    curves: pd.DataFrame,
    versus: pd.DataFrame,
    within: pd.DataFrame,
    pairs: Mapping[str, str],
    params: Sequence[str],
) -> pd.DataFrame:
    """One row per configuration: the seed's question answered.

    The final accuracy and sparsity, the difference to the baseline at the highest sparsity
    both curves reach, and the highest sparsity within the tolerance of the dense network.
    """
    columns = [
        "config",
        *dict.fromkeys([*params, RATE]),
        "role",
        "baseline",
        "n",
        "final_step",
        "final_sparsity",
        "final_accuracy_mean",
        "final_accuracy_std",
        "matched_sparsity",
        "difference_mean",
        "difference_std",
        "paired_n",
        "max_sparsity_within_mean",
        "max_sparsity_within_std",
        "within_n",
        "within_to_end",
        "within_lower_bound",
    ]
    if curves.empty:
        return pd.DataFrame(columns=columns)
    final = curves.sort_values("step").groupby("config").tail(1).set_index("config")
    rows = []
    for config, row in final.iterrows():
        matched = versus[(versus["config"] == config) & versus["difference_mean"].notna()]
        top = matched.sort_values("sparsity").tail(1)
        rows.append(
            {
                "config": config,
                **{p: row[p] for p in dict.fromkeys([*params, RATE]) if p in row},
                "role": "IMP only" if row.get(RATE, math.nan) == 0 else "ALDS + IMP",
                "baseline": pairs.get(config),
                "n": row["n"],
                "final_step": row["step"],
                "final_sparsity": row["sparsity_mean"],
                "final_accuracy_mean": row["accuracy_mean"],
                "final_accuracy_std": row["accuracy_std"],
                "matched_sparsity": top["sparsity"].iloc[0] if len(top) else math.nan,
                "difference_mean": top["difference_mean"].iloc[0] if len(top) else math.nan,
                "difference_std": top["difference_std"].iloc[0] if len(top) else math.nan,
                "paired_n": top["paired_n"].iloc[0] if len(top) else 0,
            }
        )
    table = pd.DataFrame(rows).merge(within, on="config", how="left")
    # Every seed stayed within the tolerance to its last step: the true value may be higher.
    table["within_lower_bound"] = (table["within_n"] > 0) & (
        table["within_to_end"] == table["within_n"]
    )
    return table[[c for c in columns if c in table]].sort_values(
        [c for c in dict.fromkeys([*params, RATE]) if c in table], ignore_index=True
    )


def best_table(
    trials: pd.DataFrame,
    objectives: Sequence[str],
    directions: Sequence[str],
    params: Sequence[str],
    *,
    front: Iterable[int] = (),
    top: int = 10,
) -> pd.DataFrame:
    """The best configurations by mean objective over seeds, or the Pareto-front trials.

    One objective: configurations of complete trials ranked by the mean value (std, n, and the
    best trial of each). Several: the trials numbered in ``front`` (Optuna's Pareto front).
    """
    complete = trials[trials["state"] == "COMPLETE"]
    if len(objectives) > 1:
        keep = ["number", "seed", *params, *[f"value:{o}" for o in objectives]]
        keep += ["accuracy", "sparsity", "params_nonzero", "compression_ratio"]
        table = complete[complete["number"].isin(list(front))][keep]
        return table.sort_values(f"value:{objectives[0]}", ignore_index=True)
    value = f"value:{objectives[0]}"
    maximize = directions[0] == "maximize"
    columns = ["rank", "config", *params, "n", "value_mean", "value_std", "best_trial"]
    columns += ["accuracy_mean", "sparsity_mean", "params_nonzero_mean"]
    if complete.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for config, group in complete.groupby("config"):
        ranked = group.sort_values(value, ascending=not maximize)
        rows.append(
            {
                "config": config,
                **{p: group[p].iloc[0] for p in params},
                "n": len(group),
                "value_mean": group[value].mean(),
                "value_std": _std(group[value]),
                "best_trial": int(ranked["number"].iloc[0]),
                "accuracy_mean": group["accuracy"].mean(),
                "sparsity_mean": group["sparsity"].mean(),
                "params_nonzero_mean": group["params_nonzero"].mean(),
            }
        )
    table = pd.DataFrame(rows).sort_values("value_mean", ascending=not maximize, ignore_index=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table[columns].head(top)


# --------------------------------------------------------------------------- the whole report


def build(
    study: optuna.Study,
    config: SweepConfig,
    *,
    tracking_uri: str | None = None,
    tolerance: float = TOLERANCE,
    levels: Sequence[float] = LEVELS,
) -> Report:
    """Read the study and its runs and compute every table and figure of the report.

    ``tracking_uri`` defaults to the one the sweep recorded. Raises :class:`ConfigError` for an
    empty study, an unreachable tracking store, or a study none of whose runs is found there.
    """
    params = list(config.search.space)
    trials = read_trials(study, params)
    if trials.empty:
        raise ConfigError(
            f"study '{study.study_name}' has no trials yet: run `orchestrate sweep` first"
        )
    client, tracking_uri = open_tracking(study, tracking_uri)
    runs = {
        int(row.number): row.mlflow_run_id
        for row in trials.itertuples()
        if isinstance(row.mlflow_run_id, str)
    }
    parent = study.user_attrs.get(PARENT_ATTR)
    if parent and any(run_id.startswith(PENDING) for run_id in runs.values()):
        # Runs created during a tracking outage are known to the study by a provisional id.
        by_number = trial_runs(client, parent)
        runs = {n: by_number.get(n, r) if r.startswith(PENDING) else r for n, r in runs.items()}
        trials["mlflow_run_id"] = trials["number"].map(lambda n: runs.get(int(n)))
    steps, missing = read_steps(client, runs)
    if runs and len(missing) == len(runs):
        raise ConfigError(
            f"none of the {len(runs)} MLflow runs of study '{study.study_name}' is in the "
            f"tracking store {tracking_uri}: is --tracking-uri the sweep's?"
        )
    if steps.empty:
        counts = trials["state"].value_counts().to_dict()
        raise ConfigError(
            f"study '{study.study_name}' has {len(trials)} trials but none has logged a step "
            f"yet ({', '.join(f'{v} {k.lower()}' for k, v in counts.items())}); nothing to "
            "report"
        )
    trials["missing"] = trials["number"].map(missing)
    fixed = {RATE: config.alds.rate} if RATE not in params else {}
    steps = label_steps(steps, trials, params, fixed)
    table = trials_table(trials, steps).drop(columns="missing")
    table["config"] = [config_label(row, params) for _, row in table.iterrows()]
    complete = steps[steps["state"] == "COMPLETE"]
    curves = curve_table(complete, params)
    pairs = baseline_pairs(curves, params, flatten(config))
    versus = versus_baseline(complete, pairs)
    within = tolerance_table(complete, tolerance)
    levelled = at_sparsity(complete, list(curves["config"].unique()), pairs, levels)
    summary = summary_table(curves, versus, within, pairs, params)
    objectives = _objective_names(study)
    directions = [d.name.lower() for d in study.directions]
    front = [t.number for t in study.best_trials] if len(directions) > 1 else []
    best = best_table(table, objectives, directions, params, front=front)

    counts = {state.name: 0 for state in TrialState}
    counts.update(trials["state"].value_counts().to_dict())
    notes = _notes(table, curves, pairs, counts)
    report = Report(
        study=study.study_name,
        params=params,
        objectives=objectives,
        directions=directions,
        counts=counts,
        notes=notes,
        tables={
            "summary": summary,
            "versus_baseline": versus,
            "at_sparsity": levelled,
            "curves": curves,
            "best": best,
            "trials": table,
            "steps": steps.drop(columns="config"),
        },
        tracking_uri=tracking_uri,
        parent_run_id=study.user_attrs.get(PARENT_ATTR),
        tolerance=tolerance,
    )
    title = f"{study.study_name}: {config.model} on {config.dataset.name}"
    report.figures = {
        name: figure
        for name, figure in {
            "accuracy_vs_remaining": plot_accuracy_vs_remaining(curves, params, title=title),
            "accuracy_vs_alds_rate": plot_accuracy_vs_rate(curves, params, title=title),
            "heatmap_rate_fraction": plot_heatmap(curves, params, title=title),
        }.items()
        if figure is not None
    }
    return report


def _notes(
    trials: pd.DataFrame, curves: pd.DataFrame, pairs: Mapping[str, str], counts: Mapping[str, int]
) -> list[str]:
    notes = []
    for state, verb in (("RUNNING", "still running"), ("PRUNED", "pruned"), ("FAIL", "failed")):
        rows = trials[trials["state"] == state]
        if len(rows):
            listed = "; ".join(
                f"{int(r.number)} ({_shorten(r.note, NOTE_LIMIT)})" for r in rows.itertuples()
            )
            notes.append(f"{len(rows)} trial(s) {verb}, not in the aggregates: {listed}")
    if counts.get("WAITING"):
        notes.append(f"{counts['WAITING']} trial(s) queued, not started")
    if curves.empty:
        notes.append("no trial is complete yet: the aggregate tables are empty")
    elif not pairs:
        if (curves[RATE] == 0).all():
            notes.append("every configuration is IMP only (alds.rate 0): nothing to compare")
        else:
            notes.append(
                "no complete IMP-only baseline (alds.rate 0): ALDS configurations cannot be "
                "compared at matched sparsity"
            )
    return notes


# --------------------------------------------------------------------------- presentation


@dataclass(frozen=True)
class _Column:
    header: str
    source: str
    kind: str = "text"  # text, param, int, pct, points, ratio, seconds
    std: str | None = None
    paper: bool = True  # shown in LaTeX (run ids and notes are not)
    limit: int | None = None  # characters shown of a long text (CSV and JSON keep it whole)
    bound: str | None = None  # a column that, when true, makes the value a lower bound (≥)


_NUMERIC = {"param", "int", "pct", "points", "ratio", "seconds"}


def _columns(name: str, report: Report) -> list[_Column]:
    params = [_Column(p, p, "param") for p in report.params]
    rate = [] if RATE in report.params else [_Column(RATE, RATE, "param")]
    within = f"max sparsity within {100 * report.tolerance:g} pt of dense (%)"
    match name:
        case "summary":
            return [
                *params,
                *rate,
                _Column("arm", "role"),
                _Column("n", "n", "int"),
                _Column("final sparsity (%)", "final_sparsity", "pct"),
                _Column("final accuracy (%)", "final_accuracy_mean", "pct", "final_accuracy_std"),
                _Column("matched sparsity (%)", "matched_sparsity", "pct"),
                _Column("Δ vs IMP only there (pt)", "difference_mean", "points", "difference_std"),
                _Column(
                    within,
                    "max_sparsity_within_mean",
                    "pct",
                    "max_sparsity_within_std",
                    bound="within_lower_bound",
                ),
            ]
        case "versus_baseline":
            return [
                _Column("configuration", "config"),
                _Column("step", "step", "int"),
                _Column("sparsity (%)", "sparsity", "pct"),
                _Column("ALDS + IMP (%)", "accuracy_mean", "pct", "accuracy_std"),
                _Column("IMP only (%)", "baseline_accuracy_mean", "pct", "baseline_accuracy_std"),
                _Column("Δ (pt)", "difference_mean", "points", "difference_std"),
                _Column("seeds", "paired_n", "int"),
            ]
        case "at_sparsity":
            return [
                _Column("sparsity (%)", "sparsity", "pct"),
                _Column("configuration", "config"),
                _Column("accuracy (%)", "accuracy_mean", "pct", "accuracy_std"),
                _Column("n", "n", "int"),
                _Column("IMP only (%)", "baseline_accuracy_mean", "pct", "baseline_accuracy_std"),
                _Column("Δ (pt)", "difference_mean", "points", "difference_std"),
                _Column("seeds", "paired_n", "int"),
            ]
        case "curves":
            return [
                *params,
                *rate,
                _Column("step", "step", "int"),
                _Column("phase", "phase"),
                _Column("n", "n", "int"),
                _Column("accuracy (%)", "accuracy_mean", "pct", "accuracy_std"),
                _Column("sparsity (%)", "sparsity_mean", "pct"),
                _Column("nonzero params", "params_nonzero_mean", "int"),
                _Column("compression (×)", "compression_ratio_mean", "ratio"),
            ]
        case "best" if len(report.objectives) > 1:
            return [
                _Column("trial", "number", "int"),
                _Column("seed", "seed", "int"),
                *params,
                *[_objective(o, f"value:{o}") for o in report.objectives],
                _Column("accuracy (%)", "accuracy", "pct"),
                _Column("sparsity (%)", "sparsity", "pct"),
                _Column("nonzero params", "params_nonzero", "int"),
            ]
        case "best":
            return [
                _Column("rank", "rank", "int"),
                *params,
                _Column("n", "n", "int"),
                _objective(report.objectives[0], "value_mean", "value_std"),
                _Column("best trial", "best_trial", "int"),
                _Column("final accuracy (%)", "accuracy_mean", "pct"),
                _Column("final sparsity (%)", "sparsity_mean", "pct"),
                _Column("nonzero params", "params_nonzero_mean", "int"),
            ]
        case "trials":
            return [
                _Column("trial", "number", "int"),
                _Column("state", "state"),
                _Column("seed", "seed", "int"),
                *params,
                *[_objective(o, f"value:{o}") for o in report.objectives],
                _Column("last step", "last_step", "int"),
                _Column("accuracy (%)", "accuracy", "pct"),
                _Column("sparsity (%)", "sparsity", "pct"),
                _Column("nonzero params", "params_nonzero", "int"),
                _Column("compression (×)", "compression_ratio", "ratio"),
                _Column("duration (s)", "duration_s", "seconds"),
                _Column("MLflow run", "mlflow_run_id", paper=False),
                _Column("note", "note", paper=False, limit=NOTE_LIMIT),
            ]
    raise ValueError(f"no presentation for table '{name}'")


def _objective(name: str, source: str, std: str | None = None) -> _Column:
    """An objective's column, in the unit of its metric (``accuracy@0.9`` is an accuracy)."""
    metric = name.split("@", 1)[0]
    kind = {"accuracy": "pct", "val_accuracy": "pct", "sparsity": "pct", "params_nonzero": "int"}
    unit = {"pct": " (%)"}.get(kind.get(metric, "param"), "")
    return _Column(f"objective {name}{unit}", source, kind.get(metric, "param"), std)


PRESENTED = ("summary", "at_sparsity", "versus_baseline", "curves", "best", "trials")
_TITLES = {
    "summary": "ALDS + IMP against IMP only",
    "at_sparsity": "At fixed sparsities",
    "versus_baseline": "At matched sparsity, step by step",
    "curves": "Curves (mean ± std over seeds)",
    "best": "Best configurations",
    "trials": "Trials",
}


def _shorten(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _number(value: Any, kind: str) -> str:
    match kind:
        case "pct":
            return f"{100 * value:.2f}"
        case "points":
            return f"{100 * value:+.2f}"
        case "int":
            return f"{round(value):,}"
        case "ratio":
            return f"{value:.2f}"
        case "seconds":
            return f"{value:.0f}"
        case "param":
            return f"{value:.4g}" if isinstance(value, float | np.floating) else str(value)
    return str(value)


def _cell(row: pd.Series, column: _Column) -> str:
    value = row.get(column.source)
    if _missing(value) or value == "":
        return "–"
    text = _shorten(_number(value, column.kind), column.limit)
    spread = row.get(column.std) if column.std else None
    if spread is not None and not _missing(spread):
        text += f" ± {_number(spread, 'pct' if column.kind == 'points' else column.kind)}"
    if column.bound and not _missing(row.get(column.bound)) and bool(row.get(column.bound)):
        text = "≥ " + text
    return text


def present(report: Report, name: str, *, paper: bool = False) -> pd.DataFrame:
    """A table as rounded text cells with ``mean ± std``, ready to paste.

    ``paper`` drops the columns a paper has no use for (run ids, notes).
    """
    columns = [c for c in _columns(name, report) if c.paper or not paper]
    table = report.tables[name]
    if name == "versus_baseline":
        table = table.assign(config=table["config"].map(_arm_label(report)))
    rows = [[_cell(row, c) for c in columns] for _, row in table.iterrows()]
    return pd.DataFrame(rows, columns=[c.header for c in columns], dtype=object)


def _arm_label(report: Report) -> Mapping[str, str]:
    curves = report.tables["curves"]
    others = [p for p in report.params if p != RATE]
    labels = {}
    for _, row in curves.drop_duplicates("config").iterrows():
        text = f"ALDS {row[RATE]:g}"
        if others:
            text += " (" + ", ".join(f"{p}={_number(row[p], 'param')}" for p in others) + ")"
        labels[row["config"]] = text
    return labels


def _aligned(name: str, report: Report, paper: bool) -> list[bool]:
    return [c.kind in _NUMERIC for c in _columns(name, report) if c.paper or not paper]


def markdown_table(table: pd.DataFrame, numeric: Sequence[bool]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned."""

    def line(cells: Iterable[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if right else "---" for right in numeric) + "|"
    return "\n".join([line(table.columns), rule, *(line(row) for row in table.to_numpy())])


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
    "–": "--",
    "≥": r"$\geq$",
    "…": r"\ldots{}",
}


def latex_escape(text: str) -> str:
    """``text`` safe in a LaTeX tabular (pdfLaTeX: the report's symbols as math)."""
    return "".join(_LATEX.get(char, char) for char in text)


def latex_table(table: pd.DataFrame, numeric: Sequence[bool]) -> str:
    """A booktabs ``tabular`` fragment to ``\\input`` in a paper."""
    escaped = table.map(latex_escape)
    escaped.columns = [latex_escape(c) for c in table.columns]
    spec = "".join("r" if right else "l" for right in numeric)
    return escaped.to_latex(index=False, escape=False, column_format=spec)


def parse_formats(text: str) -> list[str]:
    """``csv,md,latex,html,json`` → a list; unknown names are an error naming them."""
    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(
            f"unknown report format(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(FORMATS)}"
        )
    return formats


def parse_levels(text: str) -> tuple[float, ...]:
    """``0.5,0.9`` → sparsity levels of the at_sparsity table, each in (0, 1)."""
    try:
        levels = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        levels = ()
    if not levels or not all(0.0 < level < 1.0 for level in levels):
        raise ConfigError(
            f"--sparsity-levels '{text}': give comma-separated sparsities in (0, 1), "
            "e.g. 0.5,0.8,0.9,0.95"
        )
    return levels


def write(report: Report, output: Path, formats: Sequence[str]) -> list[Path]:
    """Write the report's tables in ``formats`` and its figures (PNG) into ``output``.

    CSV and JSON hold every table complete and unrounded (``<table>.csv``/``.json``, the raw
    steps included); LaTeX writes one booktabs fragment per table (``<table>.tex``); Markdown
    and HTML one document each (``report.md``, ``report.html``) with tables and figures.
    """
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in report.figures.items():
        path = output / f"{name}.png"
        figure.savefig(path, dpi=150)
        written.append(path)
    for name, table in report.tables.items():
        if "csv" in formats:
            table.to_csv(output / f"{name}.csv", index=False)
            written.append(output / f"{name}.csv")
        if "json" in formats:
            (output / f"{name}.json").write_text(_json_records(table))
            written.append(output / f"{name}.json")
        if "latex" in formats and name in PRESENTED:
            path = output / f"{name}.tex"
            path.write_text(
                latex_table(present(report, name, paper=True), _aligned(name, report, True))
            )
            written.append(path)
    if "md" in formats:
        written.append(output / "report.md")
        written[-1].write_text(_markdown_document(report))
    if "html" in formats:
        written.append(output / "report.html")
        written[-1].write_text(_html_document(report, output))
    return written


def _json_records(table: pd.DataFrame) -> str:
    """The rows as a JSON list of objects, floats exact (pandas' writer keeps 15 digits)."""

    def plain(value: Any) -> Any:
        value = _plain(value)
        return None if _missing(value) else value

    rows = [{k: plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
    return json.dumps(rows, indent=1, allow_nan=False)


_FIGURE_TITLES = {
    "accuracy_vs_remaining": "Accuracy against remaining weights",
    "accuracy_vs_alds_rate": "Accuracy against the ALDS rate at fixed IMP cycles",
    "heatmap_rate_fraction": "Final accuracy over ALDS rate and prune fraction",
}


def _introduction(report: Report) -> list[str]:
    directions = ", ".join(
        f"{d} {o}" for d, o in zip(report.directions, report.objectives, strict=True)
    )
    parent = f", parent run `{report.parent_run_id}`" if report.parent_run_id else ""
    return [
        f"Study `{report.study}` (objective: {directions}); MLflow `{report.tracking_uri}`"
        f"{parent}.",
        f"{report.status()}. Aggregates use complete trials only; n counts the seeds behind a "
        "number, ± is the standard deviation over seeds; accuracies and sparsities in percent, "
        "differences in accuracy points (Δ > 0: ALDS + IMP is better than IMP only at the same "
        "sparsity).",
    ]


def _markdown_document(report: Report) -> str:
    lines = [f"# Sweep report: {report.study}", "", *_introduction(report), ""]
    lines += [f"- {note}" for note in report.notes] + ([""] if report.notes else [])
    figures = list(report.figures)
    if "accuracy_vs_remaining" in figures:
        lines += [f"![{_FIGURE_TITLES['accuracy_vs_remaining']}](accuracy_vs_remaining.png)", ""]
    for name in PRESENTED:
        lines += [f"## {_TITLES[name]}", ""]
        lines += [markdown_table(present(report, name), _aligned(name, report, False)), ""]
        if name == "summary":
            for figure in figures[1:]:
                lines += [f"![{_FIGURE_TITLES[figure]}]({figure}.png)", ""]
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}"
    "table{border-collapse:collapse;margin:1em 0}"
    "th,td{padding:.25em .6em;border-bottom:1px solid #ddd}"
    "th{border-bottom:2px solid #444;text-align:left}td.n{text-align:right}"
    "img{max-width:100%}"
)


def _html_document(report: Report, output: Path) -> str:
    """One self-contained page (figures embedded), to share or put on a team page."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Sweep report: {html.escape(report.study)}</title><style>{_CSS}</style>",
        f"</head><body><h1>Sweep report: {html.escape(report.study)}</h1>",
        *(f"<p>{html.escape(text)}</p>" for text in _introduction(report)),
    ]
    if report.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
    for name in report.figures:
        data = base64.b64encode((output / f"{name}.png").read_bytes()).decode()
        title = html.escape(_FIGURE_TITLES[name])
        parts.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{data}'>")
    for name in PRESENTED:
        table = present(report, name)
        numeric = _aligned(name, report, False)
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td class='n'>{html.escape(v)}</td>" if right else f"<td>{html.escape(v)}</td>"
                for v, right in zip(row, numeric, strict=True)
            )
            + "</tr>"
            for row in table.to_numpy()
        )
        parts.append(
            f"<h2>{html.escape(_TITLES[name])}</h2>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def log_artifacts(tracking_uri: str, run_id: str, paths: Iterable[Path]) -> None:
    """Log the written files as artifacts of the sweep's parent run, under ``report/``."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        for path in paths:
            client.log_artifact(run_id, str(path), "report")
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"could not log the report to MLflow run {run_id}: {exc}") from None


# --------------------------------------------------------------------------- figures


def _colors(rates: Iterable[float]) -> dict[float, Any]:
    import matplotlib

    compressed = sorted({float(r) for r in rates if r > 0})
    cmap = matplotlib.colormaps["viridis"]
    span = max(len(compressed) - 1, 1)
    return {r: cmap(0.85 * i / span) for i, r in enumerate(compressed)}


def _others_label(row: pd.Series | Mapping[str, Any], others: Sequence[str]) -> str:
    return ", ".join(f"{p.split('.')[-1]} {_number(row[p], 'param')}" for p in others)


def _dense_lines(axis: Any, curves: pd.DataFrame, tolerance: float = TOLERANCE) -> None:
    dense = curves.loc[curves["step"] == 0, "accuracy_mean"]
    if dense.empty:
        return
    level = 100 * float(dense.mean())
    axis.axhline(level, color="0.4", linestyle=":", linewidth=1, label="dense network")
    axis.axhline(
        level - 100 * tolerance,
        color="0.7",
        linestyle=":",
        linewidth=1,
        label=f"dense − {100 * tolerance:g} point",
    )


def _thin(levels: Sequence[float], count: int = 9) -> list[float]:
    """At most ``count`` of ``levels`` (descending, positive), evenly spread on a log scale."""
    if len(levels) <= count:
        return list(levels)
    logs = np.log(levels)
    targets = np.linspace(logs[0], logs[-1], count)
    return sorted({levels[int(np.argmin(abs(logs - t)))] for t in targets}, reverse=True)


def plot_accuracy_vs_remaining(
    curves: pd.DataFrame, params: Sequence[str], *, title: str = ""
) -> Figure | None:
    """Accuracy against remaining weights (log, decreasing), one line per configuration.

    The IMP-only baseline is the thick black line; bands are ± one std over seeds.
    """
    if curves.empty:
        return None
    from matplotlib.ticker import FuncFormatter, NullFormatter

    figure = Figure(figsize=(9.0, 4.8), layout="constrained")
    axis = figure.add_subplot()
    others = [p for p in params if p != RATE]
    colors = _colors(curves[RATE])
    styles = ["-", "--", "-.", ":"]
    other_values = curves.drop_duplicates(others)[others] if others else pd.DataFrame()
    style_of = {
        tuple(row): styles[i % len(styles)] for i, row in enumerate(other_values.to_numpy())
    }
    order = curves.drop_duplicates("config").sort_values([RATE, *others])
    for _, head in order.iterrows():
        curve = curves[curves["config"] == head["config"]].sort_values("step")
        x = 100 * curve["remaining_mean"].to_numpy(float)
        y = 100 * curve["accuracy_mean"].to_numpy(float)
        spread = 100 * curve["accuracy_std"].fillna(0).to_numpy(float)
        baseline = head[RATE] == 0
        label = "IMP only (baseline)" if baseline else f"ALDS rate {head[RATE]:g} + IMP"
        if others:
            label += f" ({_others_label(head, others)})"
        color = "black" if baseline else colors[float(head[RATE])]
        style = style_of.get(tuple(head[others]), "-") if others else "-"
        axis.plot(
            x,
            y,
            style,
            marker="o",
            markersize=4,
            color=color,
            linewidth=2.6 if baseline else 1.6,
            zorder=3 if baseline else 2,
            label=label,
        )
        if (curve["n"] > 1).any():
            axis.fill_between(x, y - spread, y + spread, color=color, alpha=0.12, linewidth=0)
    _dense_lines(axis, curves)
    axis.set_xscale("log")
    reference = curves[curves[RATE] == 0] if (curves[RATE] == 0).any() else curves
    levels = sorted({round(v, 3) for v in 100 * reference["remaining_mean"] if v > 0}, reverse=True)
    axis.set_xticks(_thin(levels))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.invert_xaxis()
    axis.set_xlabel("weights remaining (%, log scale)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(title or "Accuracy against remaining weights")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _step_label(step: int, rows: pd.DataFrame) -> str:
    if step == 1:
        return "after ALDS (before IMP)"
    return f"IMP cycle {step - 1} (≈{100 * rows['remaining_mean'].mean():.3g}% left)"


def plot_accuracy_vs_rate(
    curves: pd.DataFrame, params: Sequence[str], *, title: str = "", panels: int = 4
) -> Figure | None:
    """Accuracy against the ALDS rate after ALDS and at fixed IMP cycles (± std over seeds).

    One panel per combination of the other searched parameters that has several rates (at
    most ``panels``); ``None`` when no combination has two rates.
    """
    if curves.empty or RATE not in params:
        return None
    others = [p for p in params if p != RATE]
    groups = [(None, curves)] if not others else list(curves.groupby(others, sort=True))
    groups = [(key, g) for key, g in groups if g[RATE].nunique() >= 2][:panels]
    if not groups:
        return None
    import matplotlib

    steps = sorted(s for s in curves["step"].unique() if s >= 1)
    if len(steps) > 5:
        steps = sorted({steps[int(i)] for i in np.linspace(0, len(steps) - 1, 5)})
    figure = Figure(figsize=(5.5 * len(groups) + 2.5, 4.2), layout="constrained")
    axes = figure.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    cmap = matplotlib.colormaps["plasma"]
    rates = curves[RATE].unique()
    # Side by side, so the error bars stay apart (only when there are error bars to separate).
    dodge = 0.012 * (rates.max() - rates.min()) if (curves["n"] > 1).any() else 0.0
    for axis, (key, group) in zip(axes, groups, strict=True):
        for i, step in enumerate(steps):
            rows = group[group["step"] == step].sort_values(RATE)
            axis.errorbar(
                rows[RATE] + dodge * (i - (len(steps) - 1) / 2),
                100 * rows["accuracy_mean"],
                yerr=100 * rows["accuracy_std"].fillna(0),
                marker="o",
                markersize=4,
                capsize=3,
                color=cmap(0.85 * i / max(len(steps) - 1, 1)),
                label=_step_label(int(step), rows),
            )
        _dense_lines(axis, group)
        axis.set_xlabel("ALDS rate (fraction of weights removed by ALDS)")
        axis.grid(True, alpha=0.3)
        if key is not None:
            values = key if isinstance(key, tuple) else (key,)
            axis.set_title(_others_label(dict(zip(others, values, strict=True)), others))
    axes[0].set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.suptitle(title or "Accuracy against the ALDS rate")
    return figure


def plot_heatmap(curves: pd.DataFrame, params: Sequence[str], *, title: str = "") -> Figure | None:
    """Final accuracy (mean over seeds) over ALDS rate and prune fraction, 2-D sweeps only.

    A full grid is drawn as cells annotated with accuracy and weights left; scattered samples
    (a sampler other than grid) as coloured points.
    """
    if curves.empty or RATE not in params or FRACTION not in params:
        return None
    final = curves.sort_values("step").groupby("config").tail(1)
    if final[RATE].nunique() < 2 or final[FRACTION].nunique() < 2:
        return None
    figure = Figure(figsize=(6.5, 4.8), layout="constrained")
    axis = figure.add_subplot()
    accuracy = final.pivot_table(index=FRACTION, columns=RATE, values="accuracy_mean")
    remaining = final.pivot_table(index=FRACTION, columns=RATE, values="remaining_mean")
    label = "final test accuracy (%), mean over seeds"
    if accuracy.notna().all().all():
        image = axis.imshow(100 * accuracy.to_numpy(), origin="lower", aspect="auto")
        axis.set_xticks(range(accuracy.shape[1]), [f"{v:g}" for v in accuracy.columns])
        axis.set_yticks(range(accuracy.shape[0]), [f"{v:g}" for v in accuracy.index])
        middle = 100 * np.nanmean(accuracy.to_numpy())
        for (i, j), value in np.ndenumerate(100 * accuracy.to_numpy()):
            left = 100 * remaining.to_numpy()[i, j]
            axis.text(
                j,
                i,
                f"{value:.1f}\n{left:.3g}% left",
                ha="center",
                va="center",
                fontsize="small",
                color="white" if value < middle else "black",
            )
    else:
        image = axis.scatter(
            final[RATE], final[FRACTION], c=100 * final["accuracy_mean"], s=80, cmap="viridis"
        )
    figure.colorbar(image, ax=axis, label=label)
    axis.set_xlabel("ALDS rate")
    axis.set_ylabel("IMP prune fraction per cycle")
    axis.set_title(title or "Final accuracy")
    return figure

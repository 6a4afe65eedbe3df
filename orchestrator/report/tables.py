"""The tables: pure functions of tidy frames of trials and steps, checkable on hand-built curves,
and their one registry (:data:`TABLES`).

Aggregates (curves, the comparison with the baseline, the best configurations) take complete
trials only, with ``n`` the number of seeds behind each number; the trials table lists every
trial, running, pruned and failed ones included, with what they logged so far.

A table of the report is one function and one :class:`TableSpec` in :data:`TABLES`: its file
name, title, how it is computed from the report's :class:`Inputs`, and the columns shown.
"""

from __future__ import annotations

import functools
import json
import math
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from orchestrator import plan, stored_names
from orchestrator.curve import LEVEL_SLACK, curve_points, mean_between, value_at_sparsity
from orchestrator.report import statistics
from orchestrator.report.schema import (
    FLOPS_LEVELS,
    LEVELS,
    METRICS,
    NOTE_LIMIT,
    RATE,
    TOLERANCE,
    Column,
    Report,
    config_fields,
    plain,
    shorten,
)
from orchestrator.report.statistics import CONFIDENCE, paired_interval, verdict

__all__ = [
    "CONFIDENCE",
    "TABLES",
    "Inputs",
    "TableSpec",
    "at_flops",
    "at_sparsity",
    "baseline_pairs",
    "best_table",
    "collapse_notes",
    "controls_table",
    "curve_table",
    "endpoint_table",
    "layer_table",
    "magnitude_table",
    "paired_interval",
    "report_notes",
    "summary_table",
    "table_spec",
    "tolerance_table",
    "trials_table",
    "verdict",
    "versus_baseline",
]


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
    table["note"] = [_note(row) for row in table.to_dict("records")]
    return table


def _note(row: Mapping[str, Any]) -> str:
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
    if isinstance(row.get("reused_trial"), str):
        parts.append(f"reused from {row['reused_trial']}")
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
    columns = [c for c in ["config", *config_fields(params)] if c in steps]
    return steps[columns].drop_duplicates("config").set_index("config")


def curve_table(steps: pd.DataFrame, params: Sequence[str]) -> pd.DataFrame:
    """Per configuration and step: n seeds, accuracy mean and std, sparsity and sizes (means).

    ``steps`` is a labelled frame (``sources.label_steps``) of the trials to aggregate.
    """
    spread = ("accuracy", "val_accuracy", "loss", "sparsity")
    aggregations: dict[str, tuple[str, str]] = {"n": ("trial", "nunique")}
    for key in METRICS:
        aggregations[f"{key}_mean"] = (key, "mean")
        if key in spread:
            aggregations[f"{key}_std"] = (key, "std")
    if steps.empty:
        keys = ["config", *config_fields(params), "step", "phase", *aggregations]
        return pd.DataFrame(columns=keys)
    table = steps.groupby(["config", "step"]).agg(**aggregations).reset_index()
    table = table.join(_config_params(steps, params), on="config")
    table["phase"] = table["step"].map(_phase)
    front = ["config", *[c for c in config_fields(params) if c in table], "step", "phase"]
    table = table[front + [c for c in table if c not in front]]
    return table.sort_values([*front[1:-2], "step"], ignore_index=True)


def baseline_pairs(
    configs: pd.DataFrame,
    params: Sequence[str],
    twin_of: Callable[[Mapping[str, Any]], Mapping[str, Any]],
) -> dict[str, str]:
    """For each ALDS configuration, its IMP-only twin's configuration, where one ran.

    ``configs`` has a ``config`` column, the parameters and ``alds.rate``; ``twin_of`` is the
    sweep's :func:`plan.twin_of`. A configuration is compared only with its twin (the
    same IMP schedule, the same training): never with a baseline of another schedule. One
    whose twin is missing is left out (:func:`report_notes` names it).
    """
    unique = configs.drop_duplicates("config")
    searched = [p for p in params if p in unique]

    def key(values: Mapping[str, Any]) -> str:
        return json.dumps({p: plain(values[p]) for p in searched}, sort_keys=True)

    baselines = {
        key(row): row["config"] for row in unique[~plan.is_alds(unique[RATE])].to_dict("records")
    }
    pairs = {}
    for row in unique[plan.is_alds(unique[RATE])].to_dict("records"):
        twin = baselines.get(key(twin_of({p: plain(row[p]) for p in searched})))
        if twin is not None:
            pairs[row["config"]] = twin
    return pairs


def _per_seed(steps: pd.DataFrame, config: str | None, level: float) -> dict[Any, float]:
    """Each seed's accuracy at ``level`` sparsity, read off its curve as objectives are
    (seeds whose curve does not reach it left out)."""
    curves = _seed_curves(steps).get(config, {}) if config is not None else {}
    values = {seed: value_at_sparsity(*curve, level) for seed, curve in curves.items()}
    return {seed: value for seed, value in values.items() if not math.isnan(value)}


_Curve = tuple[np.ndarray, np.ndarray, np.ndarray]  # step, sparsity, accuracy
_grouped: tuple[weakref.ref, dict[str, dict[Any, _Curve]]] | None = None


def _seed_curves(steps: pd.DataFrame) -> dict[str, dict[Any, _Curve]]:
    """Each configuration's curves by seed, split once per frame: the tables read every
    configuration at many levels, and a scan of the frame for each is quadratic in trials."""
    global _grouped
    if _grouped is None or _grouped[0]() is not steps:
        split: dict[str, dict[Any, _Curve]] = {}
        for (config, seed), trial in steps.groupby(["config", "seed"], sort=True):
            columns = (trial[c].to_numpy() for c in ("step", "sparsity", "accuracy"))
            split.setdefault(config, {})[seed] = tuple(columns)  # type: ignore[assignment]
        _grouped = (weakref.ref(steps), split)
    return _grouped[1]


def _std(values: pd.Series | Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


ALDS_PLUS_IMP = "ALDS + IMP"  # the role of an ALDS configuration in the summary


def _judged(
    table: pd.DataFrame,
    margin: float | None,
    *,
    words: tuple[str, str] = ("ALDS better", "ALDS worse"),
) -> pd.DataFrame:
    """``table`` (a ``difference_mean``, ``difference_std`` and ``paired_n`` per row, one
    family) with its family-wise columns (:func:`statistics.family`: p-values, Holm's, the
    simultaneous interval), a ``verdict`` read from the simultaneous interval (none for a row
    without a ``baseline``), and with a ``margin`` the TOST ``equivalence`` of each row."""
    if table.empty:
        extra = ["p_value", "p_holm", "adjusted_ci_low", "adjusted_ci_high", "verdict"]
        extra += ["equivalence"] if margin is not None else []
        return table.reindex(columns=[*table.columns, *extra])
    table = table.join(statistics.family(table))
    rows = zip(table["adjusted_ci_low"], table["adjusted_ci_high"], strict=True)
    table["verdict"] = [verdict(low, high, *words) for low, high in rows]
    if "baseline" in table:  # an IMP-only row is compared with nothing
        table["verdict"] = table["verdict"].where(table["baseline"].notna(), "")
    if margin is not None:
        said = {"equivalent": f"equivalent within ±{100 * margin:g} pt"}
        summaries = zip(
            table["difference_mean"],
            table["difference_std"],
            table["paired_n"].fillna(0).astype(int),
            strict=True,
        )
        table["equivalence"] = [
            said.get(found, found)
            for found in (statistics.equivalence(*row, margin) for row in summaries)
        ]
    return table


def versus_baseline(
    steps: pd.DataFrame,
    pairs: Mapping[str, str],
    margin: float | None = None,
    *,
    words: tuple[str, str] = ("ALDS better", "ALDS worse"),
) -> pd.DataFrame:
    """Each ALDS configuration against its baseline at matched sparsity, per compressed step.

    The levels are the ALDS configuration's mean sparsities at its steps 1, 2, ...; both arms'
    curves are interpolated there seed by seed. The difference is paired by seed (a seed's two
    arms share θ0 and the dense network): its mean and std over the seeds both arms have. A
    level beyond the baseline's curve has no baseline value (never extrapolated). Its rows are
    one family (:func:`_judged`); ``margin``: the TOST margin, in accuracy (0.006 is 0.6 pt);
    ``words``: the verdicts of a difference above and below zero.
    """
    rows = []
    compressed = steps[steps["step"] >= 1]
    means = compressed.groupby(["config", "step"])[["sparsity", "remaining"]].mean()
    for config, baseline in pairs.items():
        if config not in means.index:
            continue
        levels = means.loc[config]
        for step, (level, remaining) in zip(
            levels.index, levels.itertuples(index=False), strict=True
        ):
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
    return _judged(pd.DataFrame(rows, columns=columns), margin, words=words)


CONTROL_WORDS = ("control better", "ticket better")  # the controls table's verdicts


def controls_table(
    steps: pd.DataFrame, controls: pd.DataFrame, margin: float | None = None
) -> pd.DataFrame:
    """Each lottery-ticket control against its IMP-only twin, at every cycle it ran.

    A control trains, at each of its twin's cycles, a mask of the twin's per-layer sparsity
    drawn at random (``random_mask``) or the twin's own mask from a fresh initialisation
    (``reinit``); the twin's curve is read at the control's sparsities seed by seed, as in
    :func:`versus_baseline` (a seed's control and twin share the data order and, for
    ``random_mask``, θ0). A negative difference is what lottery tickets predict: the mask and
    its initial weights matter. The rows are one family (:func:`_judged`).

    Args:
        steps: the plain trials' labelled steps (the twins among them).
        controls: the control trials' labelled steps, with ``imp.control`` and ``twin``.
        margin: the TOST margin, in accuracy.
    """
    columns = ["config", "baseline", "control", "step", "sparsity", "remaining", *_MATCHED]
    if controls.empty:
        return _judged(pd.DataFrame(columns=columns), margin, words=CONTROL_WORDS)
    named = controls.drop_duplicates("config").set_index("config")
    pairs = named["twin"].to_dict()
    together = pd.concat([steps[steps["config"].isin(set(pairs.values()))], controls])
    table = versus_baseline(together, pairs, margin, words=CONTROL_WORDS)
    table["control"] = table["config"].map(named[plan.CONTROL])
    order = ["baseline", "control", "step"]
    return table[columns + [c for c in table if c not in columns]].sort_values(
        order, ignore_index=True
    )


_MATCHED = [
    "accuracy_mean",
    "accuracy_std",
    "n",
    "baseline_accuracy_mean",
    "baseline_accuracy_std",
    "baseline_n",
    "difference_mean",
    "difference_std",
    "difference_ci_low",
    "difference_ci_high",
    "paired_n",
]


def _matched(steps: pd.DataFrame, config: str, baseline: str | None, level: float) -> dict:
    """One configuration against its baseline at one sparsity, interpolated seed by seed."""
    ours = _per_seed(steps, config, level)
    theirs = _per_seed(steps, baseline, level)
    paired = [ours[seed] - theirs[seed] for seed in ours if seed in theirs]
    low, high = paired_interval(paired)
    return {
        "accuracy_mean": _mean(list(ours.values())),
        "accuracy_std": _std(list(ours.values())),
        "n": len(ours),
        "baseline_accuracy_mean": _mean(list(theirs.values())),
        "baseline_accuracy_std": _std(list(theirs.values())),
        "baseline_n": len(theirs),
        "difference_mean": _mean(paired),
        "difference_std": _std(paired),
        "difference_ci_low": low,
        "difference_ci_high": high,
        "paired_n": len(paired),
    }


def at_sparsity(
    steps: pd.DataFrame,
    configs: Sequence[str],
    pairs: Mapping[str, str],
    levels: Sequence[float],
    margin: float | None = None,
) -> pd.DataFrame:
    """Every configuration at the same fixed sparsity levels, for a table across a paper.

    Accuracy per level as in :func:`versus_baseline` (interpolated seed by seed, never
    extrapolated: a configuration that never had a network at a level has no value there), and
    for ALDS configurations the paired difference to their baseline (the table's differences
    are one family, :func:`_judged`). Rows by level, then in the order of ``configs``.
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
    columns = ["config", "baseline", "sparsity", "remaining", *_MATCHED]
    return _judged(pd.DataFrame(rows, columns=columns), margin)


def at_flops(
    steps: pd.DataFrame,
    configs: Sequence[str],
    pairs: Mapping[str, str],
    levels: Sequence[float] = FLOPS_LEVELS,
    margin: float | None = None,
) -> pd.DataFrame:
    """Every configuration at the same cost: :func:`at_sparsity` with the effective FLOPs
    kept (``flops_effective`` over the trial's dense network's) in place of the weights kept.

    Equal sparsity is not equal cost: a convolution's weights are few and its FLOPs many, and
    a low-rank factorization changes FLOPs otherwise than unstructured pruning does. Accuracy
    is interpolated seed by seed in log(FLOPs kept), never extrapolated, and paired with the
    twin (the rows one family). ``levels``: the FLOPs kept, relative to dense.
    """
    columns = ["config", "baseline", "flops_kept", "speedup", *_MATCHED]
    if steps.empty or steps["flops_effective"].isna().all():
        return _judged(pd.DataFrame(columns=columns), margin)
    dense = steps["flops_effective"].where(steps["step"] == 0).groupby(steps["trial"])
    kept = steps["flops_effective"] / dense.transform("max")
    # The sparsity axis of at_sparsity becomes the share of the dense FLOPs removed.
    costed = steps.assign(sparsity=1.0 - kept)
    table = at_sparsity(costed, configs, pairs, [1.0 - level for level in levels], margin)
    table["flops_kept"] = 1.0 - table["sparsity"]
    table["speedup"] = 1.0 / table["flops_kept"]
    return table[[*columns, *table.columns.difference([*columns, "sparsity", "remaining"])]]


def endpoint_table(
    steps: pd.DataFrame,
    pairs: Mapping[str, str],
    margin: float | None = None,
    level: float | None = None,
) -> pd.DataFrame:
    """The primary endpoint (``report.primary``): each ALDS configuration against its IMP-only
    twin, one number per pair and seed.

    Without a ``level`` (``auc``, the default): per seed, each arm's mean accuracy over
    log(weights remaining) between the sparsities that every seed of both arms covers (the
    area under the curve over the range's width, :func:`curve.mean_between`; the compressed
    steps, as in :func:`versus_baseline`), over the whole range rather than at one chosen
    level. At a ``level`` (``0.9``): each arm's accuracy there (the range shrinks to that one
    sparsity; a pair whose seeds do not all reach it has no row). The difference is paired by
    seed; the rows are one family (:func:`_judged`).
    """
    columns = [
        "config",
        "baseline",
        "sparsity_low",
        "sparsity_high",
        "auc_mean",
        "auc_std",
        "baseline_auc_mean",
        "baseline_auc_std",
        "difference_mean",
        "difference_std",
        "difference_ci_low",
        "difference_ci_high",
        "paired_n",
    ]
    curves = _seed_curves(steps)
    rows = []
    for config, twin in pairs.items():
        ours, theirs = curves.get(config, {}), curves.get(twin, {})
        seeds = sorted(set(ours) & set(theirs))
        spans = [curve_points(*arm[seed])[0] for arm in (ours, theirs) for seed in seeds]
        if not seeds or any(len(span) == 0 for span in spans):
            continue
        low_level = max(span[0] for span in spans)
        high_level = min(span[-1] for span in spans)
        if level is not None:
            # Every seed of both arms must reach the level: never extrapolated.
            if not low_level - LEVEL_SLACK <= level <= high_level + LEVEL_SLACK:
                continue
            low_level = high_level = level
        if low_level > high_level:  # the arms' curves do not overlap
            continue
        alds = [mean_between(*ours[seed], low_level, high_level) for seed in seeds]
        imp = [mean_between(*theirs[seed], low_level, high_level) for seed in seeds]
        paired = [a - b for a, b in zip(alds, imp, strict=True)]
        low, high = paired_interval(paired)
        rows.append(
            {
                "config": config,
                "baseline": twin,
                "sparsity_low": low_level,
                "sparsity_high": high_level,
                "auc_mean": _mean(alds),
                "auc_std": _std(alds),
                "baseline_auc_mean": _mean(imp),
                "baseline_auc_std": _std(imp),
                "difference_mean": _mean(paired),
                "difference_std": _std(paired),
                "difference_ci_low": low,
                "difference_ci_high": high,
                "paired_n": len(paired),
            }
        )
    return _judged(pd.DataFrame(rows, columns=columns), margin)


def tolerance_table(steps: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Per configuration: the highest sparsity up to which accuracy stays within ``tolerance``.

    Per seed: walk the measured steps in order from the dense network (step 0, that seed's
    reference) and take the highest sparsity before the first step more than ``tolerance``
    below it. ``to_end`` counts the seeds that never dropped (their value is a lower bound).
    Over the seeds: the median and range, which the summary shows (a seed that collapses and
    one that does not make a two-peaked quantity, whose mean and std mislead), and the mean
    and std.
    """
    columns = ["config", *_WITHIN]
    if steps.empty:
        return pd.DataFrame(columns=columns)
    # Every seed's curve at once (a sweep has thousands): ordered by step within each.
    ordered = steps.sort_values(["config", "seed", "step"], kind="stable")
    curve = [ordered["config"], ordered["seed"]]
    dense = ordered["accuracy"].where(ordered["step"] == 0)
    first_dense = dense.groupby(curve).transform("first")
    within = ordered["accuracy"] >= first_dense - tolerance - 1e-12
    # A step counts while no step before it (nor itself) dropped below the floor.
    dropped = (~within).astype(int).groupby(curve).cummax().astype(bool)
    seeds = pd.DataFrame(
        {
            "config": ordered["config"],
            "seed": ordered["seed"],
            "has_dense": ordered["step"] == 0,
            "reached": ordered["sparsity"].where(~dropped),
            "within": within,
        }
    ).groupby(["config", "seed"], sort=True)
    per_seed = seeds.agg(
        has_dense=("has_dense", "any"), reached=("reached", "max"), to_end=("within", "all")
    )
    per_seed = per_seed[per_seed["has_dense"]]
    per_config = per_seed.groupby(level="config", sort=True)
    table = pd.DataFrame(
        {
            "max_sparsity_within_mean": per_config["reached"].mean(),
            "max_sparsity_within_std": per_config["reached"].std(),
            "max_sparsity_within_median": per_config["reached"].median(),
            "max_sparsity_within_min": per_config["reached"].min(),
            "max_sparsity_within_max": per_config["reached"].max(),
            "within_n": per_config.size(),
            "within_to_end": per_config["to_end"].sum().astype(int),
        }
    )
    # A configuration none of whose seeds has a dense step still has its row.
    table = table.reindex(sorted(ordered["config"].unique()))
    table[["within_n", "within_to_end"]] = table[["within_n", "within_to_end"]].fillna(0)
    table = table.astype({"within_n": int, "within_to_end": int})
    # One seed has no spread (as _std says).
    table.loc[table["within_n"] < 2, "max_sparsity_within_std"] = math.nan
    return table.rename_axis("config").reset_index()[columns]


_WITHIN = [
    "max_sparsity_within_mean",
    "max_sparsity_within_std",
    "max_sparsity_within_median",
    "max_sparsity_within_min",
    "max_sparsity_within_max",
    "within_n",
    "within_to_end",
]


def summary_table(
    curves: pd.DataFrame,
    versus: pd.DataFrame,
    within: pd.DataFrame,
    pairs: Mapping[str, str],
    params: Sequence[str],
    margin: float | None = None,
) -> pd.DataFrame:
    """One row per configuration: the seed's question answered.

    The final accuracy and sparsity, the difference to the baseline at the highest sparsity
    both curves reach (its ALDS rows one family, :func:`_judged`; ``equivalence_bound``: the
    differences its data exclude), and the highest sparsity within the tolerance of the dense
    network.
    """
    fields = config_fields(params)
    columns = [
        "config",
        *fields,
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
        "difference_ci_low",
        "difference_ci_high",
        "paired_n",
        "p_value",
        "p_holm",
        "adjusted_ci_low",
        "adjusted_ci_high",
        "verdict",
        "equivalence",
        "equivalence_bound",
        *_WITHIN,
        "within_lower_bound",
    ]
    if curves.empty:
        return pd.DataFrame(columns=columns)
    final = curves.sort_values("step").groupby("config").tail(1)
    # Each configuration's matched step at the highest sparsity both curves reach.
    matched = versus[versus["difference_mean"].notna()].sort_values("sparsity", kind="stable")
    tops = matched.groupby("config").tail(1).set_index("config").to_dict("index")
    rows = []
    for row in final.to_dict("records"):
        config = row["config"]
        top = tops.get(config, {})
        rows.append(
            {
                "config": config,
                **{p: row[p] for p in fields if p in row},
                "role": ALDS_PLUS_IMP if plan.is_alds(row.get(RATE, math.nan)) else plan.IMP_ONLY,
                "baseline": pairs.get(config),
                "n": row["n"],
                "final_step": row["step"],
                "final_sparsity": row["sparsity_mean"],
                "final_accuracy_mean": row["accuracy_mean"],
                "final_accuracy_std": row["accuracy_std"],
                "matched_sparsity": top.get("sparsity", math.nan),
                "difference_mean": top.get("difference_mean", math.nan),
                "difference_std": top.get("difference_std", math.nan),
                "paired_n": top.get("paired_n", 0),
                **{
                    key: top.get(key, math.nan)
                    for key in ("difference_ci_low", "difference_ci_high")
                },
            }
        )
    table = pd.DataFrame(rows).merge(within, on="config", how="left")
    alds = table["role"] == ALDS_PLUS_IMP
    judged = _judged(table[alds], margin)
    for column in judged.columns.difference(table.columns):
        table[column] = judged[column]
    table["verdict"] = table["verdict"].where(alds, "")
    table["equivalence_bound"] = [
        statistics.equivalence_bound(*row) if arm else math.nan
        for arm, *row in zip(
            alds, table["difference_mean"], table["difference_std"], table["paired_n"], strict=True
        )
    ]
    # Every seed stayed within the tolerance to its last step: the true value may be higher.
    table["within_lower_bound"] = (table["within_n"] > 0) & (
        table["within_to_end"] == table["within_n"]
    )
    return table[[c for c in columns if c in table]].sort_values(
        [c for c in fields if c in table], ignore_index=True
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
    ranked = complete.sort_values(value, ascending=not maximize, kind="stable")
    grouped = ranked.groupby("config", sort=True)
    table = grouped.agg(
        **{p: (p, "first") for p in params},
        n=(value, "size"),
        value_mean=(value, "mean"),
        value_std=(value, "std"),
        best_trial=("number", "first"),
        accuracy_mean=("accuracy", "mean"),
        sparsity_mean=("sparsity", "mean"),
        params_nonzero_mean=("params_nonzero", "mean"),
    ).reset_index()
    table["best_trial"] = table["best_trial"].astype(int)
    table = table.sort_values(
        "value_mean", ascending=not maximize, ignore_index=True, kind="stable"
    )
    table.insert(0, "rank", range(1, len(table) + 1))
    return table[columns].head(top)


DENSE_STEP = 0  # the dense-trained network
AFTER_ALDS = 1  # after ALDS and the fine-tuning every arm gets, before any pruning


def magnitude_table(steps: pd.DataFrame, pairs: Mapping[str, str]) -> pd.DataFrame:
    """The seed's first two guesses: does ALDS shrink the insignificant weights and grow the
    significant ones? Per ALDS configuration: the share of the weights' magnitude held by the
    smallest and the largest tenth, in the dense network and after ALDS (step 1), against its
    twin after the same fine-tuning, paired by seed (both start from the same dense network).
    """
    rows = []
    after = steps[steps["step"] == AFTER_ALDS]
    dense = steps[steps["step"] == DENSE_STEP]
    for config, twin in pairs.items():
        row: dict[str, Any] = {"config": config, "baseline": twin, "paired_n": 0}
        for decile in ("smallest", "largest"):
            column = f"mass_{decile}_decile"
            if column not in steps:
                continue
            ours = after[after["config"] == config].set_index("seed")[column].dropna()
            theirs = after[after["config"] == twin].set_index("seed")[column].dropna()
            start = dense[dense["config"] == config][column].dropna()
            common = ours.index.intersection(theirs.index)
            paired = ours[common] - theirs[common]
            low, high = paired_interval(paired)
            row |= {
                f"{decile}_dense": start.mean() if len(start) else math.nan,
                f"{decile}_alds": ours.mean() if len(ours) else math.nan,
                f"{decile}_baseline": theirs.mean() if len(theirs) else math.nan,
                f"{decile}_difference_mean": paired.mean() if len(paired) else math.nan,
                f"{decile}_difference_std": _std(paired),
                f"{decile}_ci_low": low,
                f"{decile}_ci_high": high,
                "paired_n": len(paired),
            }
        rows.append(row)
    # Without a single pair (a sampled sweep without twins) it still names its arms' columns.
    table = pd.DataFrame(rows, columns=None if rows else ["config", "baseline", "paired_n"])
    deciles = [d for d in ("smallest", "largest") if f"{d}_difference_mean" in table]
    if not deciles:
        return table
    # Both tenths of every configuration are one family.
    stacked = pd.concat(
        [
            table[[f"{d}_difference_mean", f"{d}_difference_std", "paired_n"]].set_axis(
                ["difference_mean", "difference_std", "paired_n"], axis=1
            )
            for d in deciles
        ],
        ignore_index=True,
    )
    judged = _judged(stacked, None, words=("ALDS higher", "ALDS lower"))
    for number, decile in enumerate(deciles):
        part = judged.iloc[number * len(table) : (number + 1) * len(table)]
        for column in ("p_value", "p_holm", "adjusted_ci_low", "adjusted_ci_high", "verdict"):
            table[f"{decile}_{column}"] = part[column].to_numpy()
    return table


COLLAPSED = 0.01  # a layer with at most this share of its weights left is emptied


def layer_table(steps: pd.DataFrame, pairs: Mapping[str, str]) -> pd.DataFrame:
    """Each layer's remaining weights at each configuration's last step (the seed's third
    guess: does IMP empty a layer, and does ALDS prevent it?).

    One row per configuration and layer: the mean and the lowest over seeds of the layer's
    remaining fraction, whether some seed left at most :data:`COLLAPSED` of it, and for an
    ALDS configuration the same layer in its twin at the twin's last step. ``after_alds_mean``
    is the layer's stored size after ALDS (step 1), relative to its dense weights: ALDS's
    per-layer compression in factorize mode; 1 in project mode, whose low-rank weights are
    stored as full matrices (and regain full rank in the fine-tuning).
    """
    prefix = stored_names.layer_remaining("")
    layers = [c for c in steps if isinstance(c, str) and c.startswith(prefix)]
    columns = ["config", "baseline", "step", "sparsity", "layer", *_LAYER]
    if steps.empty or not layers:
        return pd.DataFrame(columns=columns)
    last = steps.loc[steps.groupby("trial")["step"].idxmax()]
    at = last.groupby("config", sort=True).agg(step=("step", "max"), sparsity=("sparsity", "mean"))
    long = last.melt(id_vars=["config"], value_vars=layers, var_name="column").dropna()
    long["column"] = pd.Categorical(long["column"], categories=layers)
    values = long.groupby(["config", "column"], sort=True, observed=True)["value"]
    table = values.agg(remaining_mean="mean", remaining_min="min", n="size").reset_index()
    after = steps[steps["step"] == AFTER_ALDS].groupby("config")[layers].mean()
    table["after_alds_mean"] = [
        after.at[config, column] if config in after.index else math.nan
        for config, column in zip(table["config"], table["column"].astype(str), strict=True)
    ]
    table["collapsed"] = table["remaining_min"] <= COLLAPSED
    table["baseline"] = table["config"].map(pairs)
    own = table.set_index(["config", "column"])
    twins = pd.MultiIndex.from_arrays([table["baseline"], table["column"]])
    theirs = own.reindex(twins)
    table["baseline_remaining_mean"] = theirs["remaining_mean"].to_numpy()
    table["baseline_collapsed"] = (theirs["remaining_min"] <= COLLAPSED).to_numpy()
    table["step"] = table["config"].map(at["step"]).astype(int)
    table["sparsity"] = table["config"].map(at["sparsity"])
    table["layer"] = table["column"].astype(str).str.removeprefix(prefix)
    return table[columns]


_LAYER = [
    "after_alds_mean",
    "remaining_mean",
    "remaining_min",
    "n",
    "collapsed",
    "baseline_remaining_mean",
    "baseline_collapsed",
]


def report_notes(
    trials: pd.DataFrame, curves: pd.DataFrame, pairs: Mapping[str, str], counts: Mapping[str, int]
) -> list[str]:
    """What a reader of the aggregates must know: trials left out of them, missing baselines.

    ``trials`` is the :func:`trials_table`; ``counts`` the trials by state.
    """
    notes = []
    for state, verb in (("RUNNING", "still running"), ("PRUNED", "pruned"), ("FAIL", "failed")):
        rows = trials[trials["state"] == state]
        if len(rows):
            listed = "; ".join(
                f"{int(r.number)} ({shorten(r.note, NOTE_LIMIT)})" for r in rows.itertuples()
            )
            notes.append(f"{len(rows)} trial(s) {verb}, not in the aggregates: {listed}")
    if counts.get("WAITING"):
        notes.append(f"{counts['WAITING']} trial(s) queued, not started")
    if curves.empty:
        notes.append("no trial is complete yet: the aggregate tables are empty")
        return notes
    unpaired = sorted(
        c for c in curves.loc[plan.is_alds(curves[RATE]), "config"].unique() if c not in pairs
    )
    if unpaired:
        notes.append(
            f"{len(unpaired)} ALDS configuration(s) without a complete IMP-only twin (same "
            f"schedule and seed), not compared: {', '.join(unpaired)}"
        )
    if not plan.is_alds(curves[RATE]).any():
        notes.append("every configuration is IMP only (alds.rate 0): nothing to compare")
    return notes


HALFWIDTH = 0.0025  # the seed planner's default target: a 95% interval of ±0.25 points


def planner_note(endpoint: pd.DataFrame, halfwidth: float = HALFWIDTH) -> list[str]:
    """How many seeds the primary endpoint (:func:`endpoint_table`) needs for a 95% interval
    of ±``halfwidth`` (in accuracy), from the largest paired standard deviation it observed
    (:func:`statistics.seeds_needed`); nothing before a configuration has two paired seeds."""
    paired = endpoint[endpoint["paired_n"] >= 2]
    spread = paired["difference_std"].dropna()
    if spread.empty:
        return []
    largest = float(spread.max())
    needed = statistics.seeds_needed(largest, halfwidth)
    return [
        f"seeds for a 95% interval of ±{100 * halfwidth:g} pt on the primary endpoint: "
        f"{needed} (from the largest paired std, {100 * largest:.2f} pt; the sweep has "
        f"{int(paired['paired_n'].min())})"
    ]


NOTED = 10  # configurations a note names one by one; a sampled sweep has thousands


def collapse_notes(layers: pd.DataFrame) -> list[str]:
    """The layers IMP emptied (at most :data:`COLLAPSED` of their weights left in a seed), and
    where ALDS kept a layer its twin emptied: the seed's third guess, answered."""
    notes = []
    emptied = layers[layers["collapsed"]]
    configs = list(emptied.groupby("config", sort=True))
    for config, group in configs[:NOTED]:
        listed = ", ".join(
            f"{r.layer} ({100 * r.remaining_min:.2g}% left)" for r in group.itertuples()
        )
        notes.append(f"{config}: IMP emptied {listed}")
    if len(configs) > NOTED:
        notes.append(f"{len(configs) - NOTED} more configurations emptied a layer (layers.csv)")
    kept = list(layers[layers["baseline_collapsed"] & ~layers["collapsed"]].groupby("config"))
    for config, group in kept[:NOTED]:
        listed = ", ".join(group["layer"])
        notes.append(f"{config} kept layers its IMP-only twin emptied: {listed}")
    if len(kept) > NOTED:
        notes.append(
            f"{len(kept) - NOTED} more configurations kept layers their IMP-only twins emptied "
            "(layers.csv)"
        )
    if not layers.empty and emptied.empty:
        notes.append(
            f"no configuration emptied a layer (every layer kept more than {100 * COLLAPSED:g}% "
            "of its weights in every seed)"
        )
    return notes


# --------------------------------------------------------------------------- the registry


@dataclass
class Inputs:
    """What every table is computed from: the sweep's frames and choices, and each table of
    :data:`TABLES` computed once on demand (:meth:`table`), so a table can build on another.

    ``trials`` is the study's trials as read (``sources.read_trials``) with ``missing``, the
    reason a trial's run could not be read; ``steps`` the labelled steps of every trial
    (``sources.label_steps``). ``twin_of`` and ``label`` are the sweep's: a configuration's
    IMP-only twin (:func:`plan.twin_of`) and a trial's configuration label
    (``sources.config_label``), passed in so the tables import neither the config nor the
    readers.
    """

    trials: pd.DataFrame
    steps: pd.DataFrame
    params: list[str]
    twin_of: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    label: Callable[[Mapping[str, Any]], str]
    objectives: list[str]
    directions: list[str]
    front: list[int] = field(default_factory=list)  # the Pareto front's trials (several objectives)
    tolerance: float = TOLERANCE
    levels: Sequence[float] = LEVELS
    margin: float | None = None  # the equivalence margin (TOST), in accuracy; None: no test
    primary_level: float | None = None  # report.primary at one sparsity; None: the AUC
    # The control trials (imp.controls) and their labelled steps, with each one's ``twin``:
    # kept out of ``trials`` and ``steps``, compared with their twins alone (controls_table).
    control_trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    control_steps: pd.DataFrame = field(default_factory=pd.DataFrame)
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
        return baseline_pairs(self.table("curves"), self.params, self.twin_of)

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


# A paired difference judged within its table's family (statistics.family), and by TOST when
# the report has a margin.
def _judgement(report: Report) -> list[Column]:
    equivalence = [Column("TOST", "equivalence")] if report.margin is not None else []
    return [
        Column("Δ 95% CI (pt)", "difference_ci_low", "points", upper="difference_ci_high"),
        Column("Δ family-wise CI (pt)", "adjusted_ci_low", "points", upper="adjusted_ci_high"),
        Column("p (Holm)", "p_holm", "p"),
        Column("verdict", "verdict"),
        *equivalence,
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
        Column("reused from (run)", stored_names.TRIAL_REUSED_FROM, paper=False),
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
        "endpoint",
        "The primary endpoint: mean accuracy over the sparsity range both arms reach",
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
            Column("configuration", "config"),
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
            Column("configuration", "config"),
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
            Column("twin", "baseline"),
            Column("control", "control"),
            Column("step", "step", "int"),
            Column("sparsity (%)", "sparsity", "pct"),
            Column("control (%)", "accuracy_mean", "pct", "accuracy_std"),
            *_against_baseline(report),
        ],
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

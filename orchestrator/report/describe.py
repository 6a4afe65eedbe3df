"""The descriptive tables: the trials, the curves, the best configurations, weights and layers.

The trials table lists every trial, running, pruned and failed ones included, with what they
logged so far; the others take complete trials only, with ``n`` the number of seeds behind each
number. The seed's hypotheses are here too (:func:`magnitude_table`, :func:`layer_table`): the
magnitude shares are judged as the comparisons are, with ``compare``'s helpers.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from orchestrator import plan, stored_names
from orchestrator.report.compare import _judged, _std
from orchestrator.report.schema import METRICS, RATE, config_fields
from orchestrator.report.statistics import paired_interval

__all__ = [
    "AFTER_ALDS",
    "CHANCE_SLACK",
    "COLLAPSED",
    "DENSE_STEP",
    "best_table",
    "collapse_table",
    "curve_table",
    "layer_table",
    "magnitude_table",
    "trials_table",
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


def _note(row: Mapping[Hashable, Any]) -> str:
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
        parts.append(f"copied from {row['reused_trial']}")
    if isinstance(row.get("missing"), str):
        parts.append(row["missing"])
    return "; ".join(parts)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _int_text(value: Any) -> str:
    return "-" if pd.isna(value) else str(int(value))


def _phase(step: int, rate: float) -> str:
    """What made a step: the dense network, ALDS (``no alds`` in the IMP-only arm, whose step 1
    is its network before IMP), or an IMP cycle."""
    if step == 0:
        return "dense"
    if step == 1:
        return "alds" if plan.is_alds(rate) else "no alds"
    return "imp"


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
    rates = table[RATE] if RATE in table else pd.Series(math.nan, index=table.index)
    table["phase"] = [_phase(step, rate) for step, rate in zip(table["step"], rates, strict=True)]
    front = ["config", *[c for c in config_fields(params) if c in table], "step", "phase"]
    table = table[front + [c for c in table if c not in front]]
    return table.sort_values([*front[1:-2], "step"], ignore_index=True)


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
        for column in ("p_value", "p_adjusted", "adjusted_ci_low", "adjusted_ci_high", "verdict"):
            table[f"{decile}_{column}"] = part[column].to_numpy()
    return table


COLLAPSED = 0.01  # a layer with at most this share of its weights left is emptied


def _layer_columns(steps: pd.DataFrame) -> list[str]:
    """The steps' ``remaining/<layer>`` columns, in order."""
    prefix = stored_names.layer_remaining("")
    return [c for c in steps if isinstance(c, str) and c.startswith(prefix)]


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
    layers = _layer_columns(steps)
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
    table["after_alds_mean"] = np.array(
        [
            after.at[config, column] if config in after.index else math.nan
            for config, column in zip(table["config"], table["column"].astype(str), strict=True)
        ],
        dtype=float,
    )
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


CHANCE_SLACK = 0.01  # accuracy at most this above 1/classes counts as chance


def collapse_table(
    steps: pd.DataFrame, pairs: Mapping[str, str], chance: float | None
) -> pd.DataFrame:
    """Where IMP collapses the network, per configuration, and ALDS against its twin there.

    A seed collapses at its first step whose accuracy is at chance (at most
    :data:`CHANCE_SLACK` above ``chance``, 1/classes: a network with no path from input to
    output predicts one class) or where a layer has no weight left (``remaining/<layer>`` 0).
    Per configuration: the seeds, how many collapsed and the sparsity there (median and range
    over them), and the sparsity the others reached without collapsing. An ALDS configuration
    is paired with its twin by seed over the seeds where both collapsed: the difference in
    halvings of the weights at collapse, log2(remaining of the twin / remaining of ALDS)
    (> 0: ALDS collapses later), judged as one family with the others (:func:`_judged`).

    Args:
        steps: the complete trials' labelled steps.
        pairs: each ALDS configuration's twin.
        chance: the accuracy of a guess, 1/classes; None (unknown) leaves chance out.
    """
    columns = ["config", "baseline", "n", "collapsed", "sparsity_median", "sparsity_min"]
    columns += ["sparsity_max", "reached_max", "reason", *_COLLAPSE_DIFFERENCE]
    per_seed = _collapse_points(steps, chance)
    rows = []
    for config, seeds in per_seed.groupby("config", sort=True):
        hit = seeds[seeds["collapsed"]]
        twin = pairs.get(str(config))
        theirs = per_seed[(per_seed["config"] == twin) & per_seed["collapsed"]]
        both = (
            hit.set_index("seed")["remaining"]
            .to_frame("ours")
            .join(theirs.set_index("seed")["remaining"].to_frame("theirs"), how="inner")
        )
        halvings = list(np.log2(both["theirs"] / both["ours"])) if twin else []
        low, high = paired_interval(halvings)
        reasons = hit["reason"].value_counts()
        rows.append(
            {
                "config": config,
                "baseline": twin,
                "n": len(seeds),
                "collapsed": len(hit),
                "sparsity_median": hit["sparsity"].median(),
                "sparsity_min": hit["sparsity"].min(),
                "sparsity_max": hit["sparsity"].max(),
                "reached_max": seeds.loc[~seeds["collapsed"], "sparsity"].max(),
                "reason": reasons.index[0] if len(reasons) else "",
                "difference_mean": float(np.mean(halvings)) if halvings else math.nan,
                "difference_std": _std(halvings),
                "difference_ci_low": low,
                "difference_ci_high": high,
                "paired_n": len(halvings),
            }
        )
    table = _judged(
        pd.DataFrame(rows, columns=columns), None, words=_COLLAPSE_WORDS, scale=math.inf
    )
    # Where one arm never collapsed, the pairing has nothing to compare: say which.
    collapsed = table.set_index("config")["collapsed"]
    twins = table["baseline"].map(collapsed)
    alone = table["paired_n"] == 0
    table.loc[alone & (table["collapsed"] == 0), "verdict"] = "no seed collapsed"
    table.loc[alone & (table["collapsed"] == 0) & (twins > 0), "verdict"] = (
        "only the twin collapsed"
    )
    table.loc[alone & (table["collapsed"] > 0) & (twins == 0), "verdict"] = "only ALDS collapsed"
    table.loc[table["baseline"].isna(), "verdict"] = ""
    return table


_COLLAPSE_WORDS = ("ALDS later", "ALDS earlier")
_COLLAPSE_DIFFERENCE = [
    "difference_mean",
    "difference_std",
    "difference_ci_low",
    "difference_ci_high",
    "paired_n",
]


def _collapse_points(steps: pd.DataFrame, chance: float | None) -> pd.DataFrame:
    """Per trial: whether and where it collapsed (its first collapsed step), else the last step
    it reached."""
    prefix = stored_names.layer_remaining("")
    layers = _layer_columns(steps)
    ordered = steps.sort_values(["trial", "step"], kind="stable")
    at_chance = (
        ordered["accuracy"] <= chance + CHANCE_SLACK
        if chance is not None
        else pd.Series(False, index=ordered.index)
    )
    empty = (ordered[layers] <= 0).any(axis=1) if layers else at_chance & False
    ordered = ordered.assign(hit=at_chance | empty, at_chance=at_chance)
    rows = []
    for _, trial in ordered.groupby("trial", sort=False):
        hits = trial[trial["hit"]]
        point = hits.iloc[0] if len(hits) else trial.iloc[-1]
        if len(hits) and not point["at_chance"]:
            emptied = [c.removeprefix(prefix) for c in layers if point[c] <= 0]
            reason = f"{emptied[0]} empty"
        else:
            reason = "chance accuracy" if len(hits) else ""
        rows.append(
            {
                "config": point["config"],
                "seed": point["seed"],
                "collapsed": bool(len(hits)),
                "sparsity": point["sparsity"],
                "remaining": point["remaining"],
                "reason": reason,
            }
        )
    return pd.DataFrame(
        rows, columns=["config", "seed", "collapsed", "sparsity", "remaining", "reason"]
    )

"""The comparison tables: each ALDS configuration against its IMP-only twin, paired by seed.

At matched sparsity step by step (:func:`versus_baseline`), at fixed sparsities and FLOPs, over
the sparsity range every compared configuration reaches (the primary endpoint), and the controls
against their twins, each table's paired rows one family (:func:`_judged`); and the tolerance
table and the summary, which answers the seed's question. They take complete trials only, with
``n`` the number of seeds behind each number. ``describe`` judges its magnitude shares with the
same helpers (:func:`_judged`, :func:`_std`), so this module is below it.
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from orchestrator import plan
from orchestrator.curve import LEVEL_SLACK, curve_points, mean_between, value_at_sparsity
from orchestrator.report import statistics
from orchestrator.report.schema import FLOPS_LEVELS, RATE, TOLERANCE, config_fields, plain
from orchestrator.report.statistics import paired_interval

__all__ = [
    "ALDS_PLUS_IMP",
    "CONTROL_WORDS",
    "at_flops",
    "at_sparsity",
    "baseline_pairs",
    "controls_table",
    "endpoint_table",
    "summary_table",
    "tolerance_table",
    "versus_baseline",
]


def baseline_pairs(
    configs: pd.DataFrame,
    params: Sequence[str],
    twin_lookup: Callable[[Mapping[str, Any]], Mapping[str, Any]],
) -> dict[str, str]:
    """For each ALDS configuration, its IMP-only twin's configuration, where one ran.

    ``configs`` has a ``config`` column, the parameters and ``alds.rate``; ``twin_lookup`` is the
    sweep's twin lookup (:func:`orchestrator.trial.spec.twin_configuration`). A configuration
    is compared only with its twin (the same IMP schedule, the same training): never with a
    baseline of another schedule. One whose twin is missing is left out
    (:func:`report_notes` names it).
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
        twin = baselines.get(key(twin_lookup({p: plain(row[p]) for p in searched})))
        if twin is not None:
            pairs[row["config"]] = twin
    return pairs


def _per_seed(steps: pd.DataFrame, config: str | None, level: float) -> dict[Any, float]:
    """Each seed's accuracy at ``level`` sparsity, read off its curve as objectives are
    (seeds whose curve does not reach it left out)."""
    curves = _seed_curves(steps).get(config, {}) if config is not None else {}
    values = {seed: value_at_sparsity(*curve, level) for seed, curve in curves.items()}
    return {seed: value for seed, value in values.items() if not math.isnan(value)}


_Curve = tuple[list[int], list[float], list[float]]  # step, sparsity, accuracy
_grouped: tuple[weakref.ref, dict[Hashable, dict[Any, _Curve]]] | None = None


def _seed_curves(steps: pd.DataFrame) -> dict[Hashable, dict[Any, _Curve]]:
    """Each configuration's curves by seed, split once per frame: the tables read every
    configuration at many levels, and a scan of the frame for each is quadratic in trials."""
    global _grouped
    if _grouped is None or _grouped[0]() is not steps:
        split: dict[Hashable, dict[Any, _Curve]] = {}
        for (config, seed), trial in steps.groupby(["config", "seed"], sort=True):
            curve = (trial["step"].tolist(), trial["sparsity"].tolist(), trial["accuracy"].tolist())
            split.setdefault(config, {})[seed] = curve
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
    scale: float = statistics.SCALE,
) -> pd.DataFrame:
    """``table`` (a ``difference_mean``, ``difference_std`` and ``paired_n`` per row, one
    family) with the columns of :func:`statistics.judge` (the adjusted p, the simultaneous
    interval, with a ``margin`` the equivalence test, and the one ``verdict`` they give); a row
    without a ``baseline`` (an IMP-only row) is compared with nothing and has no verdict.
    ``scale``: the differences' whole range (accuracy's, by default)."""
    if table.empty:
        return table.reindex(columns=[*table.columns, *statistics.judged_columns(margin)])
    table = table.join(statistics.judge(table, margin, words=words, scale=scale))
    if "baseline" in table:
        table["verdict"] = table["verdict"].where(table["baseline"].notna(), "")
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
    pairs = dict(zip(named.index, named["twin"], strict=True))
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
    table = _judged(pd.DataFrame(rows, columns=columns), margin)
    if not table.empty:
        unreached = (table["n"].fillna(0) == 0) | (table["baseline_n"].fillna(0) == 0)
        table.loc[table["baseline"].notna() & unreached, "verdict"] = statistics.NOT_REACHED
    return table


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
    log(weights remaining) (the area under the curve over the range's width,
    :func:`curve.mean_between`; the compressed steps, as in :func:`versus_baseline`) between
    the sparsities that every seed of every compared configuration and twin of the sweep
    covers, so that the endpoints of two rates are read over the same range and comparable.
    The pair's own common range (its seeds of both arms alone, wider) and the difference
    there stay beside it (``pair_*``), judged by nothing. At a ``level`` (``0.9``): each arm's
    accuracy there (a pair whose seeds do not all reach it has no row). The difference is
    paired by seed; the rows are one family (:func:`_judged`). With no range common to every
    pair, the primary columns are empty and the verdict says so.
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
        "pair_sparsity_low",
        "pair_sparsity_high",
        "pair_difference_mean",
        "pair_difference_ci_low",
        "pair_difference_ci_high",
    ]
    curves = _seed_curves(steps)
    ranges = {}
    for config, twin in pairs.items():
        ours, theirs = curves.get(config, {}), curves.get(twin, {})
        seeds = sorted(set(ours) & set(theirs))
        spans = [curve_points(*arm[seed])[0] for arm in (ours, theirs) for seed in seeds]
        if not seeds or any(len(span) == 0 for span in spans):
            continue
        low, high = max(span[0] for span in spans), min(span[-1] for span in spans)
        if level is not None:
            # Every seed of both arms must reach the level: never extrapolated.
            if not low - LEVEL_SLACK <= level <= high + LEVEL_SLACK:
                continue
            low = high = level
        if low <= high:  # else the arms' curves do not overlap
            ranges[config] = (twin, seeds, low, high)
    common_low = max((low for *_, low, _ in ranges.values()), default=math.nan)
    common_high = min((high for *_, high in ranges.values()), default=math.nan)
    shared = common_low <= common_high
    rows = []
    for config, (twin, seeds, low, high) in ranges.items():
        ours, theirs = curves[config], curves[twin]
        alds, imp, differences = (
            _means_between(ours, theirs, seeds, common_low, common_high) if shared else ([], [], [])
        )
        same = shared and (low, high) == (common_low, common_high)
        own = differences if same else _means_between(ours, theirs, seeds, low, high)[2]
        interval, own_interval = paired_interval(differences), paired_interval(own)
        rows.append(
            {
                "config": config,
                "baseline": twin,
                "sparsity_low": common_low if shared else math.nan,
                "sparsity_high": common_high if shared else math.nan,
                "auc_mean": _mean(alds),
                "auc_std": _std(alds),
                "baseline_auc_mean": _mean(imp),
                "baseline_auc_std": _std(imp),
                "difference_mean": _mean(differences),
                "difference_std": _std(differences),
                "difference_ci_low": interval[0],
                "difference_ci_high": interval[1],
                "paired_n": len(differences),
                "pair_sparsity_low": low,
                "pair_sparsity_high": high,
                "pair_difference_mean": _mean(own),
                "pair_difference_ci_low": own_interval[0],
                "pair_difference_ci_high": own_interval[1],
            }
        )
    table = _judged(pd.DataFrame(rows, columns=columns), margin)
    if not shared and len(table):
        table["verdict"] = NO_COMMON_RANGE
    return table


NO_COMMON_RANGE = "no sparsity range common to every pair"


def _means_between(
    ours: Mapping[Any, _Curve],
    theirs: Mapping[Any, _Curve],
    seeds: Sequence[Any],
    low: float,
    high: float,
) -> tuple[list[float], list[float], list[float]]:
    """Per seed, both arms' mean accuracy between two sparsities, and their differences."""
    alds = [mean_between(*ours[seed], low, high) for seed in seeds]
    imp = [mean_between(*theirs[seed], low, high) for seed in seeds]
    return alds, imp, [a - b for a, b in zip(alds, imp, strict=True)]


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
        *statistics.judged_columns(margin),
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
    # Every seed stayed within the tolerance to its last step: the true value may be higher.
    table["within_lower_bound"] = (table["within_n"] > 0) & (
        table["within_to_end"] == table["within_n"]
    )
    return table[[c for c in columns if c in table]].sort_values(
        [c for c in fields if c in table], ignore_index=True
    )

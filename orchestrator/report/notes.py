"""The report's notes: what a reader of the tables must know beside them, in sentences.

Trials left out of the aggregates and missing twins (:func:`report_notes`), the seeds the
primary endpoint needs (:func:`planner_notes`) and the layers IMP emptied
(:func:`collapse_notes`): each a pure function of computed tables, so above the modules that
compute them, and no table of the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from orchestrator import plan
from orchestrator.report import planner
from orchestrator.report.describe import COLLAPSED
from orchestrator.report.schema import NOTE_LIMIT, RATE, shorten

__all__ = ["NOTED", "collapse_notes", "planner_notes", "report_notes"]


def report_notes(
    trials: pd.DataFrame, curves: pd.DataFrame, pairs: Mapping[str, str], counts: Mapping[str, int]
) -> list[str]:
    """What a reader of the aggregates must know: trials left out of them, missing baselines.

    ``trials`` is the :func:`describe.trials_table`; ``counts`` the trials by state.
    """
    notes = []
    for state, verb in (("RUNNING", "still running"), ("PRUNED", "pruned"), ("FAIL", "failed")):
        rows = trials[trials["state"] == state]
        if len(rows):
            listed = "; ".join(
                f"{int(number)} ({shorten(note, NOTE_LIMIT)})"
                for number, note in zip(rows["number"], rows["note"], strict=True)
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


def planner_notes(
    endpoint: pd.DataFrame,
    margin: float | None,
    power: float,
    names: Mapping[Any, str] | None = None,
) -> list[str]:
    """The seeds each ALDS configuration's primary endpoint (:func:`compare.endpoint_table`)
    needs for ``power`` that the report's rule reaches a verdict within ±``margin``
    (:func:`planner.plan_seeds`, over the endpoint's family), as ranges from the paired std
    and its upper 95% bound; a configuration of fewer than :data:`planner.MIN_SEEDS` paired
    seeds gets none, and without a margin there is nothing to plan for."""
    if margin is None or endpoint.empty:
        return []
    family = int(endpoint["family_size"].max())
    plannable = (endpoint["paired_n"] >= planner.MIN_SEEDS) & (
        endpoint["difference_std"] > planner.NO_SPREAD_STD
    )
    # Only the plans shown are computed: a sampled sweep has thousands of configurations.
    notes = []
    for row in endpoint[plannable].head(NOTED).to_dict("records"):
        std, n = row["difference_std"], int(row["paired_n"])
        found = planner.plan_seeds(std, n, margin, family, power)
        if found is not None:
            name = (names or {}).get(row["config"], row["config"])
            notes.append(f"seeds for {name}: {found.describe()}")
    unplanned = list(endpoint.loc[~plannable, "config"])
    planned = len(endpoint) - len(unplanned)
    if planned > NOTED:
        notes.append(f"{planned - NOTED} more configurations can be planned (not listed)")
    if unplanned:
        notes.append(
            f"no seed plan for {len(unplanned)} configuration(s) with fewer than "
            f"{planner.MIN_SEEDS} paired seeds or no spread: "
            + ", ".join(unplanned[:NOTED])
            + (" ..." if len(unplanned) > NOTED else "")
        )
    return notes


NOTED = 10  # configurations a note names one by one; a sampled sweep has thousands


def collapse_notes(layers: pd.DataFrame, names: Mapping[Any, str] | None = None) -> list[str]:
    """The layers IMP emptied (at most :data:`COLLAPSED` of their weights left in a seed), and
    where ALDS kept a layer its twin emptied: the seed's third guess, answered."""
    notes = []
    emptied = layers[layers["collapsed"]]
    configs = list(emptied.groupby("config", sort=True))
    for config, group in configs[:NOTED]:
        listed = ", ".join(
            f"{layer} ({100 * left:.2g}% left)"
            for layer, left in zip(group["layer"], group["remaining_min"], strict=True)
        )
        notes.append(f"{(names or {}).get(config, str(config))}: IMP emptied {listed}")
    if len(configs) > NOTED:
        notes.append(f"{len(configs) - NOTED} more configurations emptied a layer (layers.csv)")
    kept = list(layers[layers["baseline_collapsed"] & ~layers["collapsed"]].groupby("config"))
    for config, group in kept[:NOTED]:
        listed = ", ".join(group["layer"])
        name = (names or {}).get(config, str(config))
        notes.append(f"{name} kept layers its IMP-only twin emptied: {listed}")
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

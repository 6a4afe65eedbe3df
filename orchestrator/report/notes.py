"""The report's notes: what a reader of the tables must know beside them, in sentences.

Trials left out of the aggregates and missing twins (:func:`report_notes`), the seeds the
primary endpoint needs (:func:`planner_note`) and the layers IMP emptied
(:func:`collapse_notes`): each a pure function of computed tables, so above the modules that
compute them, and no table of the registry.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from orchestrator import plan
from orchestrator.report import statistics
from orchestrator.report.describe import COLLAPSED
from orchestrator.report.schema import NOTE_LIMIT, RATE, shorten

__all__ = ["HALFWIDTH", "NOTED", "collapse_notes", "planner_note", "report_notes"]


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


HALFWIDTH = 0.0025  # the seed planner's default target: a 95% interval of ±0.25 points


def planner_note(endpoint: pd.DataFrame, halfwidth: float = HALFWIDTH) -> list[str]:
    """How many seeds the primary endpoint (:func:`compare.endpoint_table`) needs for a 95% interval
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
            f"{layer} ({100 * left:.2g}% left)"
            for layer, left in zip(group["layer"], group["remaining_min"], strict=True)
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

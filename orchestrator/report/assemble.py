"""A report assembled: what it is computed from, read from the stores (:func:`build`) or from
an earlier report's export (:func:`rebuild`), every table of ``tables.TABLES`` and figure of
``figures.FIGURES`` computed from it, and the files written and logged (:func:`publish`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from orchestrator import plan, stored_names
from orchestrator.config import ConfigError, SweepConfig
from orchestrator.report import looks, stamp as report_stamp, tables
from orchestrator.report.exported import read_export
from orchestrator.report.figures import FIGURES
from orchestrator.report.notes import collapse_notes, planner_notes, report_notes
from orchestrator.report.render import write
from orchestrator.report.schema import LEVELS, RATE, TOLERANCE, Report
from orchestrator.report.sources import (
    Curves,
    config_label,
    label_steps,
    objective_names,
    open_tracking,
    read_trials,
    twin_label,
)
from orchestrator.study import growth, snapshot
from orchestrator.study.counts import count_states
from orchestrator.tracking.runs import log_artifacts, resolve_pending
from orchestrator.trial.spec import twin_configuration

__all__ = ["build", "draw", "publish", "rebuild"]


def build(
    study: optuna.Study,
    config: SweepConfig,
    *,
    tracking_uri: str | None = None,
    tolerance: float = TOLERANCE,
    levels: Sequence[float] = LEVELS,
    curves: Curves | None = None,
    margin: float | None = None,
    power: float | None = None,
) -> Report:
    """Read the study and its runs and compute every table and figure of the report.

    ``tracking_uri`` defaults to the one the sweep recorded. ``curves`` holds what earlier
    reads of ``study`` (the same object, its storage's cache kept) read; without it every
    trial and curve is read, in one pass. ``margin``: the equivalence margin of the paired
    differences (TOST, in accuracy: 0.005 is half a point); None tests none. ``power``: the seed
    planner's wanted chance of a verdict. Without them the sweep's ``report.margin`` and
    ``report.power`` apply; the primary endpoint is its ``report.primary``. Raises
    :class:`ConfigError` for an empty study, an unreachable tracking store, or a study none of
    whose runs is found there.
    """
    margin = _margin(config, margin)
    read = _read(study, config, tracking_uri, tolerance, levels, curves, margin)
    growth_notes = _growth_notes(read.left_out, growth.provenance(read.asked))
    return _computed(read, config, power, growth_notes)


def rebuild(
    folder: Path,
    config: SweepConfig,
    *,
    tolerance: float = TOLERANCE,
    levels: Sequence[float] = LEVELS,
    margin: float | None = None,
    power: float | None = None,
) -> Report:
    """:func:`build` from the trials and steps an earlier report of ``config`` exported to
    ``folder`` (``trials.csv``, ``steps.csv``), with neither the study nor MLflow.

    What the export does not hold is left out: the Pareto front of a sweep of several
    objectives (its best table lists none) and the reasons a trial's run could not be read.
    Raises :class:`ConfigError` naming a missing file or column.
    """
    margin = _margin(config, margin)
    params = list(config.search.space)
    trials, steps = read_export(folder, params)
    objectives = [c.removeprefix("value:") for c in map(str, trials) if c.startswith("value:")]
    inputs = _inputs(
        trials,
        steps,
        config,
        objectives=objectives,
        directions=[o.direction for o in config.search.objective],
        front=[],
        tolerance=tolerance,
        levels=levels,
        margin=margin,
    )
    read = _Read(
        inputs=inputs,
        asked=[],
        left_out=0,
        tracking_uri=f"(recomputed from {folder / 'steps.csv'})",
        parent=None,
        title=_title(config.name, config),
    )
    return _computed(read, config, power, [])


def publish(
    result: Report,
    folder: Path,
    formats: Sequence[str],
    stamp: str | None = None,
    *,
    log: bool = True,
) -> list[str]:
    """Write ``result`` into ``folder`` and log the files to its sweep's parent MLflow run
    (unless not ``log``).

    Args:
        result: a built report.
        folder: where its files go (created).
        formats: the table formats (:func:`parse_formats`).
        stamp: what it was built from (``stamp.of``), recorded in ``folder`` once written and
            logged: the next report of the same stamp rewrites nothing.
        log: log the files to MLflow (``orchestrate report --no-log``: the files only).

    Returns:
        What to tell the user, a line each: the trials' states, the notes, the files written,
        where they were logged (or a line starting ``warning:`` when the store refused them).
    """
    written = write(result, folder, formats)
    lines = [f"study '{result.study}': {result.status()}", *(f"  {n}" for n in result.notes)]
    lines.append(f"wrote {len(written)} files to {folder}")
    if result.parent_run_id and log:
        try:
            logged = log_artifacts(result.tracking_uri, result.parent_run_id, written)
        except ConfigError as exc:
            lines.append(f"warning: {exc}")
            return lines
        lines.append(f"logged them to MLflow run {result.parent_run_id} under {logged}/")
    if stamp is not None:
        report_stamp.keep(folder, stamp, written)
    return lines


def _margin(config: SweepConfig, margin: float | None) -> float | None:
    """The equivalence margin in accuracy: the one given, else the sweep's ``report.margin``."""
    if margin is None and config.report.margin is not None:
        return config.report.margin / 100
    return margin


def _computed(
    read: _Read, config: SweepConfig, power: float | None, growth_notes: list[str]
) -> Report:
    """Every table and figure of the report, from what was read."""
    inputs = read.inputs
    computed = {
        spec.name: inputs.table(spec.name) for spec in tables.TABLES if spec.applies(inputs)
    }
    counts = count_states(computed["trials"]["state"])
    names = inputs.names
    return Report(
        study=config.name,
        params=inputs.params,
        objectives=inputs.objectives,
        directions=inputs.directions,
        counts=counts,
        notes=[
            *report_notes(computed["trials"], computed["curves"], inputs.pairs, counts),
            *collapse_notes(computed["layers"], names),
            *planner_notes(
                computed["endpoint"],
                inputs.margin,
                power or config.report.power,
                names,
            ),
            *growth_notes,
        ],
        tables=computed,
        figures=_draw(inputs, read.title),
        names=names,
        tracking_uri=read.tracking_uri,
        parent_run_id=read.parent,
        tolerance=inputs.tolerance,
        margin=inputs.margin,
    )


def draw(
    study: optuna.Study,
    config: SweepConfig,
    *,
    tracking_uri: str | None = None,
    curves: Curves | None = None,
) -> dict[str, Any]:
    """The report's figures alone (what the sweep's parent logs as it runs): only the tables
    they draw are computed. Raises as :func:`build`."""
    read = _read(study, config, tracking_uri, TOLERANCE, LEVELS, curves)
    return _draw(read.inputs, read.title)


@dataclass
class _Read:
    """What the report read: its inputs, and what it says of where they came from."""

    inputs: tables.Inputs
    asked: list[optuna.trial.FrozenTrial]
    left_out: int
    tracking_uri: str
    parent: str | None
    title: str


def _read(
    study: optuna.Study,
    config: SweepConfig,
    tracking_uri: str | None,
    tolerance: float,
    levels: Sequence[float],
    curves: Curves | None,
    margin: float | None = None,
) -> _Read:
    params = list(config.search.space)
    if curves is None:  # one read: the trials with their curves in one pass
        stored = snapshot.trials(study, curves=True)
        curves = Curves()
    else:  # a reader held across reads: Optuna's cache reads what changed since
        stored = study.get_trials(deepcopy=False)
    asked = growth.in_sweep(config, stored)
    trials = read_trials(asked, study, params)
    if trials.empty:
        raise ConfigError(
            f"study '{study.study_name}' has no trials yet: run `orchestrate sweep` first"
        )
    client, tracking_uri = open_tracking(study, tracking_uri)
    # The trials table names its column of run ids as the attribute it holds.
    runs = {
        int(number): run_id
        for number, run_id in zip(trials["number"], trials[stored_names.TRIAL_RUN_ID], strict=True)
        if isinstance(run_id, str)
    }
    parent = study.user_attrs.get(stored_names.STUDY_PARENT_RUN_ID)
    # Every id stays a string: a provisional one is replaced by its run's, never by None.
    resolved = {n: r for n, r in resolve_pending(client, parent, runs).items() if r is not None}
    if resolved != runs:
        runs = resolved
        trials[stored_names.TRIAL_RUN_ID] = trials["number"].map(lambda n: runs.get(int(n)))
    steps, missing = curves.read(asked, runs, client)
    if runs and len(missing) == len(runs):
        raise ConfigError(
            f"none of the {len(runs)} MLflow runs of study '{study.study_name}' is in the "
            f"tracking store {tracking_uri}: is --tracking-uri the sweep's?"
        )
    if steps.empty:
        counts = count_states(trials["state"])
        states = sorted(((n, s) for s, n in counts.items() if n), key=lambda c: -c[0])
        raise ConfigError(
            f"study '{study.study_name}' has {len(trials)} trials but none has logged a step "
            f"yet ({', '.join(f'{n} {s.lower()}' for n, s in states)}); nothing to report"
        )
    trials["missing"] = trials["number"].map(missing)
    directions = [d.name.lower() for d in study.directions]
    inputs = _inputs(
        trials,
        steps,
        config,
        objectives=objective_names(study),
        directions=directions,
        front=[t.number for t in study.best_trials] if len(directions) > 1 else [],
        tolerance=tolerance,
        levels=levels,
        margin=margin,
        decided=study.user_attrs.get(stored_names.STUDY_DECISIONS),
    )
    return _Read(
        inputs=inputs,
        asked=asked,
        left_out=len(stored) - len(asked),
        tracking_uri=tracking_uri,
        parent=parent,
        title=_title(study.study_name, config),
    )


def _title(name: str, config: SweepConfig) -> str:
    return f"{name}: {config.model} on {config.dataset.name}"


def _inputs(
    trials: pd.DataFrame,
    steps: pd.DataFrame,
    config: SweepConfig,
    *,
    objectives: list[str],
    directions: list[str],
    front: list[int],
    tolerance: float,
    levels: Sequence[float],
    margin: float | None,
    decided: Mapping[str, Mapping[str, Any]] | None = None,
) -> tables.Inputs:
    """The tables' inputs from the trials as read and their unlabelled steps: each step
    labelled with its trial's configuration, the controls set apart with their twins; a
    sequential sweep's decisions as its study kept them (``decided``)."""
    params = list(config.search.space)
    fixed = {RATE: config.alds.rate} if RATE not in params else {}
    # A control's name or None, however it was read (the study, or a CSV's empty cells).
    named = trials[plan.CONTROL]
    trials[plan.CONTROL] = named.astype(object).where(named.notna(), None)
    labelled = label_steps(steps, trials, params, fixed)
    # The controls (imp.controls) are compared with their twins alone, in their own table.
    controls = trials[plan.CONTROL].notna()
    of_controls = labelled["trial"].isin(trials.loc[controls, "number"])
    control_steps = labelled[of_controls].copy()
    # Labelled per trial, not per step, as label_steps does.
    twins = {row["number"]: twin_label(row, params) for row in trials[controls].to_dict("records")}
    control_steps["twin"] = control_steps["trial"].map(twins)
    return tables.Inputs(
        trials=trials[~controls],
        steps=labelled[~of_controls],
        control_trials=trials[controls],
        control_steps=control_steps,
        params=params,
        twin_lookup=functools.partial(twin_configuration, config),
        label=functools.partial(config_label, params=params),
        name=functools.partial(plan.configuration_name, config),
        objectives=objectives,
        directions=directions,
        front=front,
        tolerance=tolerance,
        levels=levels,
        margin=margin,
        primary_level=config.report.level,
        chance=_chance(config),
        decide=functools.partial(looks.decisions_table, config, params=params, decided=decided)
        if config.sequential is not None
        else None,
    )


def _chance(config: SweepConfig) -> float:
    """A guess's accuracy on the sweep's dataset: 1/classes."""
    from orchestrator.data import registry

    shape = registry.spec(config.dataset.name).shape
    classes = shape.num_classes if shape is not None else config.dataset.synthetic.num_classes
    return 1.0 / classes


def _draw(inputs: tables.Inputs, title: str) -> dict[str, Any]:
    """Every figure of :data:`FIGURES` that has something to draw."""
    drawn = {
        spec.name: spec.draw(
            inputs.table(spec.table), inputs.params, title=title, names=inputs.names
        )
        for spec in FIGURES
    }
    return {name: figure for name, figure in drawn.items() if figure is not None}


def _growth_notes(left_out: int, provenance: dict[str, set[str]]) -> list[str]:
    """What a reader of a grown sweep must know: trials its YAML no longer asks for, and
    results computed by more than one version of the code."""
    notes = []
    if left_out:
        notes.append(
            f"{left_out} trial(s) of the study are left out: earlier versions of the YAML asked "
            "for them (another seed, configuration or field value)"
        )
    names = {
        stored_names.TRIAL_PACKAGE_VERSION: "package",
        stored_names.TRIAL_RESULTS_VERSION: "results",
    }
    for attribute, name in names.items():
        if len(provenance[attribute]) > 1:
            versions = ", ".join(sorted(provenance[attribute]))
            notes.append(f"the complete trials were computed by {name} versions {versions}")
    return notes

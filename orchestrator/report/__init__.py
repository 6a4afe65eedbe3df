"""``orchestrate report``: tables and plots from a sweep's study and its MLflow curves.

The seed's question is whether ALDS before IMP gives a better network than IMP alone at the
same sparsity, and at which ALDS rate. :func:`build` reads the stores (``sources``), computes
every table of the registry ``tables.TABLES`` and draws every figure of ``figures.FIGURES``;
:func:`write` renders them (``render``). The names they share are in ``schema``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import optuna

from orchestrator import keys, plan, results
from orchestrator.config import ConfigError, SweepConfig
from orchestrator.counts import count_states
from orchestrator.report import tables
from orchestrator.report.figures import FIGURES
from orchestrator.report.render import present, write
from orchestrator.report.schema import (
    FORMATS,
    LEVELS,
    METRICS,
    RATE,
    TOLERANCE,
    Report,
)
from orchestrator.report.sources import (
    config_label,
    label_steps,
    objective_names,
    open_tracking,
    read_steps,
    read_trials,
)
from orchestrator.tracking import resolve_pending

__all__ = ["FORMATS", "LEVELS", "METRICS", "TOLERANCE", "Report", "build", "present", "write"]


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
    stored = study.get_trials(deepcopy=False)
    asked = results.in_sweep(config, stored)
    trials = read_trials(asked, study, params)
    if trials.empty:
        raise ConfigError(
            f"study '{study.study_name}' has no trials yet: run `orchestrate sweep` first"
        )
    counts = count_states(trials["state"])
    client, tracking_uri = open_tracking(study, tracking_uri)
    # The trials table names its column of run ids as the attribute it holds.
    runs = {
        int(number): run_id
        for number, run_id in zip(trials["number"], trials[keys.TRIAL_RUN_ID], strict=True)
        if isinstance(run_id, str)
    }
    parent = study.user_attrs.get(keys.STUDY_PARENT_RUN_ID)
    resolved = resolve_pending(client, parent, runs)
    if resolved != runs:
        runs = resolved
        trials[keys.TRIAL_RUN_ID] = trials["number"].map(lambda n: runs.get(int(n)))
    steps, missing = read_steps(client, runs)
    if runs and len(missing) == len(runs):
        raise ConfigError(
            f"none of the {len(runs)} MLflow runs of study '{study.study_name}' is in the "
            f"tracking store {tracking_uri}: is --tracking-uri the sweep's?"
        )
    if steps.empty:
        states = sorted(((n, s) for s, n in counts.items() if n), key=lambda c: -c[0])
        raise ConfigError(
            f"study '{study.study_name}' has {len(trials)} trials but none has logged a step "
            f"yet ({', '.join(f'{n} {s.lower()}' for n, s in states)}); nothing to report"
        )
    trials["missing"] = trials["number"].map(missing)
    fixed = {RATE: config.alds.rate} if RATE not in params else {}
    directions = [d.name.lower() for d in study.directions]
    inputs = tables.Inputs(
        trials=trials,
        steps=label_steps(steps, trials, params, fixed),
        params=params,
        twin_of=functools.partial(plan.twin_of, config),
        label=functools.partial(config_label, params=params),
        objectives=objective_names(study),
        directions=directions,
        front=[t.number for t in study.best_trials] if len(directions) > 1 else [],
        tolerance=tolerance,
        levels=levels,
    )
    computed = {spec.name: inputs.table(spec.name) for spec in tables.TABLES}
    title = f"{study.study_name}: {config.model} on {config.dataset.name}"
    figures = {spec.name: spec.draw(computed[spec.table], params, title=title) for spec in FIGURES}
    return Report(
        study=study.study_name,
        params=params,
        objectives=inputs.objectives,
        directions=directions,
        counts=counts,
        notes=[
            *tables.report_notes(computed["trials"], computed["curves"], inputs.pairs, counts),
            *tables.collapse_notes(computed["layers"]),
            *_growth_notes(len(stored) - len(asked), results.provenance(asked)),
        ],
        tables=computed,
        figures={name: figure for name, figure in figures.items() if figure is not None},
        tracking_uri=tracking_uri,
        parent_run_id=parent,
        tolerance=tolerance,
    )


def _growth_notes(left_out: int, provenance: dict[str, set[str]]) -> list[str]:
    """What a reader of a grown sweep must know: trials its YAML no longer asks for, and
    results computed by more than one version of the code."""
    notes = []
    if left_out:
        notes.append(
            f"{left_out} trial(s) of the study are left out: earlier versions of the YAML asked "
            "for them (another seed, configuration or field value)"
        )
    names = {keys.TRIAL_PACKAGE_VERSION: "package", keys.TRIAL_RESULTS_VERSION: "results"}
    for attribute, name in names.items():
        if len(provenance[attribute]) > 1:
            versions = ", ".join(sorted(provenance[attribute]))
            notes.append(f"the complete trials were computed by {name} versions {versions}")
    return notes

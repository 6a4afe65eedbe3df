"""What a sweep shows while it runs and when it ends: trial counts, the best value, workers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchestrator import plan, stored_names
from orchestrator.config import SweepConfig
from orchestrator.study import counts as counts_of, growth

__all__ = ["failures", "render", "rows", "summary"]


def rows(
    study: optuna.Study, config: SweepConfig, trials: Sequence[FrozenTrial] | None = None
) -> dict[str, Any]:
    """Counts by state, the best value and the running trials of the sweep: of ``trials``
    (by default the trials of ``study`` its YAML asks for, :func:`growth.in_sweep`)."""
    if trials is None:
        trials = growth.in_sweep(config, study.get_trials(deepcopy=False))
    counts = counts_of.trial_states(trials)
    now = dt.datetime.now()
    running = [
        {
            "trial": t.number,
            "worker": _worker(t),
            "device": t.user_attrs.get(stored_names.TRIAL_DEVICE, "?"),
            "seed": t.user_attrs.get(stored_names.TRIAL_SEED),
            "configuration": plan.configuration_name(config, t.params),
            "step": t.user_attrs.get(stored_names.TRIAL_STEP, "-"),
            "elapsed": str(now - t.datetime_start).split(".")[0] if t.datetime_start else "-",
        }
        for t in trials
        if t.state == TrialState.RUNNING
    ]
    best = None
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if len(study.directions) == 1 and values:
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        best = max(values) if maximize else min(values)
    found: dict[str, Any] = {
        "counts": counts,
        "running": running,
        "best": best,
        "twins": counts_of.twins(trials),
    }
    if config.sequential is not None and config.report.margin is not None:
        from orchestrator.report import looks

        # A sequential sweep's size is what its looks have queued so far.
        found["queued_so_far"] = len(trials)
        found["decisions"] = [
            f"{state.config}: {state.describe(config.report.margin / 100)}"
            for state in looks.look(
                config, trials, study.user_attrs.get(stored_names.STUDY_DECISIONS)
            )
        ]
    return found


def _worker(trial: FrozenTrial) -> str:
    label = trial.user_attrs.get(stored_names.TRIAL_WORKER, "?")
    task = trial.user_attrs.get(stored_names.TRIAL_TASK)
    return f"{label} (task {task})" if task else label


def render(progress: dict[str, Any], config: SweepConfig) -> Group:
    """A rich renderable of :func:`rows`."""
    counts = progress["counts"]
    done = counts_of.finished_count(counts)
    best = "-" if progress["best"] is None else f"{progress['best']:.4f}"
    expected = progress.get("queued_so_far", plan.total_trials(config) + progress.get("twins", 0))
    head = Text(
        f"{config.name}: done {done}/{expected} · "
        f"complete {counts['COMPLETE']} · "
        f"running {counts['RUNNING']} · pruned {counts['PRUNED']} · failed {counts['FAIL']} · "
        f"queued {counts['WAITING']} · best {best}"
    )
    if counts.get(counts_of.RETRIED):
        head.append(f" · rerun {counts[counts_of.RETRIED]} (interrupted, or failed and retried)")
    table = Table(show_edge=False, pad_edge=False)
    columns = ("trial", "worker", "device", "seed", "configuration", "step", "elapsed")
    for column in columns:
        table.add_column(column)
    for row in progress["running"]:
        table.add_row(*(str(row[c]) for c in columns))
    parts: list[Any] = [head]
    if progress.get("decisions"):
        parts.append(Text("\n".join(progress["decisions"])))
    if progress["running"]:
        parts.append(table)
    return Group(*parts)


def summary(
    study: optuna.Study,
    config: SweepConfig,
    asked: Sequence[FrozenTrial] | None = None,
    *,
    left_out: int = 0,
    limit: int | None = None,
) -> Table:
    """One row per trial the sweep asks for: number, state, seed, parameters, values, and
    where a result was reused, the trial it came from.

    Args:
        study: the sweep's study.
        config: the sweep's config.
        asked: its trials the YAML asks for (by default read from ``study``).
        left_out: how many trials of the study ``asked`` leaves out (with ``asked``).
        limit: the most trials shown, the latest (all by default).
    """
    if asked is None:
        trials = study.get_trials(deepcopy=False)
        asked = growth.in_sweep(config, trials)
        left_out = len(trials) - len(asked)
    captions = []
    if left_out:
        captions.append(f"{left_out} trial(s) of earlier versions of the YAML not shown")
    if limit is not None and len(asked) > limit:
        captions.append(
            f"the latest {limit} of {len(asked)} trials: --all shows every one, "
            "`orchestrate report` writes them all to trials.csv"
        )
        asked = asked[-limit:]
    table = Table(title=f"study {study.study_name}", caption="; ".join(captions) or None)
    for column in ("trial", "state", "seed", "configuration", "value(s)", "note"):
        table.add_column(column)
    repeated_by = counts_of.retries(asked)
    for trial in asked:
        values = "-" if trial.values is None else ", ".join(f"{v:.4f}" for v in trial.values)
        table.add_row(
            str(trial.number),
            trial.state.name,
            str(trial.user_attrs.get(stored_names.TRIAL_SEED, "-")),
            plan.configuration_name(config, trial.params) if trial.params else "-",
            values,
            _note(trial, repeated_by.get(trial.number)),
        )
    return table


def _note(trial: FrozenTrial, repeated_by: int | None = None) -> str:
    reused = trial.user_attrs.get(stored_names.TRIAL_REUSED_TRIAL)
    if reused:
        return f"copied from {reused}"
    reason = str(trial.user_attrs.get(stored_names.TRIAL_FAIL_REASON, ""))[:60]
    return reason if repeated_by is None else f"{reason}; run again as trial {repeated_by}"


def failures(study: optuna.Study, config: SweepConfig) -> list[str]:
    """A line for each trial that failed after its retries: its configuration, seed and why."""
    lines = []
    for trial in counts_of.failed_for_good(study, config):
        seed = trial.user_attrs.get(stored_names.TRIAL_SEED, "-")
        reason = trial.user_attrs.get(stored_names.TRIAL_FAIL_REASON) or "no reason recorded"
        label = plan.configuration_name(config, trial.params)
        lines.append(f"trial {trial.number} ({label}, seed {seed}) failed: {reason}")
    return lines

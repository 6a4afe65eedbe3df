"""What a sweep shows while it runs and when it ends: trial counts, the best value, workers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchestrator import keys
from orchestrator.config import SweepConfig, describe_params

if TYPE_CHECKING:
    from orchestrator.slurm import Task

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

__all__ = [
    "count_states",
    "expected",
    "failed_for_good",
    "finished",
    "finished_count",
    "render",
    "rows",
    "slurm_table",
    "summary",
]


def count_states(states: Iterable[str]) -> dict[str, int]:
    """How many of ``states`` (trial state names) are in each state, every state present."""
    counts = {state.name: 0 for state in TrialState}
    for state in states:
        counts[state] += 1
    return counts


def finished_count(counts: dict[str, int]) -> int:
    """How many trials of :func:`count_states`' counts are in an end state."""
    return sum(counts[state.name] for state in FINISHED)


def rows(study: optuna.Study) -> dict[str, Any]:
    """Counts by state, the best value and the running trials of ``study``."""
    trials = study.get_trials(deepcopy=False)
    counts = count_states(trial.state.name for trial in trials)
    now = dt.datetime.now()
    running = [
        {
            "trial": t.number,
            "worker": _worker(t),
            "device": t.user_attrs.get(keys.TRIAL_DEVICE, "?"),
            "seed": t.user_attrs.get(keys.TRIAL_SEED),
            "params": describe_params(t.params),
            "step": t.user_attrs.get(keys.TRIAL_STEP, "-"),
            "elapsed": str(now - t.datetime_start).split(".")[0] if t.datetime_start else "-",
        }
        for t in trials
        if t.state == TrialState.RUNNING
    ]
    best = None
    if len(study.directions) == 1 and any(t.state == TrialState.COMPLETE for t in trials):
        best = study.best_value
    return {"counts": counts, "running": running, "best": best, "twins": _twins(trials)}


def _worker(trial: FrozenTrial) -> str:
    label = trial.user_attrs.get(keys.TRIAL_WORKER, "?")
    task = trial.user_attrs.get(keys.TRIAL_SLURM_TASK)
    return f"{label} (Slurm {task})" if task else label


def expected(study: optuna.Study, config: SweepConfig) -> int:
    """How many trials the sweep runs: its own, and the IMP-only twins of sampled ones."""
    return config.total_trials + _twins(study.get_trials(deepcopy=False))


def _twins(trials: Iterable[FrozenTrial]) -> int:
    """The twins enqueued for sampled trials (their retries not counted again)."""
    return sum(
        1
        for t in trials
        if keys.TRIAL_TWIN_OF in t.user_attrs and keys.TRIAL_FAILED_TRIAL not in t.system_attrs
    )


def finished(study: optuna.Study) -> int:
    """Trials that reached an end state (a failed trial that is retried counts once)."""
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    retried = _retried(study)
    return sum(1 for t in trials if not (t.state == TrialState.FAIL and t.number in retried))


def failed_for_good(study: optuna.Study) -> list[FrozenTrial]:
    """The FAIL trials that no retry follows: they failed after their last retry."""
    retried = _retried(study)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return [t for t in failed if t.number not in retried]


def _retried(study: optuna.Study) -> set[int]:
    """Numbers of the trials that a retry repeats."""
    return {
        t.system_attrs[keys.TRIAL_FAILED_TRIAL]
        for t in study.get_trials(deepcopy=False)
        if keys.TRIAL_FAILED_TRIAL in t.system_attrs
    }


def render(progress: dict[str, Any], config: SweepConfig) -> Group:
    """A rich renderable of :func:`rows`."""
    counts = progress["counts"]
    done = finished_count(counts)
    best = "-" if progress["best"] is None else f"{progress['best']:.4f}"
    head = Text(
        f"{config.name}: done {done}/{config.total_trials + progress.get('twins', 0)} · "
        f"complete {counts['COMPLETE']} · "
        f"running {counts['RUNNING']} · pruned {counts['PRUNED']} · failed {counts['FAIL']} · "
        f"queued {counts['WAITING']} · best {best}"
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("trial", "worker", "device", "seed", "params", "step", "elapsed"):
        table.add_column(column)
    for row in progress["running"]:
        table.add_row(
            *(
                str(row[c])
                for c in ("trial", "worker", "device", "seed", "params", "step", "elapsed")
            )
        )
    return Group(head, table) if progress["running"] else Group(head)


def slurm_table(tasks: Sequence[Task], jobs: Sequence[str], study: optuna.Study) -> Table:
    """The sweep's Slurm array tasks, with the trial each one runs."""
    running = {
        t.user_attrs.get(keys.TRIAL_SLURM_TASK): t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    }
    table = Table(title=f"Slurm job(s) {', '.join(jobs)}")
    for column in ("task", "state", "node / reason", "run time", "restarts", "trial"):
        table.add_column(column)
    for task in tasks:
        trial = running.get(task.id)
        table.add_row(
            task.id,
            task.state,
            task.where,
            task.run_time,
            str(task.restarts),
            "-" if trial is None else str(trial),
        )
    if not tasks:
        table.caption = "no task known to Slurm any more (ended jobs are forgotten after MinJobAge)"
    return table


def summary(study: optuna.Study) -> Table:
    """One row per trial: number, state, seed, parameters, values."""
    table = Table(title=f"study {study.study_name}")
    for column in ("trial", "state", "seed", "params", "value(s)", "note"):
        table.add_column(column)
    for trial in study.get_trials(deepcopy=False):
        values = "-" if trial.values is None else ", ".join(f"{v:.4f}" for v in trial.values)
        table.add_row(
            str(trial.number),
            trial.state.name,
            str(trial.user_attrs.get(keys.TRIAL_SEED, "-")),
            describe_params(trial.params),
            values,
            str(trial.user_attrs.get(keys.TRIAL_FAIL_REASON, ""))[:60],
        )
    return table

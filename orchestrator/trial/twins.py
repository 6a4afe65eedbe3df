"""Paired trials: an ALDS trial's twin is the IMP-only trial (ALDS rate 0) with the same seed
and the parameters :func:`plan.twin_of` gives (the same IMP schedule and training), so
the two differ only by ALDS; a lottery-ticket control's twin is the IMP-only trial it controls
(its parameters less :data:`plan.CONTROL`). The queue enqueues the twins; this module links
their runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from orchestrator import plan, stored_names
from orchestrator.config import SweepConfig

__all__ = ["link"]

# Of several baseline trials with the twin's key (a failed one and its retry), the run of the
# one that completed wins, then the one running.
_PREFERENCE = {TrialState.COMPLETE: 2, TrialState.RUNNING: 1}


def _key(trial: FrozenTrial, config: SweepConfig) -> tuple[Any, str]:
    """What a trial shares with its twin: the seed and the twin's parameters."""
    params = plan.without_control(trial.params)
    if _alds(trial, config):
        params = plan.twin_of(config, params)
    return (trial.user_attrs.get(stored_names.TRIAL_SEED), json.dumps(params, sort_keys=True))


def _alds(trial: FrozenTrial, config: SweepConfig) -> bool:
    return plan.is_alds(plan.rate_of(config, trial.params))


def _paired(trial: FrozenTrial, config: SweepConfig) -> bool:
    """Whether a trial is compared with a twin: an ALDS trial, or a control."""
    return _alds(trial, config) or plan.control_of(trial.params) is not None


def _run_id(trial: FrozenTrial) -> str | None:
    run_id = trial.user_attrs.get(stored_names.TRIAL_RUN_ID)
    # A run created during a tracking outage has only a provisional id until it is sent.
    return None if not run_id or run_id.startswith(stored_names.PENDING_RUN_ID) else run_id


def _tracked(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return sorted(
        (t for t in trials if _run_id(t) and stored_names.TRIAL_SEED in t.user_attrs),
        key=lambda t: (_PREFERENCE.get(t.state, 0), t.number),
    )


def link(
    study: optuna.Study,
    config: SweepConfig,
    number: int,
    tag: Callable[[str, str], None],
) -> dict[str, str]:
    """Pair trial ``number`` with its twins: an ALDS trial or a control with its baseline, a
    baseline with every ALDS trial and control it is the twin of. Call it when the trial
    starts and when it ends.

    Args:
        study: the sweep's study.
        config: the sweep's config (the ALDS rate of trials that do not search it).
        number: the trial whose pairs to link.
        tag: called as ``tag(run_id, baseline_run_id)`` for each pair found.

    Returns:
        The pairs linked, ALDS or control run id → baseline run id.
    """
    trials = _tracked(study.get_trials(deepcopy=False))
    current = next((t for t in trials if t.number == number), None)
    if current is None:
        return {}
    key = _key(current, config)
    same = [t for t in trials if _key(t, config) == key]
    baselines = [t for t in same if not _paired(t, config)]
    if not baselines:
        return {}
    baseline = baselines[-1]  # the most preferred
    baseline_run = str(_run_id(baseline))
    if _paired(current, config):
        pairs = {str(_run_id(current)): baseline_run}
    elif current.number == baseline.number:
        pairs = {str(_run_id(t)): baseline_run for t in same if _paired(t, config)}
    else:
        pairs = {}
    for paired_run, baseline_run in pairs.items():
        tag(paired_run, baseline_run)
    return pairs


MARGIN = 0.01  # one accuracy point: the objective's unit


PATIENCE = 3  # consecutive grid levels the trial must trail at


class PairedPruner(BasePruner):
    """Prunes an ALDS trial that trails its own twin by more than ``margin`` at each of its
    last ``patience`` reported levels.

    Args:
        config: the sweep (its searched paths and fixed ALDS rate find the twin).
        margin: how far behind, in the objective's unit, counts as trailing.
        patience: how many consecutive levels it must trail at.
    """

    def __init__(
        self, config: SweepConfig, margin: float = MARGIN, patience: int = PATIENCE
    ) -> None:
        self.config = config
        self.margin = margin
        self.patience = patience

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if not plan.is_alds(plan.rate_of(self.config, trial.params)):
            return False
        levels = sorted(trial.intermediate_values)[-self.patience :]
        if len(levels) < self.patience:
            return False
        twin = self._twin(study, trial)
        if twin is None or not set(levels) <= set(twin.intermediate_values):
            return False
        behind = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        return all(
            behind * (twin.intermediate_values[level] - trial.intermediate_values[level])
            > self.margin
            for level in levels
        )

    def _twin(self, study: optuna.Study, trial: FrozenTrial) -> FrozenTrial | None:
        """The trial's twin that has reported most (a retry's or the first try's)."""
        params = plan.twin_of(self.config, trial.params)
        seed = trial.user_attrs.get(stored_names.TRIAL_SEED)
        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL)
        found = [
            t
            for t in study.get_trials(deepcopy=False, states=states)
            if t.params == params and t.user_attrs.get(stored_names.TRIAL_SEED) == seed
        ]
        return max(found, key=lambda t: len(t.intermediate_values), default=None)

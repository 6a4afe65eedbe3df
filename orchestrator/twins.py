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
from optuna.trial import FrozenTrial, TrialState

from orchestrator import keys, plan
from orchestrator.config import SweepConfig
from orchestrator.outbox import PENDING

__all__ = ["link"]

# Of several baseline trials with the twin's key (a failed one and its retry), the run of the
# one that completed wins, then the one running.
_PREFERENCE = {TrialState.COMPLETE: 2, TrialState.RUNNING: 1}


def _key(trial: FrozenTrial, config: SweepConfig) -> tuple[Any, str]:
    """What a trial shares with its twin: the seed and the twin's parameters."""
    params = plan.without_control(trial.params)
    if _alds(trial, config):
        params = plan.twin_of(config, params)
    return (trial.user_attrs.get(keys.TRIAL_SEED), json.dumps(params, sort_keys=True))


def _alds(trial: FrozenTrial, config: SweepConfig) -> bool:
    return plan.is_alds(plan.rate_of(config, trial.params))


def _paired(trial: FrozenTrial, config: SweepConfig) -> bool:
    """Whether a trial is compared with a twin: an ALDS trial, or a control."""
    return _alds(trial, config) or plan.control_of(trial.params) is not None


def _run_id(trial: FrozenTrial) -> str | None:
    run_id = trial.user_attrs.get(keys.TRIAL_RUN_ID)
    # A run created during a tracking outage has only a provisional id until it is sent.
    return None if not run_id or run_id.startswith(PENDING) else run_id


def _tracked(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return sorted(
        (t for t in trials if _run_id(t) and keys.TRIAL_SEED in t.user_attrs),
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

"""How far a sweep's study is: trials by state, finished, expected, failed for good.

Read by the live display, the launchers (is the study finished?), tracking (the parent run's
counts) and the report; every count reads the study alone, in one pass where it can. A study
that grew holds trials its YAML no longer asks for (another seed list, a narrower space, a
changed field): the counts of a sweep count only the trials it asks for
(:func:`growth.in_sweep`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator import plan, stored_names
from orchestrator.config import SweepConfig
from orchestrator.study import growth

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

__all__ = [
    "FINISHED",
    "RETRIED",
    "count_states",
    "expected",
    "failed_for_good",
    "finished",
    "finished_count",
    "retries",
    "trial_states",
    "twins",
]


def count_states(states: Iterable[str]) -> dict[str, int]:
    """How many of ``states`` (trial state names) are in each state, every state present."""
    counts = {state.name: 0 for state in TrialState}
    for state in states:
        counts[state] += 1
    return counts


RETRIED = "RETRIED"
"""The counts' key of the FAIL trials a retry took over (interrupted, timed out or failed
before their last retry): not failures of the sweep."""


def trial_states(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """:func:`count_states` of ``trials``, with the FAIL trials a retry repeats counted as
    :data:`RETRIED`: a sweep interrupted and resumed ran each trial once, failed none."""
    trials = list(trials)
    counts = count_states(t.state.name for t in trials)
    repeated = _retried(trials)
    counts[RETRIED] = sum(1 for t in trials if t.state == TrialState.FAIL and t.number in repeated)
    counts[TrialState.FAIL.name] -= counts[RETRIED]
    return counts


def retries(trials: Iterable[FrozenTrial]) -> dict[int, int]:
    """The number of the retry that repeats each trial a retry repeats."""
    return {
        t.system_attrs[stored_names.TRIAL_FAILED_TRIAL]: t.number
        for t in trials
        if stored_names.TRIAL_FAILED_TRIAL in t.system_attrs
    }


def finished_count(counts: Mapping[str, int]) -> int:
    """How many trials of :func:`count_states`' counts are in an end state."""
    return sum(counts[state.name] for state in FINISHED)


def expected(study: optuna.Study, config: SweepConfig) -> int:
    """How many trials the sweep runs: its own, and the IMP-only twins of sampled ones."""
    return plan.total_trials(config) + twins(_asked(study, config))


def twins(trials: Iterable[FrozenTrial]) -> int:
    """The twins enqueued for sampled trials (their retries not counted again)."""
    return sum(
        1
        for t in trials
        if stored_names.TRIAL_TWIN_OF in t.user_attrs
        and stored_names.TRIAL_FAILED_TRIAL not in t.system_attrs
    )


def finished(study: optuna.Study, config: SweepConfig) -> int:
    """Trials that reached an end state (a failed trial that is retried counts once)."""
    trials = _asked(study, config)
    retried = _retried(trials)
    return sum(
        1
        for t in trials
        if t.state in FINISHED and not (t.state == TrialState.FAIL and t.number in retried)
    )


def failed_for_good(study: optuna.Study, config: SweepConfig) -> list[FrozenTrial]:
    """The FAIL trials that no retry follows: they failed after their last retry."""
    trials = _asked(study, config)
    retried = _retried(trials)
    return [t for t in trials if t.state == TrialState.FAIL and t.number not in retried]


def _retried(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of the trials that a retry repeats."""
    return set(retries(trials))


def _asked(study: optuna.Study, config: SweepConfig) -> list[FrozenTrial]:
    return growth.in_sweep(config, study.get_trials(deepcopy=False))

"""Finished results by trial key, across every study of a storage: what a trial can reuse
instead of training.

A trial's key (:mod:`orchestrator.trial.identity`) is stored with it when a worker claims it;
a COMPLETE trial also keeps its whole curve (:data:`stored_names.TRIAL_CURVE`). Together they
make it a result any sweep in the same storage can reuse without reading MLflow: the values it
reports to its own study follow from the curve and that sweep's objectives.

Optuna indexes no user attribute, so finding a key scans the studies' finished and running
trials; a worker does it once per trial it claims (a trial trains for minutes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator import stored_names

__all__ = [
    "Found",
    "find",
    "finished_keys",
]


@dataclass
class Found:
    """What a storage holds for some keys: a COMPLETE result, and trials computing one now."""

    complete: tuple[str, FrozenTrial] | None = None  # (study name, trial)
    running: list[tuple[str, FrozenTrial]] = field(default_factory=list)


def find(
    storage: optuna.storages.BaseStorage,
    wanted: Iterable[str],
    *,
    exclude: tuple[str, int] | None = None,
) -> Found:
    """Look through every study of ``storage`` for trials with one of the keys ``wanted``.

    Args:
        storage: the study storage.
        wanted: trial keys (:func:`orchestrator.trial.identity.acceptable_keys`).
        exclude: a trial to pass over (the one looking), as (study name, trial number).

    Returns:
        The oldest COMPLETE trial that kept its curve, and every RUNNING trial with such a key.
    """
    wanted = set(wanted)
    found = Found()
    if not wanted:
        return found
    for study_name, trial in _keyed(storage, (TrialState.COMPLETE, TrialState.RUNNING)):
        if (
            trial.user_attrs[stored_names.TRIAL_KEY] not in wanted
            or (study_name, trial.number) == exclude
        ):
            continue
        if trial.state == TrialState.RUNNING:
            found.running.append((study_name, trial))
        elif _reusable(trial) and _older(trial, found.complete):
            found.complete = (study_name, trial)
    return found


def finished_keys(
    storage: optuna.storages.BaseStorage, *, besides: str | None
) -> dict[str, tuple[int | None, str]]:
    """The keys of every COMPLETE result (with its curve) of the storage's studies other than
    ``besides``, each with the seed it ran at (None where unrecorded) and its study's name:
    what a sweep can reuse from other sweeps."""
    return {
        trial.user_attrs[stored_names.TRIAL_KEY]: (
            trial.user_attrs.get(stored_names.TRIAL_SEED),
            study_name,
        )
        for study_name, trial in _keyed(storage, (TrialState.COMPLETE,))
        if study_name != besides and _reusable(trial)
    }


def _keyed(
    storage: optuna.storages.BaseStorage, states: tuple[TrialState, ...]
) -> Iterator[tuple[str, FrozenTrial]]:
    """Every keyed trial in ``states`` of every study of ``storage``, with its study's name."""
    for summary in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(summary.study_name)
        for trial in storage.get_all_trials(study_id, deepcopy=False, states=states):
            if stored_names.TRIAL_KEY in trial.user_attrs:
                yield summary.study_name, trial


def _reusable(trial: FrozenTrial) -> bool:
    """A COMPLETE trial that kept its curve: its result is whole."""
    return stored_names.TRIAL_CURVE in trial.system_attrs


def _older(trial: FrozenTrial, than: tuple[str, FrozenTrial] | None) -> bool:
    if than is None:
        return True
    start, other = trial.datetime_start, than[1].datetime_start
    return start is not None and other is not None and start < other

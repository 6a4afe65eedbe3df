"""Finished results by trial key, across every study of a storage, and which trials a sweep's
YAML asks for now.

A trial's key (:mod:`orchestrator.identity`) is stored with it when a worker claims it; a
COMPLETE trial also keeps its whole curve (:data:`keys.TRIAL_CURVE`). Together they make it a
result any sweep in the same storage can reuse without reading MLflow: the values it reports
to its own study follow from the curve and that sweep's objectives.

Optuna indexes no user attribute, so finding a key scans the studies' finished and running
trials; a worker does it once per trial it claims (a trial trains for minutes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator import identity, keys, plan
from orchestrator.config import PerConfig, SweepConfig

__all__ = [
    "Found",
    "acceptable_keys",
    "asks_for",
    "curve_of",
    "curve_record",
    "encode_curve",
    "find",
    "finished_keys",
    "in_sweep",
    "provenance",
]


@dataclass
class Found:
    """What a storage holds for some keys: a COMPLETE result, and trials computing one now."""

    complete: tuple[str, FrozenTrial] | None = None  # (study name, trial)
    running: list[tuple[str, FrozenTrial]] = field(default_factory=list)


def acceptable_keys(
    config: SweepConfig, params: Mapping[str, Any], seed: int, *, device: str, data: str
) -> list[str]:
    """The keys whose results stand for the trial at ``params`` and ``seed``: its own (this
    results version), and with ``execution.reuse: any_version`` those of every earlier one."""
    newest = identity.RESULTS_VERSION
    versions = range(newest, 0, -1) if config.execution.reuse == "any_version" else [newest]
    return [
        identity.trial_key(config, params, seed, device=device, data=data, version=version)
        for version in versions
    ]


def find(
    storage: optuna.storages.BaseStorage,
    wanted: Iterable[str],
    *,
    exclude: tuple[str, int] | None = None,
) -> Found:
    """Look through every study of ``storage`` for trials with one of the keys ``wanted``.

    Args:
        storage: the study storage.
        wanted: trial keys (:func:`acceptable_keys`).
        exclude: a trial to pass over (the one looking), as (study name, trial number).

    Returns:
        The oldest COMPLETE trial that kept its curve, and every RUNNING trial with such a key.
    """
    wanted = set(wanted)
    found = Found()
    if not wanted:
        return found
    for study_name, trial in _keyed(storage, (TrialState.COMPLETE, TrialState.RUNNING)):
        if trial.user_attrs[keys.TRIAL_KEY] not in wanted or (study_name, trial.number) == exclude:
            continue
        if trial.state == TrialState.RUNNING:
            found.running.append((study_name, trial))
        elif _reusable(trial) and _older(trial, found.complete):
            found.complete = (study_name, trial)
    return found


def finished_keys(storage: optuna.storages.BaseStorage, *, besides: str | None) -> set[str]:
    """The keys of every COMPLETE result (with its curve) of the storage's studies other than
    ``besides``: what a sweep can reuse from other sweeps."""
    return {
        trial.user_attrs[keys.TRIAL_KEY]
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
            if keys.TRIAL_KEY in trial.user_attrs:
                yield summary.study_name, trial


def _reusable(trial: FrozenTrial) -> bool:
    """A COMPLETE trial that kept its curve: its result is whole."""
    return keys.TRIAL_CURVE in trial.system_attrs


def _older(trial: FrozenTrial, than: tuple[str, FrozenTrial] | None) -> bool:
    if than is None:
        return True
    start, other = trial.datetime_start, than[1].datetime_start
    return start is not None and other is not None and start < other


# --------------------------------------------------------------------------- the curve


def encode_curve(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A curve (rows of ``curve.Row``) as one compact record: the column names once, then
    each row's values (``None`` where a step did not measure a metric)."""
    columns: list[str] = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    return {"columns": columns, "rows": [[row.get(name) for name in columns] for row in rows]}


def curve_of(trial: FrozenTrial) -> list[dict[str, Any]] | None:
    """The curve a finished trial kept, as rows; ``None`` for one that kept none (a trial of
    a version before results were kept, or one that did not complete)."""
    stored = trial.system_attrs.get(keys.TRIAL_CURVE)
    if stored is None:
        return None
    record = curve_record(stored)
    columns = record["columns"]
    return [
        {name: value for name, value in zip(columns, row, strict=True) if value is not None}
        for row in record["rows"]
    ]


def curve_record(stored: str | Mapping[str, Any]) -> Mapping[str, Any]:
    """A kept curve as stored (:func:`encode_curve`; text where a storage kept it so) as the
    record: ``columns``, and ``rows`` of values in their order."""
    return json.loads(stored) if isinstance(stored, str) else stored


# --------------------------------------------------------------------------- membership


def asks_for(config: SweepConfig, trial: FrozenTrial) -> bool:
    """Whether the sweep's YAML, as it is now, asks for ``trial``: its seed is one of the
    sweep's, its configuration one it plans (:func:`plan.asks_for`), and a trial that ran has
    the key this YAML gives it (a change of ``train.lr`` leaves every earlier trial out).

    A placeholder the sampler is still to fill belongs to the sweep.
    """
    if trial.user_attrs.get(keys.TRIAL_SEED) not in config.seeds:
        return False
    params = trial.params or trial.system_attrs.get(keys.TRIAL_FIXED_PARAMS)
    if not params:
        return keys.TRIAL_SLOT in trial.user_attrs
    if not plan.asks_for(config, params):
        return False
    key = trial.user_attrs.get(keys.TRIAL_KEY)
    digest = trial.user_attrs.get(keys.TRIAL_DATA_DIGEST)
    if key is None or digest is None:
        return key is None  # queued, or claimed but not yet keyed
    return key in acceptable_keys(
        config,
        params,
        trial.user_attrs[keys.TRIAL_SEED],
        device=trial.user_attrs.get(keys.TRIAL_DEVICE_CLASS, "cpu"),
        data=digest,
    )


def in_sweep(config: SweepConfig, trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials the sweep's YAML asks for (:func:`asks_for`), each result once: of two
    COMPLETE trials with one key (two workers that raced), the first."""
    decided = _decided(config)
    seen: set[str] = set()
    kept = []
    for trial in trials:
        if trial.state.is_finished():
            mark = (trial._trial_id, trial.number, trial.datetime_start)
            belongs = decided.get(mark)
            if belongs is None:
                belongs = decided[mark] = asks_for(config, trial)
        else:
            belongs = asks_for(config, trial)
        if not belongs:
            continue
        key = trial.user_attrs.get(keys.TRIAL_KEY)
        if trial.state == TrialState.COMPLETE and key is not None:
            if key in seen:
                continue
            seen.add(key)
        kept.append(trial)
    return kept


# Whether a finished trial belongs to a config's sweep, by config: a finished trial never
# changes, and the live display and the parent's figures ask again every few seconds, of
# every trial (a key is a hash of the whole config, 0.1 ms).
_decided: PerConfig[dict[tuple, bool]] = PerConfig(lambda config: {}, limit=8)


def provenance(trials: Iterable[FrozenTrial]) -> dict[str, set[str]]:
    """The package versions and results versions the COMPLETE ``trials`` were computed with."""
    found: dict[str, set[str]] = {
        keys.TRIAL_PACKAGE_VERSION: set(),
        keys.TRIAL_RESULTS_VERSION: set(),
    }
    for trial in trials:
        if trial.state != TrialState.COMPLETE:
            continue
        for name, values in found.items():
            if name in trial.user_attrs:
                values.add(str(trial.user_attrs[name]))
    return found

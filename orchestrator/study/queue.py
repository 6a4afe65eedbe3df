"""The trial queue of a sweep: fill it, claim from it, sample, requeue, keep trials alive.

Every trial of a sweep exists in the study's queue before any worker starts: the fixed
configurations (baselines, user enqueues, grid points) once per seed, and one placeholder per
configuration the sampler is still to choose. A placeholder is sampled when a worker claims it,
and then enqueues its repeats at the other seeds. Workers only ever claim queued trials, so the
study holds exactly ``total_trials`` trials (plus retries of crashed ones), however many
workers race for the last one.

Optuna's private API it needs (the study's storage, trial ids, sampling by distribution, the
storage cache, the stale trials of the heartbeat) goes through :mod:`optuna_internals`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator import plan, stored_names
from orchestrator.config import SearchRange, SweepConfig
from orchestrator.study import counts, growth, optuna_internals
from orchestrator.study.growth import Growth
from orchestrator.study.retrying_storage import LONGEST_PAUSE_SECONDS
from orchestrator.trial.spec import TrialSpec

OnFailed = Callable[[optuna.Study, FrozenTrial, str], None]
STALE_REASON = "worker stopped sending heartbeats"
STALE_BEATS = 4  # missed beats after which a trial is stale (the storage's grace period)
HEARTBEAT_SECONDS = 30
logger = logging.getLogger(__name__)

__all__ = [
    "Heartbeat",
    "claim_trial",
    "distribution",
    "fail_and_requeue",
    "fail_stale",
    "fill_queue",
    "heartbeat_seconds",
    "requeue",
    "set_system_attr",
    "suggest",
]


def fill_queue(study: optuna.Study, config: SweepConfig, found: Growth | None = None) -> int:
    """Enqueue the trials of the sweep that its study lacks, as :func:`growth.assess` found
    them (``found``; by default assessed without keys, as for a new sweep): each missing
    configuration at each seed, then the placeholders of configurations still to sample.
    A resumed sweep whose YAML did not change adds nothing.

    Returns the number of trials enqueued by this call.
    """
    if found is None:
        found = growth.assess(config, study.get_trials(deepcopy=False), lambda p, s: [], {})
    for params, user_attrs in found.enqueue:
        study.enqueue_trial(params, user_attrs=user_attrs)
    for slot in range(found.placeholders):
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                user_attrs={
                    stored_names.TRIAL_SEED: config.seeds[0],
                    stored_names.TRIAL_SLOT: slot,
                },
            )
        )
    return len(found.enqueue) + found.placeholders


def set_system_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    """Store ``value`` under ``key`` in the running ``trial``'s system attributes, which
    optuna-dashboard does not list (a trial's whole curve, :data:`stored_names.TRIAL_CURVE`)."""
    storage = optuna_internals.storage_of(trial.study)
    storage.set_trial_system_attr(optuna_internals.trial_id(trial), key, value)


def claim_trial(study: optuna.Study) -> tuple[optuna.Trial, FrozenTrial] | None:
    """Take the oldest queued trial, or ``None`` when the queue is empty.

    Returns the live trial and its record as queued (storage id, system attributes such as
    ``failed_trial`` on a retry).

    Unlike ``study.ask()``, this never creates a trial beyond the queue. It goes through the
    study's own (caching) storage, as ``ask`` does, so the trial is known to that cache.
    """
    storage = optuna_internals.storage_of(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    for frozen in waiting:
        frozen_id = optuna_internals.trial_id(frozen)
        try:
            claimed = storage.set_trial_state_values(frozen_id, state=TrialState.RUNNING)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if claimed:
            return optuna.Trial(study, frozen_id), frozen
    return None


def suggest(
    trial: optuna.Trial,
    config: SweepConfig,
    lock: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, Any]:
    """Every searched parameter of ``trial`` (fixed ones as enqueued, the rest sampled).

    A freshly sampled trial (a placeholder) enqueues the same parameters at the other seeds,
    and, when it is an ALDS configuration, its IMP-only twin at every seed that lacks one
    (:attr:`TrialSpec.twin`). ``lock`` (the storage's creation lock) is held while the
    twins are looked for and enqueued, so two workers that sample the same schedule at once
    enqueue its twin once.
    """
    params = {
        path: optuna_internals.suggest(trial, path, distribution(space))
        for path, space in config.search.space.items()
    }
    # A control names its control as a parameter.
    if plan.CONTROL in optuna_internals.fixed_params(trial):
        params[plan.CONTROL] = optuna_internals.suggest(trial, plan.CONTROL, _CONTROLS)
    if stored_names.TRIAL_SLOT in trial.user_attrs and not trial.user_attrs.get(
        stored_names.TRIAL_REPEATS_ENQUEUED
    ):
        for seed in config.seeds[1:]:
            trial.study.enqueue_trial(
                params,
                user_attrs={
                    stored_names.TRIAL_SEED: seed,
                    stored_names.TRIAL_REPEAT_OF: trial.number,
                },
            )
        spec = TrialSpec(config, params, int(trial.user_attrs[stored_names.TRIAL_SEED]))
        if config.search.enqueue_baseline and spec.is_alds and (twin := spec.twin) is not None:
            with lock():
                twins = [twin.params, *plan.control_configurations(config, [twin.params])]
                _enqueue_twins(trial, twins, config.seeds)
        trial.set_user_attr(stored_names.TRIAL_REPEATS_ENQUEUED, True)
    return params


# Every control, in every sweep: Optuna fixes a parameter's choices within a study.
_CONTROLS = optuna.distributions.CategoricalDistribution(list(plan.CONTROLS))


def distribution(space: SearchRange) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of a searched path: categorical over its choices, else a float
    range (with its step or log scale)."""
    if space.choices is not None:
        return optuna.distributions.CategoricalDistribution(list(space.choices))
    if space.low is None or space.high is None:  # the schema sets both without choices
        raise ValueError("a search range needs 'choices', or 'low' and 'high'")
    return optuna.distributions.FloatDistribution(
        space.low, space.high, step=space.step, log=space.log
    )


def _enqueue_twins(
    trial: optuna.Trial, twins: Sequence[Mapping[str, Any]], seeds: Sequence[int]
) -> None:
    """Enqueue each of ``twins`` (a twin and its controls) at each of ``seeds`` where the
    study has no such trial yet."""
    present = set()
    for other in trial.study.get_trials(deepcopy=False):
        chosen = other.params or other.system_attrs.get(stored_names.TRIAL_FIXED_PARAMS, {})
        present.add(
            (json.dumps(chosen, sort_keys=True), other.user_attrs.get(stored_names.TRIAL_SEED))
        )
    for twin in twins:
        for seed in seeds:
            if (json.dumps(twin, sort_keys=True), seed) not in present:
                trial.study.enqueue_trial(
                    dict(twin),
                    user_attrs={
                        stored_names.TRIAL_SEED: seed,
                        stored_names.TRIAL_TWIN_OF: trial.number,
                    },
                )


def requeue(
    study: optuna.Study, failed: FrozenTrial, *, max_retries: int | None, anew: bool = False
) -> bool:
    """Queue ``failed`` again with its parameters, seed and attributes; False past the limit.

    ``max_retries=None`` requeues without counting (an interrupted trial is not a failure of
    the trial). The copy records ``failed_trial`` and ``retry_history`` like Optuna's own
    heartbeat retry, so both kinds of retry count against the same limit. ``anew``: a new
    attempt the user asked for (``--retry-failed``): its retries count from zero and it does
    not carry the failure's reason (the failed trial keeps it).
    """
    history = [] if anew else list(failed.system_attrs.get(stored_names.TRIAL_RETRY_HISTORY, []))
    if max_retries is not None:
        history.append(failed.number)
        if len(history) > max_retries:
            return False
    # What belonged to the try that ran, not to the trial: its worker's Slurm task, beats and
    # the steps it measured.
    dropped = (
        (stored_names.TRIAL_TASK, stored_names.TRIAL_FAIL_REASON)
        if anew
        else (stored_names.TRIAL_TASK,)
    )
    user_attrs = {k: v for k, v in failed.user_attrs.items() if k not in dropped}
    ran = (stored_names.TRIAL_HEARTBEAT, stored_names.TRIAL_CURVE)
    system_attrs = {k: v for k, v in failed.system_attrs.items() if k not in ran}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            user_attrs=user_attrs,
            system_attrs={
                **system_attrs,
                stored_names.TRIAL_FAILED_TRIAL: failed.number,
                stored_names.TRIAL_RETRY_HISTORY: history,
            },
        )
    )
    return True


def fail_and_requeue(
    study: optuna.Study,
    trial: FrozenTrial,
    reason: str,
    *,
    max_retries: int | None,
    on_failed: OnFailed | None = None,
) -> bool:
    """Mark a RUNNING trial of a dead worker FAIL with ``reason`` and queue its retry.

    ``on_failed`` runs between the two (the caller closes the trial's MLflow run there).
    Nothing happens when the trial has already finished: its worker finished it after all,
    or another process failed it first.

    Returns:
        Whether this call failed the trial.
    """
    storage = optuna_internals.storage_of(study)
    failing = optuna_internals.trial_id(trial)
    try:
        storage.set_trial_user_attr(failing, stored_names.TRIAL_FAIL_REASON, reason)
        if not storage.set_trial_state_values(failing, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    # Its worker requeues an interrupted trial before failing it; killed in between, the
    # retry is already queued. Requeued before its run is closed: a worker that finds
    # nothing queued or running in between would stop for good.
    if not _retry_queued(study, trial.number):
        requeue(study, trial, max_retries=max_retries)
    if on_failed is not None:
        on_failed(study, trial, reason)
    return True


def _retry_queued(study: optuna.Study, number: int) -> bool:
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return any(t.system_attrs.get(stored_names.TRIAL_FAILED_TRIAL) == number for t in waiting)


def fail_stale(
    study: optuna.Study, *, max_retries: int, on_failed: OnFailed | None = None
) -> list[int]:
    """Fail and requeue the trials whose worker stopped sending heartbeats (it died, or its
    host lost the network), each with that reason in the study and through ``on_failed``.

    Nothing is failed while this process's storage is in an outage or has just come back from
    one: the other workers could not beat during it either, and get a grace period to do so.

    Returns:
        The numbers of the trials failed here.
    """
    storage = optuna_internals.storage_of(study)
    beating = optuna_internals.heartbeat_of(storage)
    native = beating is not None
    interval = (beating.get_heartbeat_interval() if beating else None) or heartbeat_seconds()
    recently_down = getattr(storage, "recently_down", None)
    # After an outage the others' beats resume within a retry pause and a beat interval.
    if recently_down is not None and recently_down(interval * STALE_BEATS + LONGEST_PAUSE_SECONDS):
        return []
    failed = []
    study_id = storage.get_study_id_from_name(study.study_name)
    if native:
        ids = optuna_internals.stale_trial_ids(storage, study_id)
        stale = [storage.get_trial(i) for i in ids]
    else:
        stale = _stale_by_attribute(study, interval * STALE_BEATS)
    for trial in stale:
        if fail_and_requeue(
            study, trial, STALE_REASON, max_retries=max_retries, on_failed=on_failed
        ):
            failed.append(trial.number)
    return failed


def _stale_by_attribute(study: optuna.Study, grace: float) -> list[FrozenTrial]:
    """The running trials whose last beat (:data:`stored_names.TRIAL_HEARTBEAT`, else their
    start) is older than ``grace`` seconds, on a storage without Optuna's heartbeat (a journal
    file).
    The beats are wall-clock times of the workers' hosts: their clocks must agree to within a
    fraction of the grace period, as NTP keeps them."""
    now = time.time()
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beats = [float(trial.system_attrs.get(stored_names.TRIAL_HEARTBEAT, 0.0))]
        if trial.datetime_start is not None:
            beats.append(trial.datetime_start.timestamp())
        if now - max(beats) > grace:
            stale.append(trial)
    return stale


def heartbeat_seconds() -> int:
    """How often a running trial's worker beats: ``ORCHESTRATE_HEARTBEAT_SECONDS`` or 30 s. A
    trial is stale after :data:`STALE_BEATS` missed beats."""
    return int(os.environ.get("ORCHESTRATE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))


class Heartbeat:
    """Records a trial's heartbeat in a daemon thread while its worker is alive: Optuna's on
    relational storages, else a timestamp in the trial's system attributes (journal files).

    A beat that fails (the storage is in an outage longer than it waits) is logged and the
    next one tried: the beats resume when the storage is back.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, trial: optuna.Trial) -> None:
        self._storage = storage
        self._trial_id = optuna_internals.trial_id(trial)
        self._stop = threading.Event()
        self._beating = optuna_internals.heartbeat_of(storage)
        interval = (
            self._beating.get_heartbeat_interval() if self._beating else None
        ) or heartbeat_seconds()
        self._record()
        self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True)

    def _record(self) -> None:
        if self._beating is not None:
            self._beating.record_heartbeat(self._trial_id)
        else:
            self._storage.set_trial_system_attr(
                self._trial_id, stored_names.TRIAL_HEARTBEAT, time.time()
            )

    def _beat(self, interval: int) -> None:
        while not self._stop.wait(interval):
            try:
                self._record()
            except Exception as exc:  # the trial goes on; its next beat may get through
                logger.warning("heartbeat of trial id %s not recorded: %s", self._trial_id, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def retry(study: optuna.Study, config: SweepConfig) -> int:
    """Queue a new attempt of every configuration and seed whose trials failed for good
    (``--retry-failed``, once what made them fail is fixed); the failed trials stay, with their
    reasons. Returns how many were queued. Run under the storage's creation lock."""
    failed = counts.failed_for_good(study, config)
    for trial in failed:
        requeue(study, trial, max_retries=None, anew=True)
    return len(failed)

"""The Optuna study of a sweep: storage, sampler, pruner, the trial queue and trial claiming.

Every trial of a sweep exists in the study's queue before any worker starts: the fixed
configurations (baselines, user enqueues, grid points) once per seed, and one placeholder per
configuration the sampler is still to choose. A placeholder is sampled when a worker claims it,
and then enqueues its repeats at the other seeds. Workers only ever claim queued trials, so the
study holds exactly ``total_trials`` trials (plus retries of crashed ones), however many
workers race for the last one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from orchestrator.config import ConfigError, SweepConfig, config_hash, parse_config
from orchestrator.locks import exclusive

CONFIG_ATTR = "sweep_config"
HASH_ATTR = "config_hash"
QUEUED_ATTR = "queue_filled"
HEARTBEAT_SECONDS = 30

__all__ = [
    "Heartbeat",
    "claim_trial",
    "create_or_resume",
    "default_storage",
    "describe_params",
    "fill_queue",
    "load_study",
    "open_storage",
    "requeue",
    "set_stale_callback",
    "suggest",
    "workspace",
]


def workspace(config: SweepConfig) -> Path:
    """The sweep's folder for embedded stores and local files."""
    return Path(config.execution.workspace or Path(".orchestrate") / config.name).expanduser()


def default_storage(config: SweepConfig) -> str:
    """``execution.storage`` or a SQLite file in the workspace."""
    if config.execution.storage:
        return config.execution.storage
    # open_storage creates the folder of a SQLite file.
    return f"sqlite:///{(workspace(config) / 'study.db').resolve()}"


def _retry(study: optuna.Study, failed: FrozenTrial, *, max_retries: int) -> None:
    requeue(study, failed, max_retries=max_retries)


def open_storage(
    url: str, *, max_retries: int = 2, heartbeat_interval: int | None = None
) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats, so a trial whose worker died is failed and retried.

    The heartbeat interval is ``ORCHESTRATE_HEARTBEAT_SECONDS`` or 30 s; a trial is stale after
    four missed beats.
    """
    if heartbeat_interval is None:
        heartbeat_interval = int(os.environ.get("ORCHESTRATE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))
    engine_kwargs: dict[str, Any] = {}
    sqlite_file = _sqlite_file(url)
    if sqlite_file:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        # Several local workers share one SQLite file: wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        # Optuna creates its schema by checking for tables first: one process at a time.
        lock = exclusive(sqlite_file.with_name(sqlite_file.name + ".lock")) if sqlite_file else None
        with lock or contextlib.nullcontext():
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=heartbeat_interval * 4,
                heartbeat_stale_trial_callback=functools.partial(_retry, max_retries=max_retries),
            )
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or an absent server
        raise ConfigError(f"cannot open the study storage '{url}': {exc}") from None
    if sqlite_file:
        _serialize_transactions(storage.engine)
    return storage


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///") or url.removeprefix("sqlite:///") in ("", ":memory:"):
        return None
    return Path(url.removeprefix("sqlite:///")).expanduser()


def _serialize_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Make every transaction on a SQLite study take the write lock when it begins.

    Python's sqlite3 only opens a transaction at the first write, so the read in Optuna's
    read-check-write updates (claiming a WAITING trial, telling a RUNNING one) runs outside
    it, and two workers can both claim the same trial. ``BEGIN IMMEDIATE`` makes each such
    update atomic; readers wait on the connection timeout, never fail.
    """

    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves

    def begin(connection: sqlalchemy.engine.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    sqlalchemy.event.listen(engine, "connect", connect)
    sqlalchemy.event.listen(engine, "begin", begin)
    engine.dispose()  # connections opened during set-up lack the listeners


def requeue(study: optuna.Study, failed: FrozenTrial, *, max_retries: int | None) -> bool:
    """Queue ``failed`` again with its parameters, seed and attributes; False past the limit.

    ``max_retries=None`` requeues without counting (an interrupted trial is not a failure of
    the trial). The copy records ``failed_trial`` and ``retry_history`` like Optuna's own
    heartbeat retry, so both kinds of retry count against the same limit.
    """
    history = list(failed.system_attrs.get("retry_history", []))
    if max_retries is not None:
        history.append(failed.number)
        if len(history) > max_retries:
            return False
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            user_attrs=failed.user_attrs,
            system_attrs={
                **failed.system_attrs,
                "failed_trial": failed.number,
                "retry_history": history,
            },
        )
    )
    return True


def set_stale_callback(
    storage: optuna.storages.RDBStorage,
    callback: Callable[[optuna.Study, FrozenTrial], None],
) -> None:
    """Run ``callback`` on every trial the heartbeat finds stale (its worker is gone)."""
    storage.heartbeat_stale_trial_callback = callback
    storage.failed_trial_callback = callback


def _sampler(config: SweepConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    # Workers draw from differently seeded streams: with one seed each would propose the same
    # parameters as every other worker's first trial.
    seed = (
        None if config.search.sampler_seed is None else config.search.sampler_seed + 7919 * worker
    )
    match config.search.sampler:
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        case "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed)
        case "qmc":
            return optuna.samplers.QMCSampler(seed=seed)
        case _:
            # Grid points are all enqueued as fixed trials; nothing is left to sample.
            return optuna.samplers.RandomSampler(seed=seed)


def _pruner(config: SweepConfig) -> optuna.pruners.BasePruner:
    match config.search.pruner:
        case "median":
            return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        case "percentile":
            return optuna.pruners.PercentilePruner(25.0, n_startup_trials=2, n_warmup_steps=1)
        case "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=config.imp.cycles + 1
            )
        case "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
        case _:
            return optuna.pruners.NopPruner()


def create_or_resume(
    config: SweepConfig, storage: optuna.storages.BaseStorage, *, fresh: bool = False
) -> optuna.Study:
    """Create the sweep's study, or load it when it exists with the same config.

    A study whose stored config hashes differently is refused: its results would be mixed
    with results of another experiment. ``fresh`` deletes the old study first.
    """
    if fresh:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=config.name, storage=storage)
    directions = [objective.direction for objective in config.search.objective]
    study = optuna.create_study(
        study_name=config.name,
        storage=storage,
        sampler=_sampler(config),
        pruner=_pruner(config),
        directions=directions,
        load_if_exists=True,
    )
    stored = study.user_attrs.get(HASH_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, config.model_dump(mode="json"))
        study.set_user_attr(HASH_ATTR, config_hash(config))
        study.set_metric_names([_metric_name(o) for o in config.search.objective])
    elif stored != config_hash(config):
        raise ConfigError(
            f"study '{config.name}' already exists with a different config (hash {stored}, "
            f"this file {config_hash(config)}); its results would be mixed with this one's. "
            "Rename the sweep, or pass --fresh to delete the old study"
        )
    return study


def _metric_name(objective: Any) -> str:
    return objective.metric if objective.at == "final" else f"{objective.metric}@{objective.at}"


def load_study(
    study_name: str, storage: optuna.storages.BaseStorage, *, worker: int = 0
) -> tuple[optuna.Study, SweepConfig]:
    """Load a study created by :func:`create_or_resume`, with the config stored in it.

    ``worker`` numbers the worker process, so each samples from its own seeded stream.
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        known = ", ".join(sorted(optuna.get_all_study_names(storage))) or "none"
        raise ConfigError(f"no study '{study_name}' in this storage (studies: {known})") from None
    except Exception as exc:  # SQLAlchemy errors of an unreachable or foreign database
        raise ConfigError(f"cannot read study '{study_name}' from the storage: {exc}") from None
    document = study.user_attrs.get(CONFIG_ATTR)
    if document is None:
        raise ConfigError(f"study '{study_name}' was not created by orchestrate (no stored config)")
    config = parse_config(document, f"study '{study_name}'")
    study.sampler = _sampler(config, worker)
    study.pruner = _pruner(config)
    return study, config


def fill_queue(study: optuna.Study, config: SweepConfig) -> int:
    """Enqueue every trial of the sweep once; later calls (a resumed sweep) add nothing.

    Returns the number of trials enqueued by this call.
    """
    if study.user_attrs.get(QUEUED_ATTR):
        return 0
    added = 0
    seeds = config.seeds
    fixed = config.fixed_configurations()
    for params in fixed:
        for seed in seeds:
            study.enqueue_trial(params, user_attrs={"seed": seed})
            added += 1
    for slot in range(config.total_trials // len(seeds) - len(fixed)):
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING, user_attrs={"seed": seeds[0], "slot": slot}
            )
        )
        added += 1
    study.set_user_attr(QUEUED_ATTR, True)
    return added


def claim_trial(study: optuna.Study) -> tuple[optuna.Trial, FrozenTrial] | None:
    """Take the oldest queued trial, or ``None`` when the queue is empty.

    Returns the live trial and its record as queued (storage id, system attributes such as
    ``failed_trial`` on a retry).

    Unlike ``study.ask()``, this never creates a trial beyond the queue. It goes through the
    study's own (caching) storage, as ``ask`` does, so the trial is known to that cache.
    """
    storage = study._storage
    study_id = storage.get_study_id_from_name(study.study_name)
    waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    for frozen in waiting:
        try:
            claimed = storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if claimed:
            return optuna.Trial(study, frozen._trial_id), frozen
    return None


def suggest(trial: optuna.Trial, config: SweepConfig) -> dict[str, Any]:
    """Every searched parameter of ``trial`` (fixed ones as enqueued, the rest sampled).

    A freshly sampled trial (a placeholder) enqueues the same parameters at the other seeds.
    """
    params = {}
    for path, space in config.search.space.items():
        if space.choices is not None:
            params[path] = trial.suggest_categorical(path, list(space.choices))
        else:
            params[path] = trial.suggest_float(
                path, space.low, space.high, step=space.step, log=space.log
            )
    if "slot" in trial.user_attrs and not trial.user_attrs.get("repeats_enqueued"):
        for seed in config.seeds[1:]:
            trial.study.enqueue_trial(params, user_attrs={"seed": seed, "repeat_of": trial.number})
        trial.set_user_attr("repeats_enqueued", True)
    return params


class Heartbeat:
    """Records a trial's heartbeat in a daemon thread while its worker is alive."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._stop = threading.Event()
        interval = self._storage.get_heartbeat_interval() if _has_heartbeat(self._storage) else None
        self._thread: threading.Thread | None = None
        if interval:
            self._storage.record_heartbeat(trial_id)
            self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True)

    def _beat(self, interval: int) -> None:
        while not self._stop.wait(interval):
            self._storage.record_heartbeat(self._trial_id)

    def __enter__(self) -> Heartbeat:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _has_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    return isinstance(storage, optuna.storages.RDBStorage) and bool(
        storage.get_heartbeat_interval()
    )


def describe_params(params: dict[str, Any]) -> str:
    """A short, stable text of a trial's parameters (run names, progress lines)."""
    return json.dumps(params, sort_keys=True, separators=(",", "="))[1:-1].replace('"', "")

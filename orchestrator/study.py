"""The Optuna study of a sweep: its storage, sampler and pruner, creating and loading it.

The study stores the sweep's validated config, so any worker on any host can load the study
by name and knows everything it needs. Filling the queue and claiming trials live in
:mod:`orchestrator.queue`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial

from orchestrator import keys, queue, workspace
from orchestrator.config import ConfigError, Objective, SweepConfig, config_hash, parse_config
from orchestrator.locks import exclusive

HEARTBEAT_SECONDS = 30

__all__ = ["create_or_resume", "default_storage", "load_study", "open_storage"]


def default_storage(config: SweepConfig) -> str:
    """``execution.storage`` or a SQLite file in the workspace."""
    if config.execution.storage:
        return config.execution.storage
    # open_storage creates the folder of a SQLite file.
    return workspace.sqlite_url(workspace.study_file(config))


def open_storage(
    url: str,
    *,
    max_retries: int = 2,
    heartbeat_interval: int | None = None,
    on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats, so a trial whose worker died is failed and retried.

    The heartbeat interval is ``ORCHESTRATE_HEARTBEAT_SECONDS`` or 30 s; a trial is stale after
    four missed beats. ``on_stale`` runs on each stale trial (default: requeue it).
    """
    if heartbeat_interval is None:
        heartbeat_interval = int(os.environ.get("ORCHESTRATE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))
    if on_stale is None:
        on_stale = queue.retry_stale(max_retries)
    engine_kwargs: dict[str, Any] = {}
    sqlite_file = workspace.sqlite_file(url)
    if sqlite_file:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        # Several local workers share one SQLite file: wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        # Optuna creates its schema by checking for tables first: one process at a time.
        lock = exclusive(workspace.lock_file(sqlite_file)) if sqlite_file else None
        with lock or contextlib.nullcontext():
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=heartbeat_interval * 4,
                heartbeat_stale_trial_callback=on_stale,
            )
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or an absent server
        raise ConfigError(f"cannot open the study storage '{url}': {exc}") from None
    if sqlite_file:
        _serialize_transactions(storage.engine)
    return storage


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
    stored = study.user_attrs.get(keys.STUDY_CONFIG_HASH)
    if stored is None:
        study.set_user_attr(keys.STUDY_CONFIG, config.model_dump(mode="json"))
        study.set_user_attr(keys.STUDY_CONFIG_HASH, config_hash(config))
        study.set_metric_names([_metric_name(o) for o in config.search.objective])
    elif stored != config_hash(config):
        raise ConfigError(
            f"study '{config.name}' already exists with a different config (hash {stored}, "
            f"this file {config_hash(config)}); its results would be mixed with this one's. "
            "Rename the sweep, or pass --fresh to delete the old study"
        )
    return study


def _metric_name(objective: Objective) -> str:
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
    document = study.user_attrs.get(keys.STUDY_CONFIG)
    if document is None:
        raise ConfigError(f"study '{study_name}' was not created by orchestrate (no stored config)")
    config = parse_config(document, f"study '{study_name}'")
    study.sampler = _sampler(config, worker)
    study.pruner = _pruner(config)
    return study, config

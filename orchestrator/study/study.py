"""The Optuna study of a sweep: its storage, sampler and pruner, creating and loading it.

The study stores the sweep's validated config, so any worker on any host can load the study
by name and knows everything it needs. Filling the queue and claiming trials live in
:mod:`orchestrator.study.queue`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy

from orchestrator import stored_names, workspace
from orchestrator.config import ConfigError, Objective, SweepConfig
from orchestrator.curve import PRUNING_GRID
from orchestrator.locks import exclusive
from orchestrator.study import optuna_internals, queue
from orchestrator.study.retrying_storage import DEFAULT_LIMIT_SECONDS, RetryingStorage
from orchestrator.sweep_file import parse_config
from orchestrator.trial.identity import experiment_hash
from orchestrator.trial.twins import PairedPruner

OUTAGE_LIMIT_ENV = "ORCHESTRATE_STORAGE_OUTAGE_LIMIT"

__all__ = [
    "create_or_resume",
    "creation_lock",
    "holds",
    "load_study",
    "needs_new_generation",
    "open_storage",
    "stored_config",
]


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    outage_limit: float | None = None,
) -> RetryingStorage:
    """The study storage: an RDB storage with heartbeats (a trial whose worker died is found
    stale, see :func:`queue.fail_stale`), behind Optuna's cache, whose calls ride out a
    database outage of up to ``outage_limit`` seconds (see :mod:`retrying_storage`).

    The heartbeat interval is ``ORCHESTRATE_HEARTBEAT_SECONDS`` or 30 s; a trial is stale after
    four missed beats. The outage limit is ``ORCHESTRATE_STORAGE_OUTAGE_LIMIT`` or 600 s.
    """
    if heartbeat_interval is None:
        heartbeat_interval = queue.heartbeat_seconds()
    if outage_limit is None:
        outage_limit = float(os.environ.get(OUTAGE_LIMIT_ENV, DEFAULT_LIMIT_SECONDS))
    if "://" not in url:
        raise ConfigError(
            f"the study storage '{url}' is not a URL: a SQLite file is "
            f"sqlite:///{Path(url).expanduser().resolve()} (docs/sweep.md, 'The study')"
        )
    journal = workspace.journal_file(url)
    if journal is not None:
        # Its retried methods are installed at import (retrying_storage._CALLS): mypy cannot
        # see them and takes the class for abstract.
        return RetryingStorage(_journal_storage(journal), limit_seconds=outage_limit)  # type: ignore[abstract]
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
        with creation_lock(url), warnings.catch_warnings():
            # Heartbeats are marked experimental; the tool relies on them knowingly, and the
            # warning is not about the user's input (validate reads a study without the CLI's
            # filter).
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=heartbeat_interval * 4,
            )
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or an absent server
        raise ConfigError(f"cannot open the study storage '{url}': {exc}") from None
    if sqlite_file:
        _serialize_transactions(storage.engine)
    return RetryingStorage(optuna_internals.cached(storage), limit_seconds=outage_limit)  # type: ignore[abstract]


def _journal_storage(path: Path) -> optuna.storages.JournalStorage:
    """A journal file on a shared filesystem: appends under a lock file that ``open(O_EXCL)``
    takes, which NFS (v3 and later) makes atomic across hosts. Dead workers are found by the
    beats :class:`queue.Heartbeat` writes into the journal."""
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return optuna.storages.JournalStorage(backend)
    except Exception as exc:
        raise ConfigError(f"cannot open the study journal '{path}': {exc}") from None


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Hold the storage's creation lock for the block: what several first starts of one sweep
    must not do at once (create the schema, create the study and fill its queue).

    A file lock beside a SQLite or journal file (on a network filesystem, processes of any
    host that mounts it), an advisory lock of the server on PostgreSQL and MySQL (processes of
    any host); no lock for other storages.
    """
    local_file = workspace.sqlite_file(url) or workspace.journal_file(url)
    if local_file is not None:
        local_file.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(workspace.lock_file(local_file)):
            yield
        return
    statements = _SERVER_LOCKS.get(url.split(":", 1)[0].split("+", 1)[0])
    if statements is None:
        yield
        return
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            take, release = statements
            connection.exec_driver_sql(take)
            try:
                yield
            finally:
                connection.exec_driver_sql(release)
    finally:
        engine.dispose()


_LOCK_ID = 0x6F726368  # "orch": the advisory lock every orchestrate process takes
_SERVER_LOCKS = {
    "postgresql": (
        f"SELECT pg_advisory_lock({_LOCK_ID})",
        f"SELECT pg_advisory_unlock({_LOCK_ID})",
    ),
    "mysql": (
        f"SELECT GET_LOCK('orchestrate-{_LOCK_ID}', 600)",
        f"SELECT RELEASE_LOCK('orchestrate-{_LOCK_ID}')",
    ),
}


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


# Every name SearchConfig.sampler and .pruner allow, and what it builds (a test holds the two
# together): a name without an entry is an error, never a silent default.
SAMPLERS: dict[str, Callable[[int | None], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed),
    "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed),
    # Grid points are all enqueued as fixed trials: the sampler only fills their parameters.
    "grid": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}
PRUNERS: dict[str, Callable[[SweepConfig], optuna.pruners.BasePruner]] = {
    "none": lambda config: optuna.pruners.NopPruner(),
    "median": lambda config: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    "percentile": lambda config: optuna.pruners.PercentilePruner(
        25.0, n_startup_trials=2, n_warmup_steps=1
    ),
    # The resource is the index on the sparsity grid the trials report on.
    "hyperband": lambda config: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=len(PRUNING_GRID)
    ),
    "successive_halving": lambda config: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
    "paired": PairedPruner,
}


def _sampler(config: SweepConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    # Workers draw from differently seeded streams: with one seed each would propose the same
    # parameters as every other worker's first trial.
    seed = (
        None if config.search.sampler_seed is None else config.search.sampler_seed + 7919 * worker
    )
    return _entry(SAMPLERS, "sampler", config.search.sampler)(seed)


def _pruner(config: SweepConfig) -> optuna.pruners.BasePruner:
    return _entry(PRUNERS, "pruner", config.search.pruner)(config)


def _entry(table: dict[str, Any], field: str, name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise ConfigError(
            f"search.{field}: unknown {field} '{name}'; choose from {', '.join(table)}"
        ) from None


def create_or_resume(
    config: SweepConfig, storage: optuna.storages.BaseStorage, *, fresh: bool = False
) -> optuna.Study:
    """Create the sweep's study, or load it and make ``config`` its config.

    A sweep grows: its YAML may add seeds, rates, choices or a wider space, or change a field
    every trial depends on; the study then keeps its trials and plans by trial key what the
    new YAML asks for (:mod:`orchestrator.study.growth`). Only its objectives are fixed: the values
    its trials hold are of them. ``fresh`` deletes the old study (and its earlier
    generations) first.
    """
    if fresh:
        _delete_with_generations(storage, config.name)
    directions = [objective.direction for objective in config.search.objective]
    study = optuna.create_study(
        study_name=config.name,
        storage=storage,
        sampler=_sampler(config),
        pruner=_pruner(config),
        directions=directions,
        load_if_exists=True,
    )
    stored = study.user_attrs.get(stored_names.STUDY_CONFIG_HASH)
    new = experiment_hash(config)
    renewed = stored is not None and needs_new_generation(study, config)
    if stored == new and not renewed:
        return study
    if stored is not None:
        _check_same_objectives(study, config)
    if renewed:
        study = _new_generation(study, config, storage, str(stored))
    if stored not in (None, new):
        history = [*study.user_attrs.get(stored_names.STUDY_CONFIG_HISTORY, []), stored]
        study.set_user_attr(stored_names.STUDY_CONFIG_HISTORY, history)
    study.set_user_attr(stored_names.STUDY_CONFIG, config.model_dump(mode="json"))
    study.set_user_attr(stored_names.STUDY_CONFIG_HASH, new)
    study.set_metric_names([_metric_name(o) for o in config.search.objective])
    return study


def _delete_with_generations(storage: optuna.storages.BaseStorage, name: str) -> None:
    """Delete the study ``name`` and the archive studies of its earlier generations: what
    ``--fresh`` discards (results of other sweeps are still reused; ``execution.reuse: off``
    trains every trial)."""
    study = existing(storage, name)
    if study is None:
        return
    for archive in study.user_attrs.get(stored_names.STUDY_EARLIER, []):
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=archive, storage=storage)
    optuna.delete_study(study_name=name, storage=storage)


def existing(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """The study ``name`` in ``storage``, or ``None`` when there is none yet."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def holds(study: optuna.Study | None, config: SweepConfig) -> bool:
    """Whether ``study`` is the sweep's study with this very config (a plain resume)."""
    return study is not None and study.user_attrs.get(
        stored_names.STUDY_CONFIG_HASH
    ) == experiment_hash(config)


def stored_config(study: optuna.Study) -> SweepConfig | None:
    """The config a study holds (``None`` for one orchestrate did not create)."""
    document = study.user_attrs.get(stored_names.STUDY_CONFIG)
    return None if document is None else parse_config(document, f"study '{study.study_name}'")


def needs_new_generation(study: optuna.Study, config: SweepConfig) -> bool:
    """Whether ``config`` searches a path with a distribution Optuna refuses beside the one the
    study's trials hold (:func:`optuna.distributions.check_distribution_compatibility`): other
    choices of a categorical space (a rate added to a grid), a range turned into choices or
    back, a range's log scale."""
    wanted = {path: queue.distribution(space) for path, space in config.search.space.items()}
    for trial in study.get_trials(deepcopy=False):
        for path, held in trial.distributions.items():
            if path not in wanted:
                continue
            try:
                optuna.distributions.check_distribution_compatibility(held, wanted.pop(path))
            except ValueError:
                return True
        if not wanted:
            break
    return False


def _new_generation(
    study: optuna.Study, config: SweepConfig, storage: optuna.storages.BaseStorage, stored: str
) -> optuna.Study:
    """Move the study's trials to an archive study ``<name>@<old hash>`` and start the sweep's
    study afresh under its name, with its tracking and history: the new YAML's trials reuse
    the archived results by key, as they would another sweep's."""
    earlier = list(study.user_attrs.get(stored_names.STUDY_EARLIER, []))
    archive = f"{config.name}@{stored}.{len(earlier) + 1}"
    optuna.copy_study(
        from_study_name=config.name,
        from_storage=storage,
        to_storage=storage,
        to_study_name=archive,
    )
    held = study.user_attrs
    kept = {key: held[key] for key in stored_names.STUDY_KEPT_BY_A_NEW_GENERATION if key in held}
    optuna.delete_study(study_name=config.name, storage=storage)
    fresh = optuna.create_study(
        study_name=config.name,
        storage=storage,
        sampler=_sampler(config),
        pruner=_pruner(config),
        directions=[objective.direction for objective in config.search.objective],
    )
    for key, value in {**kept, stored_names.STUDY_EARLIER: [*earlier, archive]}.items():
        fresh.set_user_attr(key, value)
    return fresh


def _check_same_objectives(study: optuna.Study, config: SweepConfig) -> None:
    before = stored_config(study)
    if before is None:
        return
    if before.search.objective != config.search.objective:
        was = ", ".join(_metric_name(o) for o in before.search.objective)
        now = ", ".join(_metric_name(o) for o in config.search.objective)
        raise ConfigError(
            f"search.objective: study '{config.name}' optimises {was}, this file {now}; its "
            "trials' values are of its own objectives. Rename the sweep (finished results are "
            "reused by key), or pass --fresh to delete the old study"
        )


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
        raise ConfigError(f"no study '{study_name}' (studies: {known})") from None
    except Exception as exc:  # SQLAlchemy errors of an unreachable or foreign database
        raise ConfigError(f"cannot read study '{study_name}' from the storage: {exc}") from None
    document = study.user_attrs.get(stored_names.STUDY_CONFIG)
    if document is None:
        raise ConfigError(f"study '{study_name}' was not created by orchestrate (no stored config)")
    config = parse_config(document, f"study '{study_name}'")
    study.sampler = _sampler(config, worker)
    study.pruner = _pruner(config)
    return study, config

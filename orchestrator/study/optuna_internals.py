"""Every private name of Optuna that the orchestrator uses, behind one small function each.

Optuna promises nothing about a name that starts with an underscore. Used from several modules,
an upgrade that removes or changes one would break them wherever they are; behind this module it
fails in one place, and in its test (``tests/test_internals.py`` exercises each function against
the installed Optuna and names the function to mend). No other module of ``orchestrator/``
touches a private name of Optuna; that test checks this too. Each comment says why no public API
serves, as of Optuna 5.1.

Optuna is imported inside the functions: :mod:`growth` reads trial ids, and ``validate``
assesses a sweep without importing Optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType

    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.storages import BaseStorage, RDBStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import FrozenTrial

    # What :func:`heartbeat_base` returns, for type checkers (a class a wrapper derives from).
    HeartbeatBase = BaseHeartbeat

__all__ = [
    "STALE_TRIAL_IDS",
    "cached",
    "cached_backend",
    "fixed_params",
    "heartbeat_base",
    "heartbeat_of",
    "rdb_models",
    "stale_trial_ids",
    "storage_of",
    "study_id",
    "suggest",
    "trial_id",
]

# The heartbeat interface's method that lists a study's stale trials, by name: a storage
# wrapper (``RetryingStorage``) forwards it.
STALE_TRIAL_IDS = "_get_stale_trial_ids"


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage ``study`` reads and writes through (its cache, as the study holds it)."""
    # ``Study._storage``: a Study has no public accessor for its storage (``load_study`` takes
    # one, nothing gives it back), and the trial queue needs it for what Study does not offer:
    # claiming a WAITING trial without ``ask`` creating one, failing a trial of another process.
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study``, which a storage's methods take."""
    # ``Study._study_id``: no public property. The public way round,
    # ``storage_of(study).get_study_id_from_name(study.study_name)``, costs a database query.
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of ``trial`` (a live ``Trial`` or a ``FrozenTrial``), which a storage's
    methods and ``optuna.Trial(study, id)`` take; unlike ``number``, unique across studies."""
    # ``Trial._trial_id`` and ``FrozenTrial._trial_id``: neither has a public property for it
    # (``FrozenTrial`` takes ``trial_id`` in its constructor, but no property returns it).
    return trial._trial_id


def fixed_params(trial: optuna.Trial) -> dict[str, Any]:
    """The parameters ``trial`` was enqueued with (``enqueue_trial``), by name."""
    # ``Trial._fixed_params``: a Trial has no public ``system_attrs`` (removed in Optuna 5), the
    # storage's ``fixed_params`` system attribute is read through a trial id (private above) and
    # the key itself is Optuna's; the trial holds them as read when it was created.
    return trial._fixed_params


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """``trial``'s value of ``name`` in ``distribution``: as enqueued, else sampled."""
    # ``Trial._suggest``: the public ``suggest_float``/``suggest_categorical`` take a
    # distribution's fields one by one; this takes the distribution object itself, as the
    # sweep's search space builds it, for every kind alike.
    return trial._suggest(name, distribution)


def heartbeat_base() -> type:
    """The interface of a storage with Optuna's heartbeat (``record_heartbeat``,
    ``get_heartbeat_interval``, the stale trials): what ``RDBStorage`` implements."""
    # ``optuna.storages._heartbeat.BaseHeartbeat``: not exported by ``optuna.storages``; the
    # public ``RDBStorage`` has it, but a wrapper of one (``RetryingStorage``) must be one too,
    # for :func:`heartbeat_of` and for Optuna's own checks (``is_heartbeat_enabled``).
    from optuna.storages._heartbeat import BaseHeartbeat

    return BaseHeartbeat


def heartbeat_of(storage: BaseStorage) -> BaseHeartbeat | None:
    """``storage`` as one that records Optuna's heartbeat (a relational one opened with an
    interval: ``record_heartbeat``, ``get_heartbeat_interval``), or None where it does not
    (journal files: the queue beats with an attribute of its own)."""
    # Optuna's ``is_heartbeat_enabled`` is public by name but lives in the private
    # ``optuna.storages._heartbeat`` module too (and takes an interval of 0 as enabled).
    from optuna.storages._heartbeat import BaseHeartbeat

    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval():
        return storage
    return None


def stale_trial_ids(storage: BaseStorage, study_id: int) -> list[int]:
    """The ids of ``study_id``'s RUNNING trials whose heartbeat is older than the storage's
    grace period. ``storage`` must have a heartbeat (:func:`heartbeat_of`)."""
    # ``BaseHeartbeat._get_stale_trial_ids``: the public ``optuna.storages.fail_stale_trials``
    # fails them itself, without the reason the queue records and before it requeues them.
    return getattr(storage, STALE_TRIAL_IDS)(study_id)


def cached(storage: RDBStorage) -> BaseStorage:
    """``storage`` behind Optuna's cache of finished trials, as a study opened by URL has it."""
    # ``optuna.storages._CachedStorage``: a study opened by URL builds its own ``RDBStorage``,
    # without the engine options and heartbeat the orchestrator sets; the public-looking
    # ``optuna.storages.get_storage`` wraps the same way but says it is for internal use only.
    from optuna.storages import _CachedStorage

    return _CachedStorage(storage)


def cached_backend(storage: Any) -> Any | None:
    """The storage that Optuna's cache (:func:`cached`) wraps, or None for any other storage."""
    # ``_CachedStorage._backend``: the cache does not give its backend back publicly.
    from optuna.storages import _CachedStorage

    return storage._backend if isinstance(storage, _CachedStorage) else None


def rdb_models() -> ModuleType:
    """Optuna's SQLAlchemy table definitions of a relational storage (``TrialModel``,
    ``TrialParamModel``, ``TrialValueModel``, the attribute models)."""
    # ``optuna.storages._rdb.models``: ``RDBStorage`` reads trials only as ORM object graphs,
    # row by row; reading its tables with plain queries needs its table definitions.
    from optuna.storages._rdb import models

    return models

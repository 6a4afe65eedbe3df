"""A study's trials as ``status`` and the report read them: in one pass, without what they do
not use.

``study.get_trials()`` on a database storage loads each trial as an ORM object graph: its
parameters, values, attributes and every intermediate value, row by row (a sweep of 10,000
trials is 350,000 objects and seconds). :func:`trials` reads the same tables with five plain
queries, leaves the intermediate values out (the pruner's, which neither reads) and the kept curves
unless asked, and builds the ``FrozenTrial`` objects itself. It reads Optuna's own table
definitions (:func:`optuna_internals.rdb_models`): where those do not answer as expected
(another schema), and on every other storage (a journal is replayed in memory anyway), it is
``get_trials``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.trial import FrozenTrial

from orchestrator import stored_names
from orchestrator.study import optuna_internals

logger = logging.getLogger(__name__)

__all__ = ["trials"]


def trials(study: optuna.Study, *, curves: bool = False) -> list[FrozenTrial]:
    """Every trial of ``study``, by number, without intermediate values.

    Args:
        study: a study on any storage.
        curves: also read each ended trial's kept curve (:data:`stored_names.TRIAL_CURVE`), as the
            stored text (``curve.curve_record`` reads it).

    Returns:
        The trials, as ``get_trials(deepcopy=False)`` returns them but for their intermediate
        values (empty) and, unless ``curves``, their kept curves (absent).
    """
    outer = optuna_internals.storage_of(study)
    database = _database(outer)
    if database is None:
        return study.get_trials(deepcopy=False)

    def read() -> list[FrozenTrial]:
        return _read(database, optuna_internals.study_id(study), curves)

    try:
        ride_out = getattr(outer, "ride_out", None)
        return ride_out(read) if ride_out is not None else read()
    except (ImportError, AttributeError, KeyError) as exc:
        logger.warning("reading the trials in one pass failed (%s): reading them as Optuna", exc)
        return study.get_trials(deepcopy=False)


def _database(storage: Any) -> optuna.storages.RDBStorage | None:
    """The database storage under ``storage``'s wrappers (retrying, cached), if it is one."""
    for _ in range(4):
        if isinstance(storage, optuna.storages.RDBStorage):
            return storage
        storage = getattr(storage, "inner", None) or optuna_internals.cached_backend(storage)
    return None


def _read(database: optuna.storages.RDBStorage, study_id: int, curves: bool) -> list[FrozenTrial]:
    from sqlalchemy import select

    models = optuna_internals.rdb_models()
    trial = models.TrialModel
    of_study = select(trial.trial_id).where(trial.study_id == study_id).scalar_subquery()

    def rows(model: Any, *columns: Any, where: Any = None, order: Any = None) -> list[Any]:
        query = select(*columns).where(model.trial_id.in_(of_study))
        if where is not None:
            query = query.where(where)
        if order is not None:
            query = query.order_by(order)
        with database.engine.connect() as connection:
            return list(connection.execute(query))

    columns = trial.__table__.c
    found = rows(
        trial,
        trial.trial_id,
        trial.number,
        trial.state,
        columns.datetime_start,
        columns.datetime_complete,
    )
    param = models.TrialParamModel
    params = rows(
        param,
        param.trial_id,
        param.param_name,
        param.param_value,
        param.distribution_json,
        order=param.param_id,  # Optuna's order of a trial's parameters
    )
    value = models.TrialValueModel
    values = rows(value, value.trial_id, value.objective, value.value, value.value_type)
    user = models.TrialUserAttributeModel
    users = rows(user, user.trial_id, user.key, user.value_json)
    system = models.TrialSystemAttributeModel
    systems = rows(
        system,
        system.trial_id,
        system.key,
        system.value_json,
        where=None if curves else system.key != stored_names.TRIAL_CURVE,
    )

    by_id: dict[int, dict[str, Any]] = {
        row.trial_id: {"params": {}, "distributions": {}, "values": {}, "user": {}, "system": {}}
        for row in found
    }
    for row in params:
        distribution = _distribution(row.distribution_json)
        held = by_id[row.trial_id]
        held["params"][row.param_name] = distribution.to_external_repr(row.param_value)
        held["distributions"][row.param_name] = distribution
    for row in values:
        stored = models.TrialValueModel.stored_repr_to_value(row.value, row.value_type)
        by_id[row.trial_id]["values"][row.objective] = stored
    for row in users:
        by_id[row.trial_id]["user"][row.key] = json.loads(row.value_json)
    for row in systems:
        # A kept curve stays text (``curve.curve_record`` reads either): decoded, a large
        # sweep's curves would hold millions of numbers in memory as objects.
        text = row.value_json
        decoded = text if row.key == stored_names.TRIAL_CURVE else json.loads(text)
        by_id[row.trial_id]["system"][row.key] = decoded
    built = []
    for row in sorted(found, key=lambda r: r.number):
        held = by_id[row.trial_id]
        chosen = held["values"]
        built.append(
            FrozenTrial(
                number=row.number,
                state=row.state,
                value=None,
                values=[chosen[i] for i in sorted(chosen)] if chosen else None,
                datetime_start=_local(row.datetime_start),
                datetime_complete=_local(row.datetime_complete),
                params=held["params"],
                distributions=held["distributions"],
                user_attrs=held["user"],
                system_attrs=held["system"],
                intermediate_values={},
                trial_id=row.trial_id,
            )
        )
    return built


def _local(utc: dt.datetime | None) -> dt.datetime | None:
    """A stored time (UTC since Optuna 4) as Optuna gives it: local, without a zone."""
    if utc is None:
        return None
    return utc.replace(tzinfo=dt.UTC).astimezone().replace(tzinfo=None)


@functools.lru_cache(maxsize=256)
def _distribution(text: str) -> BaseDistribution:
    # A sweep's thousands of trials share a few distributions.
    return json_to_distribution(text)

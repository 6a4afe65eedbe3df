"""The private names of Optuna and MLflow, each behind one function of
``orchestrator/study/optuna_internals.py`` or ``orchestrator/tracking/mlflow_internals.py``.

Each adapter function is exercised against the installed library (real storages, a real
tracking store), so an upgrade that removes or changes a private name fails here, with a
message that names the private name and the function to mend. The last tests check that no
other module of ``orchestrator/`` uses such a name.
"""

from __future__ import annotations

import ast
import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.trial import TrialState

from orchestrator.study import optuna_internals
from orchestrator.study.retrying_storage import RetryingStorage
from orchestrator.tracking import mlflow_internals

ROOT = Path(__file__).resolve().parent.parent
OPTUNA_ADAPTER = "orchestrator/study/optuna_internals.py"
MLFLOW_ADAPTER = "orchestrator/tracking/mlflow_internals.py"


def _gone(private: str, adapter: str, function: str) -> str:
    module = adapter.removesuffix(".py")
    return f"{private} is gone or changed: {module}.{function} needs a new way"


@contextlib.contextmanager
def _private(private: str, function: str, adapter: str = OPTUNA_ADAPTER) -> Iterator[str]:
    """Run the block that exercises ``function``: an error in it, or a failed assertion, fails
    the test with a message naming the private name it relies on. Yields that message, for the
    block's own assertions."""
    message = _gone(private, adapter, function)
    try:
        yield message
    except AssertionError as exc:
        pytest.fail(f"{message}\n{exc}")
    except Exception as exc:
        pytest.fail(f"{message}\n{type(exc).__name__}: {exc}")


def test_storage_of_is_the_storage_the_study_writes_through(tmp_path: Path) -> None:
    memory = InMemoryStorage()
    on_memory = optuna.create_study(storage=memory)
    by_url = optuna.create_study(storage=f"sqlite:///{tmp_path / 'internals.db'}")
    with _private("optuna.Study._storage", "storage_of") as message:
        assert optuna_internals.storage_of(on_memory) is memory, message
        for study in (on_memory, by_url):
            storage = optuna_internals.storage_of(study)
            assert isinstance(storage, BaseStorage), message
            study.enqueue_trial({"x": 1.0})
            study_id = storage.get_study_id_from_name(study.study_name)
            assert len(storage.get_all_trials(study_id)) == len(study.get_trials()) == 1, message


# Each test below reaches the storage without the adapter (it holds the storage it made), so
# that a private name that is gone fails its own test alone.


def test_study_id_is_the_storages_id_of_the_study(tmp_path: Path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path / 'internals.db'}")
    optuna.create_study(study_name="other", storage=storage)
    study = optuna.create_study(study_name="internals", storage=storage)  # its id is not 1
    with _private("optuna.Study._study_id", "study_id") as message:
        found = optuna_internals.study_id(study)
        assert found == storage.get_study_id_from_name(study.study_name), message
        assert storage.get_study_name_from_id(found) == study.study_name, message


def test_trial_id_of_a_frozen_and_a_live_trial() -> None:
    storage = InMemoryStorage()
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 0.25})
    study.enqueue_trial({"x": 0.75})
    with _private("optuna.trial.FrozenTrial._trial_id / optuna.Trial._trial_id", "trial_id") as m:
        frozen = study.get_trials()[1]
        found = optuna_internals.trial_id(frozen)
        assert isinstance(found, int), m
        assert storage.get_trial(found).number == frozen.number == 1, m
        live = optuna.Trial(study, found)
        assert optuna_internals.trial_id(live) == found, m
        assert live.number == 1, m


def test_suggest_and_fixed_params_read_an_enqueued_trial() -> None:
    study = optuna.create_study()
    study.enqueue_trial({"x": 0.5, "kind": "b"})
    trial = study.ask()
    with _private("optuna.Trial._fixed_params", "fixed_params") as message:
        assert optuna_internals.fixed_params(trial) == {"x": 0.5, "kind": "b"}, message
    with _private("optuna.Trial._suggest", "suggest") as message:
        x = optuna_internals.suggest(trial, "x", FloatDistribution(0.0, 1.0))
        kind = optuna_internals.suggest(trial, "kind", CategoricalDistribution(["a", "b"]))
        free = optuna_internals.suggest(trial, "free", FloatDistribution(2.0, 3.0, step=0.5))
        assert (x, kind) == (0.5, "b"), message  # as enqueued
        assert free in (2.0, 2.5, 3.0), message  # sampled
        assert trial.params == {"x": 0.5, "kind": "b", "free": free}, message  # and stored
        again = optuna_internals.suggest(trial, "free", FloatDistribution(2.0, 3.0, step=0.5))
        assert again == free, message  # asked again, the same


def test_heartbeat_base_and_heartbeat_of(tmp_path: Path) -> None:
    beating = RDBStorage(f"sqlite:///{tmp_path / 'beat.db'}", heartbeat_interval=1)
    silent = RDBStorage(f"sqlite:///{tmp_path / 'silent.db'}")
    private = "optuna.storages._heartbeat.BaseHeartbeat"
    with _private(private, "heartbeat_base") as message:
        base = optuna_internals.heartbeat_base()
        assert isinstance(base, type), message
        for method in ("record_heartbeat", "get_heartbeat_interval"):
            assert callable(getattr(base, method, None)), f"{message}: no {method}"
        assert isinstance(beating, base), message
        # The storage wrappers are heartbeat storages too.
        assert isinstance(optuna_internals.cached(beating), base), message
        assert isinstance(RetryingStorage(optuna_internals.cached(beating)), base), message
    with _private(private, "heartbeat_of") as message:
        assert optuna_internals.heartbeat_of(beating) is beating, message
        wrapped = RetryingStorage(beating)
        assert optuna_internals.heartbeat_of(wrapped) is wrapped, message
        assert optuna_internals.heartbeat_of(silent) is None, message
        assert optuna_internals.heartbeat_of(InMemoryStorage()) is None, message


def test_stale_trial_ids_lists_a_trial_whose_beats_stopped(tmp_path: Path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path / 'beat.db'}", heartbeat_interval=1, grace_period=1)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "beats")
    running = storage.create_new_trial(study_id)  # RUNNING
    never_beat = storage.create_new_trial(study_id)  # no beat at all: not stale by Optuna
    assert storage.get_trial(never_beat).state == TrialState.RUNNING
    wrapped = RetryingStorage(optuna_internals.cached(storage))
    private = f"optuna.storages._heartbeat.BaseHeartbeat.{optuna_internals.STALE_TRIAL_IDS}"
    with _private(private, "stale_trial_ids") as message:
        storage.record_heartbeat(running)
        assert optuna_internals.stale_trial_ids(storage, study_id) == [], message
        time.sleep(2.5)  # past the grace period of 1 s
        assert optuna_internals.stale_trial_ids(storage, study_id) == [running], message
        # Forwarded by the storage wrappers (RetryingStorage retries it by this name).
        assert optuna_internals.stale_trial_ids(wrapped, study_id) == [running], message
        storage.record_heartbeat(running)
        assert optuna_internals.stale_trial_ids(wrapped, study_id) == [], message


def test_cached_and_cached_backend(tmp_path: Path) -> None:
    database = RDBStorage(f"sqlite:///{tmp_path / 'cached.db'}")
    with _private("optuna.storages._CachedStorage", "cached") as message:
        cache = optuna_internals.cached(database)
        assert isinstance(cache, BaseStorage) and cache is not database, message
        study = optuna.create_study(study_name="cached", storage=cache)
        study.enqueue_trial({"x": 1.0})
        assert len(optuna.load_study(study_name="cached", storage=database).trials) == 1, message
    with _private("optuna.storages._CachedStorage._backend", "cached_backend") as message:
        assert optuna_internals.cached_backend(cache) is database, message
        assert optuna_internals.cached_backend(database) is None, message
        assert optuna_internals.cached_backend(InMemoryStorage()) is None, message


def test_rdb_models_describe_the_tables_of_a_real_storage(tmp_path: Path) -> None:
    from sqlalchemy import select

    database = RDBStorage(f"sqlite:///{tmp_path / 'internals.db'}")
    study = optuna.create_study(study_name="internals", storage=database)
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.5},
            distributions={"x": FloatDistribution(0.0, 1.0)},
            value=0.125,
            user_attrs={"seed": 3},
            system_attrs={"curve": "[1, 2]"},
        )
    )
    study_id = database.get_study_id_from_name("internals")
    trial_id = database.get_trial_id_from_study_id_trial_number(study_id, 0)
    with _private("optuna.storages._rdb.models", "rdb_models") as message:
        models = optuna_internals.rdb_models()

        def one(*columns: object) -> object:
            with database.engine.connect() as connection:
                rows = list(connection.execute(select(*columns)))
            assert len(rows) == 1, f"{message}: {len(rows)} rows of {columns}"
            return rows[0]

        # What orchestrator/study/snapshot.py reads, column by column.
        trial = models.TrialModel
        columns = trial.__table__.c
        row = one(
            trial.trial_id,
            trial.number,
            trial.state,
            trial.study_id,
            columns.datetime_start,
            columns.datetime_complete,
        )
        assert (row.trial_id, row.number, row.study_id) == (trial_id, 0, study_id), message
        assert row.state == TrialState.COMPLETE, message
        assert row.datetime_complete is not None, message
        param = models.TrialParamModel
        row = one(
            param.trial_id,
            param.param_id,
            param.param_name,
            param.param_value,
            param.distribution_json,
        )
        assert (row.param_name, row.param_value) == ("x", 0.5), message
        assert row.trial_id == trial_id, message
        value = models.TrialValueModel
        row = one(value.trial_id, value.objective, value.value, value.value_type)
        stored = value.stored_repr_to_value(row.value, row.value_type)
        assert (row.objective, stored) == (0, 0.125), message
        user = models.TrialUserAttributeModel
        assert tuple(one(user.trial_id, user.key, user.value_json)[1:]) == ("seed", "3"), message
        system = models.TrialSystemAttributeModel
        row = one(system.trial_id, system.key, system.value_json)
        assert (row.key, row.value_json) == ("curve", '"[1, 2]"'), message


# --- MLflow ---------------------------------------------------------------------------------


def test_tracking_store_of_a_database_and_of_a_server(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("internals"))
    client.log_metric(run.info.run_id, "accuracy", 0.5, step=3)
    private = "mlflow.MlflowClient._tracking_client.store"
    with _private(private, "tracking_store", MLFLOW_ADAPTER) as message:
        store = mlflow_internals.tracking_store(client)
        # What orchestrator/report/histories.py calls on a database store.
        found = store.get_metric_history_bulk([run.info.run_id], "accuracy", 10)
        assert [(m.run_id, m.step, m.value) for m in found] == [(run.info.run_id, 3, 0.5)], message
        # And on a server's store (nothing is sent: the credentials are read locally).
        server = mlflow_internals.tracking_store(MlflowClient("http://127.0.0.1:9"))
        assert server.get_host_creds().host == "http://127.0.0.1:9", message


# --- Nowhere else ----------------------------------------------------------------------------

# Each private name (or the module it lives in) that the adapters hold, as a pattern of the
# source text. An attribute counts written as one or as a string (``getattr(x, "_backend")``);
# an own attribute (``self._storage``) is not Optuna's.


def _attribute(name: str) -> str:
    return rf"(?<!\bself)(?<!\bcls)\.{name}\b|[\"']{name}[\"']"


PRIVATE_NAMES = {
    "Study._storage": _attribute("_storage"),
    "Study._study_id": _attribute("_study_id"),
    "Trial._trial_id": _attribute("_trial_id"),
    "Trial._suggest": _attribute("_suggest"),
    "Trial._fixed_params": _attribute("_fixed_params"),
    "optuna.storages._heartbeat": _attribute("_heartbeat"),
    "BaseHeartbeat": r"\bBaseHeartbeat\b",
    "_get_stale_trial_ids": r"\b_get_stale_trial_ids\b",
    "optuna.storages._CachedStorage": r"\b_CachedStorage\b",
    "_CachedStorage._backend": _attribute("_backend"),
    "optuna.storages._rdb": r"\b_rdb\b",
    "MlflowClient._tracking_client": r"\b_tracking_client\b",
}


def _sources() -> dict[str, str]:
    """Every module of ``orchestrator/`` but the two adapters, by path."""
    found = {}
    for path in sorted((ROOT / "orchestrator").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name not in (OPTUNA_ADAPTER, MLFLOW_ADAPTER):
            found[name] = path.read_text()
    return found


def test_no_module_but_the_adapters_names_a_private_name() -> None:
    sources = _sources()
    assert len(sources) > 40  # the walk found the package
    found = [
        f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {private}"
        for name, text in sources.items()
        for private, pattern in PRIVATE_NAMES.items()
        for match in re.finditer(pattern, text)
    ]
    assert not found, (
        "private names of Optuna or MLflow outside their adapters "
        f"({OPTUNA_ADAPTER}, {MLFLOW_ADAPTER}): go through a function there instead:\n"
        + "\n".join(found)
    )


def test_the_patterns_find_what_the_adapters_hold() -> None:
    # Each pattern matches where the name is used, so the test above looks for what is there.
    held = (ROOT / OPTUNA_ADAPTER).read_text() + (ROOT / MLFLOW_ADAPTER).read_text()
    missing = [p for p, pattern in PRIVATE_NAMES.items() if not re.search(pattern, held)]
    assert not missing, f"patterns that match nothing in the adapters: {missing}"
    own = PRIVATE_NAMES["Study._storage"]
    assert not re.search(own, "self._storage = storage")
    assert re.search(own, "study._storage") and re.search(own, 'getattr(study, "_storage")')


def _private_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Imports of a private module or name of Optuna or MLflow, and private attributes of
    their modules (``optuna.storages._CachedStorage``), with their lines."""
    libraries = ("optuna", "mlflow")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            parts = node.module.split(".")
            names = [alias.name for alias in node.names]
            if parts[0] in libraries and any(p.startswith("_") for p in [*parts, *names]):
                yield node.lineno, f"from {node.module} import {', '.join(names)}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in libraries and any(p.startswith("_") for p in parts):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            root: ast.AST = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in libraries:
                yield node.lineno, ast.unparse(node)


def test_no_module_but_the_adapters_imports_a_private_module_of_optuna_or_mlflow() -> None:
    found = [
        f"{name}:{line}: {what}"
        for name, text in _sources().items()
        for line, what in _private_uses(ast.parse(text, name))
    ]
    assert not found, "private modules of Optuna or MLflow outside their adapters:\n" + "\n".join(
        found
    )
    sample = "import optuna\nfrom optuna.storages._rdb import models\noptuna.storages._X(1)\n"
    assert sorted(line for line, _ in _private_uses(ast.parse(sample))) == [2, 3]

"""Optuna's own storage conformance suite (``optuna.testing.pytest_storages``) against the
study storages exactly as ``study.open_storage`` builds them: SQLite, PostgreSQL and the
journal file, each behind ``RetryingStorage`` (pickling included: a study handed to
multiprocessing, joblib or Dask is pickled with its storage)."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.storages import BaseStorage
from optuna.testing.pytest_storages import StorageTestCase

from orchestrator import workspace
from orchestrator.study.retrying_storage import RetryingStorage
from orchestrator.study.study import open_storage


@pytest.fixture(params=["sqlite", "postgresql", "journal"])
def storage(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_database: Callable[[], str],
) -> BaseStorage:
    """A new, empty storage of each kind."""
    urls = {
        "sqlite": lambda: workspace.sqlite_url(tmp_path / "study.db"),
        "postgresql": postgres_database,
        "journal": lambda: workspace.journal_url(tmp_path / "study.journal"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return open_storage(urls[request.param]())


@pytest.mark.slow
class TestTheProjectsStorages(StorageTestCase):
    """Every test of Optuna's suite, on each storage."""


def test_a_pickled_storage_keeps_riding_out_outages(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = open_storage(workspace.sqlite_url(tmp_path / "study.db"), outage_limit=7.0)
    restored = pickle.loads(pickle.dumps(storage))
    assert isinstance(restored, RetryingStorage) and restored.limit_seconds == 7.0
    with restored.patience(0.5):  # its per-thread state works again after the trip
        study = optuna.create_study(storage=restored, study_name="pickled")
    assert [s.study_name for s in storage.get_all_studies()] == ["pickled"]
    assert study.study_name == "pickled"

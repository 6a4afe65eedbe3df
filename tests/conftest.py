"""Shared fixtures: an MLflow server, fresh PostgreSQL databases, a study in SQLite.

The helpers that scripts and benchmarks share with the tests (sweep documents, the CLI in a
subprocess, servers, reading results back) are in :mod:`orchestrator.testing`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from orchestrator import workspace
from orchestrator.config import SweepConfig
from orchestrator.study import queue as queues, study as studies
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import USER_SETTINGS
from orchestrator.testing.servers import ThrowawayMlflow

ROOT = Path(__file__).resolve().parent.parent

# Two cores, shared with worker subprocesses and servers: one intra-op thread per process keeps
# test runtimes steady (two threads spinning against other processes can be 10x slower).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test in a clean environment and a working folder of its own: the user's settings
    (``ORCHESTRATE_*``, ``MLFLOW_*``) and the checkout's workspaces (``.orchestrate/``, which
    the README's quickstart leaves) never reach it, in either order of the README's commands."""
    for name in list(os.environ):
        if name.startswith(USER_SETTINGS):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1, stopped with its whole process group."""
    with ThrowawayMlflow(tmp_path) as server:
        yield server.uri


POSTGRES = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def postgres_database() -> Iterator[Callable[[], str]]:
    """Creates fresh PostgreSQL databases (on 127.0.0.1:5432) and drops them afterwards."""
    import psycopg

    created: list[str] = []

    def admin() -> psycopg.Connection:
        return psycopg.connect(f"{POSTGRES}/test", autocommit=True)

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        connection = admin()
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        connection.close()
        created.append(name)
        return f"{POSTGRES}/{name}"

    yield make
    for name in created:
        connection = admin()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.close()


# --------------------------------------------------------------------------- a study in SQLite


def config_of(tmp_path: Path, **search: object) -> SweepConfig:
    """A two-seed random-sampler sweep of 6 trials over rate and fraction, in ``tmp_path``."""
    return parse_config(
        {
            "name": "queue",
            "seeds": [0, 1],
            "search": {
                "sampler": "random",
                "n_trials": 6,
                "space": {
                    "alds.rate": {"low": 0.0, "high": 0.8, "step": 0.1},
                    "imp.prune_fraction": {"low": 0.1, "high": 0.4},
                },
                **search,
            },
            "execution": {"workspace": str(tmp_path)},
        }
    )


def open_study(tmp_path: Path, config: SweepConfig, **kwargs: Any) -> tuple[optuna.Study, Any]:
    """The sweep's study in its default SQLite storage, and that storage."""
    storage = studies.open_storage(workspace.default_storage(config), **kwargs)
    return studies.create_or_resume(config, storage), storage


def drain(study: optuna.Study, storage: Any, config: SweepConfig) -> list[optuna.trial.FrozenTrial]:
    """Claim and complete every queued trial (its value: its ALDS rate)."""
    while (claimed := queues.claim_trial(study)) is not None:
        trial, _ = claimed
        params = queues.suggest(trial, config)
        study.tell(trial, params["alds.rate"])
    return study.get_trials()

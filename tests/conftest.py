"""Shared fixtures: tiny sweeps on synthetic data that run in seconds on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml

from orchestrator import queue as queues
from orchestrator import study as studies
from orchestrator.config import SweepConfig, parse_config
from orchestrator.throwaway import free_port, start_mlflow_server, stop_process_group

ROOT = Path(__file__).resolve().parent.parent

# Two cores, shared with worker subprocesses and servers: one intra-op thread per process keeps
# test runtimes steady (two threads spinning against other processes can be 10x slower).
torch.set_num_threads(1)


def tiny_sweep(tmp_path: Path, name: str = "tiny", **sections: object) -> dict:
    """A sweep document: LeNet on 8x8 synthetic images, 2 IMP cycles, grid over ALDS rates."""
    document: dict = {
        "name": name,
        "seeds": [0],
        "model": "lenet300100",
        "dataset": {
            "name": "synthetic",
            "synthetic": {
                "image_size": 8,
                "channels": 1,
                "num_classes": 4,
                "train_size": 256,
                "test_size": 128,
                "noise": 0.5,
            },
        },
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 32, "epochs": 1},
        "alds": {"mode": "project"},
        "imp": {"cycles": 2, "prune_fraction": 0.5, "epochs_per_cycle": 1},
        "search": {
            "sampler": "grid",
            "space": {"alds.rate": {"choices": [0.0, 0.5]}},
        },
        "execution": {
            "devices": "cpu",
            "workspace": str(tmp_path / "ws" / name),
            "cache_dir": str(tmp_path / "checkpoints"),
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    return document


def write_sweep(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / f"{document['name']}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def orchestrate(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    env = {**os.environ, "ORCHESTRATE_HEARTBEAT_SECONDS": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_sweep(tmp_path: Path, document: dict) -> tuple[Path, Path]:
    """Write ``document``, run ``orchestrate sweep`` on it (it must succeed); returns the sweep
    file and the sweep's workspace (its ``study.db`` and ``mlflow.db``)."""
    path = write_sweep(tmp_path, document)
    result = orchestrate("sweep", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return path, Path(document["execution"]["workspace"])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1, stopped with its whole process group."""
    port = free_port()
    process = start_mlflow_server(tmp_path, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(process)


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
    storage = studies.open_storage(studies.default_storage(config), **kwargs)
    return studies.create_or_resume(config, storage), storage


def drain(study: optuna.Study, storage: Any, config: SweepConfig) -> list[optuna.trial.FrozenTrial]:
    """Claim and complete every queued trial (its value: its ALDS rate)."""
    while (claimed := queues.claim_trial(study)) is not None:
        trial, _ = claimed
        params = queues.suggest(trial, config)
        study.tell(trial, params["alds.rate"])
    return study.get_trials()

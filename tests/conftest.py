"""Shared fixtures: tiny sweeps on synthetic data that run in seconds on the CPU."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1, stopped with its whole process group."""
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "mlflow-server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()

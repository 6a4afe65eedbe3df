"""Servers of one's own for fault injection: a PostgreSQL (``initdb`` into a temporary folder,
on a free port) and an MLflow tracking server, each stopped and started again at will.

Fault injection needs servers it may restart without disturbing anyone else's; the tests and
``scripts/chaos.py`` use these. PostgreSQL needs its server binaries
(``/usr/lib/postgresql/<version>/bin``, Debian package ``postgresql``); run as root, the server
runs as the ``postgres`` user, as PostgreSQL requires.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from orchestrator.config import ConfigError

__all__ = [
    "ThrowawayPostgres",
    "find_binaries",
    "free_port",
    "start_mlflow_server",
    "stop_process_group",
]


def find_binaries() -> Path:
    """The folder of ``initdb`` and ``pg_ctl`` (the newest installed version)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise ConfigError(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: install the "
        "Debian package postgresql"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """A private PostgreSQL server; a context manager that removes it on exit."""

    def __init__(self, port: int | None = None) -> None:
        self.binaries = find_binaries()
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="orchestrate-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.folder, user="postgres")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.binaries / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {result.stderr}{log}")

    def create(self) -> ThrowawayPostgres:
        """``initdb`` (trust authentication, no password) and start."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in a crash or a failover."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def start_mlflow_server(folder: Path, port: int, backend: str | None = None) -> subprocess.Popen:
    """Start ``mlflow server`` on 127.0.0.1:port in its own process group (its log, store and
    artifacts in ``folder``); return once it answers ``/health``."""
    log = open(folder / f"mlflow-server-{port}.log", "a")  # noqa: SIM115 (owned by the process)
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
            backend or f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process_group(process)
            raise RuntimeError((folder / f"mlflow-server-{port}.log").read_text()[-2000:])
        time.sleep(0.5)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a process and every child it spawned (mlflow server forks job consumers)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

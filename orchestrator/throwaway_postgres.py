"""A PostgreSQL server of one's own: ``initdb`` into a temporary folder, started on a free port,
stopped and started again at will, removed at the end.

Fault injection needs a database it may restart without disturbing anyone else's; the tests
and ``orchestrate chaos`` use this one. It needs PostgreSQL's server binaries
(``/usr/lib/postgresql/<version>/bin``, Debian package ``postgresql``); run as root, the server
runs as the ``postgres`` user, as PostgreSQL requires.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from orchestrator.config import ConfigError

__all__ = ["ThrowawayPostgres", "find_binaries"]


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """A private PostgreSQL server; a context manager that removes it on exit."""

    def __init__(self, port: int | None = None) -> None:
        self.binaries = find_binaries()
        self.port = port or _free_port()
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

"""Servers of one's own for fault injection: a PostgreSQL (``initdb`` into a temporary folder,
on a free port), an MLflow tracking server and a single-node Slurm cluster, each stopped and
started again at will.

Fault injection needs servers it may restart without disturbing anyone else's; the tests,
``scripts/chaos.py`` and the benchmarks use these. PostgreSQL needs its server binaries
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
    "ThrowawayMlflow",
    "ThrowawayPostgres",
    "ThrowawaySlurm",
    "find_binaries",
    "free_port",
    "start_mlflow_server",
    "stop_process_group",
]


def find_binaries() -> Path:
    """Find PostgreSQL's server binaries.

    Returns:
        The folder of ``initdb`` and ``pg_ctl`` (of the newest installed version).

    Raises:
        ConfigError: they are not installed.
    """
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
    """Pick a port for a server of one's own.

    Returns:
        A TCP port on 127.0.0.1 that nothing listens on now.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """A private PostgreSQL server; a context manager that creates and starts it, and removes
    it (server and data) on exit.

    Args:
        port: its port; a free one when None.
    """

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
        """Start the server (again) on its port, with the data it had."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in a crash or a failover."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs, and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def start_mlflow_server(folder: Path, port: int, backend: str | None = None) -> subprocess.Popen:
    """Start ``mlflow server`` on 127.0.0.1 in its own process group; return once it answers
    ``/health``.

    Args:
        folder: where its log, its default store and its artifacts go.
        port: the port it listens on.
        backend: its backend store URI; a SQLite file in ``folder`` when None.

    Returns:
        The server's process: stop it with :func:`stop_process_group`.

    Raises:
        RuntimeError: it exited or did not answer within two minutes (the end of its log).
    """
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
        # As the compose stack: no job runner, whose pool of huey consumers would take a core
        # of the machine from the sweep under test.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
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


class ThrowawayMlflow:
    """A private ``mlflow server`` on 127.0.0.1; a context manager that starts it and stops it
    on exit. :meth:`stop` then :meth:`start` keeps its port and store: an outage, as its
    clients see it.

    Args:
        folder: where its log, its default store and its artifacts go.
        port: its port; a free one when None.
        backend: its backend store URI; a SQLite file in ``folder`` when None.
    """

    def __init__(self, folder: Path, port: int | None = None, backend: str | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.backend = backend
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        """Its tracking URI."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThrowawayMlflow:
        """Start it; return once it answers ``/health``."""
        self.process = start_mlflow_server(self.folder, self.port, self.backend)
        return self

    def stop(self) -> None:
        """Stop it and every worker process it forked (a no-op when stopped)."""
        if self.process is not None:
            stop_process_group(self.process)
            self.process = None

    def __enter__(self) -> ThrowawayMlflow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a process started with ``start_new_session=True`` and every child it spawned
    (mlflow server forks job consumers): SIGTERM, SIGKILL after 20 s.

    Args:
        process: the leader of the process group.
    """
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


SLURM_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
_MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


class ThrowawaySlurm:
    """A single-node Slurm cluster of one's own (controller and node daemon on free ports,
    state in a temporary folder), for tests of ``--launcher slurm``; a context manager.

    Run as root, as the Debian packages ``slurmctld slurmd slurm-client munge`` install it
    (installed here when missing). ``munged`` is started when none answers, and then stopped
    again; a running one is shared. Clients need :meth:`env` (``SLURM_CONF``). On exit every
    job is cancelled before the daemons stop: job processes outlive ``slurmd``.

    Args:
        cpus: the CPUs its node declares (more than the host has is fine: 1-CPU workers).
        memory_mb: the memory its node declares.
    """

    def __init__(self, cpus: int = 8, memory_mb: int = 16000) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="slurm-"))
        self.conf = self.folder / "slurm.conf"
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.daemons: list[subprocess.Popen] = []
        self.munged: int | None = None  # pid of a munged started here

    def variables(self) -> dict[str, str]:
        """What a Slurm client of this cluster needs on top of its environment."""
        return {"SLURM_CONF": str(self.conf)}

    def env(self) -> dict[str, str]:
        """The environment of a Slurm client of this cluster."""
        return {**os.environ, **self.variables()}

    def start(self) -> ThrowawaySlurm:
        """Start the controller and the node daemon; return once the node is idle."""
        _install(SLURM_PACKAGES, "slurmctld")
        self._munge()
        for name in ("state", "spool"):
            (self.folder / name).mkdir()
        self.conf.write_text(self._configuration())
        for command in (
            ["slurmctld", "-D", "-f", str(self.conf)],
            ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)],
        ):
            log = open(self.folder / f"{command[0]}.out", "w")  # noqa: SIM115 (the daemon's)
            self.daemons.append(
                subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        deadline = time.monotonic() + 60
        while True:
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], env=self.env(), capture_output=True, text=True
            ).stdout.strip()
            if state == "idle":
                return self
            if time.monotonic() > deadline or any(d.poll() is not None for d in self.daemons):
                logs = "".join(
                    (self.folder / f).read_text()
                    for f in ("slurmctld.log", "slurmd.log")
                    if (self.folder / f).exists()
                )
                self.stop()
                raise RuntimeError(f"the Slurm node did not come up ({state!r}):\n{logs[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel every job, wait for them to end, stop the daemons and a munged started here."""
        if all(d.poll() is None for d in self.daemons):
            subprocess.run(["scancel", "--full", "--user", "root"], env=self.env(), check=False)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                jobs = subprocess.run(
                    ["squeue", "-h", "-o", "%i"], env=self.env(), capture_output=True, text=True
                ).stdout.split()
                if not jobs:
                    break
                time.sleep(0.5)
        for daemon in reversed(self.daemons):
            stop_process_group(daemon)
        self.daemons = []
        if self.munged is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.munged, signal.SIGTERM)
            self.munged = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def _munge(self) -> None:
        answers = (
            _MUNGE_SOCKET.exists()
            and subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode
            == 0
        )
        if answers:
            return
        _MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(_MUNGE_SOCKET.parent, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        pid_file = _MUNGE_SOCKET.parent / "munged.pid"
        self.munged = int(pid_file.read_text()) if pid_file.exists() else None

    def _configuration(self) -> str:
        folder = self.folder
        return "\n".join(
            [
                "ClusterName=testing",
                "SlurmctldHost=localhost",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "SlurmUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                # A requeued job waits for its old credential to expire (default 120 s).
                "AuthInfo=cred_expire=10",
                f"StateSaveLocation={folder / 'state'}",
                f"SlurmdSpoolDir={folder / 'spool'}",
                f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                f"SlurmdPidFile={folder / 'slurmd.pid'}",
                f"SlurmctldLogFile={folder / 'slurmctld.log'}",
                f"SlurmdLogFile={folder / 'slurmd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "SchedulerParameters=bf_interval=1,sched_interval=2",
                # Declare more CPUs than the host has: several 1-CPU workers on a small host.
                "SlurmdParameters=config_overrides",
                "ReturnToService=2",
                "KillWait=5",
                "MinJobAge=600",
                "MailProg=/bin/true",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/filetxt",
                f"JobCompLoc={folder / 'jobcomp.txt'}",
                f"NodeName=localhost CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
                "PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def __enter__(self) -> ThrowawaySlurm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _install(packages: tuple[str, ...], probe: str) -> None:
    """Install Debian ``packages`` unless ``probe`` is on PATH (as root, or with sudo)."""
    if shutil.which(probe):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )

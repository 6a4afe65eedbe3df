"""The real ``orchestrate`` CLI in a subprocess, as a user runs it: argument parsing, exit
codes, console output and worker processes are all the real ones.

Every command gets the caller's environment, less the user's settings of this tool and of
MLflow (:data:`USER_SETTINGS`: a storage or tracking server set in the shell must never receive
test runs, nor its heartbeat or outage limit change what a test sees; a sweep then uses the
stores in its workspace, unless the caller passes them), plus short heartbeats by default.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal, overload

from orchestrator.testing.sweeps import write_sweep

__all__ = [
    "COMMAND",
    "HEARTBEAT_SECONDS",
    "USER_SETTINGS",
    "cli_env",
    "commit_tree",
    "finish",
    "imports_of",
    "orchestrate",
    "run_sweep",
]

# ``python -m orchestrator``: this interpreter, whether or not the console script is on PATH.
COMMAND = (sys.executable, "-m", "orchestrator")
# Tests kill workers on purpose: with 2 s beats a dead worker's trial is found stale (four
# missed beats) after 8 s instead of 2 minutes.
HEARTBEAT_SECONDS = 2
# The prefixes of the environment variables that configure this tool (ORCHESTRATE_STORAGE,
# ORCHESTRATE_HEARTBEAT_SECONDS, ORCHESTRATE_DATA, ...) and MLflow (MLFLOW_TRACKING_URI, its
# login and timeouts): a user's shell must not reach a test's commands.
USER_SETTINGS = ("ORCHESTRATE_", "MLFLOW_")


# Run in a fresh interpreter (a test's has torch loaded already); the last line lists the
# heavy libraries the command imported, or "-".
_IMPORT_PROBE = """
import sys
from orchestrator.cli import main
main(sys.argv[1:], standalone_mode=False)
print(" ".join(name for name in ("torch", "mlflow", "optuna") if name in sys.modules) or "-")
"""


def imports_of(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``orchestrate ARGS`` in-process in a fresh interpreter, in ``cwd``: its output, whose
    last line names the heavy libraries (torch, mlflow, optuna) it imported, or ``-``."""
    return subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


@contextlib.contextmanager
def commit_tree(revision: str) -> Iterator[Path]:
    """A checkout of ``revision`` of this repository (a detached git worktree), removed after:
    put first on ``PYTHONPATH``, the same interpreter and console script run that commit's
    orchestrator, for measuring it side by side with this one (the benchmarks' ``--before``).
    """
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(tree), revision],
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], check=False
            )


def cli_env(
    env: Mapping[str, str] | None = None,
    *,
    heartbeat: float | None = HEARTBEAT_SECONDS,
    threads: int | None = None,
) -> dict[str, str]:
    """The environment :func:`orchestrate` runs a command in.

    Args:
        env: variables to set on top (e.g. ``SLURM_CONF``, ``CUDA_VISIBLE_DEVICES``).
        heartbeat: ``ORCHESTRATE_HEARTBEAT_SECONDS``; None keeps the caller's (or the
            tool's default of 30 s).
        threads: OMP and torch threads of every process of the command
            (``OMP_NUM_THREADS``, ``ORCHESTRATE_WORKER_THREADS``); None keeps their defaults.

    Returns:
        A new dict: the caller's environment with those changes.
    """
    merged = {k: v for k, v in os.environ.items() if not k.startswith(USER_SETTINGS)}
    if heartbeat is not None:
        merged["ORCHESTRATE_HEARTBEAT_SECONDS"] = str(heartbeat)
    if threads is not None:
        merged["OMP_NUM_THREADS"] = merged["ORCHESTRATE_WORKER_THREADS"] = str(threads)
    merged.update(env or {})
    return merged


@overload
def orchestrate(
    *args: str,
    cwd: Path | None = ...,
    env: Mapping[str, str] | None = ...,
    heartbeat: float | None = ...,
    threads: int | None = ...,
    timeout: float | None = ...,
    stdout: int | None = ...,
    background: Literal[False] = ...,
) -> subprocess.CompletedProcess[str]: ...


@overload
def orchestrate(
    *args: str,
    cwd: Path | None = ...,
    env: Mapping[str, str] | None = ...,
    heartbeat: float | None = ...,
    threads: int | None = ...,
    timeout: float | None = ...,
    stdout: int | None = ...,
    background: Literal[True],
) -> subprocess.Popen[str]: ...


def orchestrate(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    heartbeat: float | None = HEARTBEAT_SECONDS,
    threads: int | None = None,
    timeout: float | None = 600,
    stdout: int | None = subprocess.PIPE,
    background: bool = False,
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """Run ``orchestrate ARGS`` in a subprocess; it never raises for a non-zero exit code.

    Args:
        *args: the command line after ``orchestrate``.
        cwd: its working directory; None: this process's.
        env: variables to set on top of the environment (see :func:`cli_env`).
        heartbeat: ``ORCHESTRATE_HEARTBEAT_SECONDS``; None keeps the environment's.
        threads: threads of every process of the command; None keeps the defaults.
        timeout: seconds until :class:`subprocess.TimeoutExpired` (not with ``background``:
            :func:`finish` takes its own).
        stdout: where its standard output goes: captured as text by default;
            ``subprocess.DEVNULL`` where nobody reads it (a benchmark's workers). Its standard
            error is always captured.
        background: start it and return at once, to signal it, kill its workers or run others
            beside it; :func:`finish` waits for it.

    Returns:
        The finished process (``returncode``, ``stdout``, ``stderr``), or with ``background``
        the running one.
    """
    command = [*COMMAND, *args]
    environment = cli_env(env, heartbeat=heartbeat, threads=threads)
    if background:
        return subprocess.Popen(
            command, cwd=cwd, env=environment, stdout=stdout, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(
        command,
        cwd=cwd,
        env=environment,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )


def finish(
    process: subprocess.Popen[str], timeout: float | None = 600, *, check: bool = False
) -> tuple[int, str, str]:
    """Wait for a command started with ``orchestrate(..., background=True)``.

    Args:
        process: the running command.
        timeout: seconds until :class:`subprocess.TimeoutExpired`; None waits for ever.
        check: raise if it exited with another code than 0.

    Returns:
        Its exit code, standard output ("" when not captured) and standard error.

    Raises:
        RuntimeError: with ``check``, it failed (the message holds its standard error).
    """
    out, err = process.communicate(timeout=timeout)
    if check and process.returncode != 0:
        raise RuntimeError(f"orchestrate exited with code {process.returncode}:\n{err}")
    return process.returncode, out or "", err or ""


def run_sweep(folder: Path, document: dict) -> tuple[Path, Path]:
    """Write ``document`` to ``folder`` and run ``orchestrate sweep`` on it there.

    Args:
        folder: where the YAML goes and the command runs.
        document: the sweep, e.g. from :func:`orchestrator.testing.sweeps.sweep_document`.

    Returns:
        The sweep file and the sweep's workspace (its ``study.db`` and ``mlflow.db``).

    Raises:
        AssertionError: the sweep did not exit 0 (the message ends with its standard error).
    """
    path = write_sweep(folder, document)
    result = orchestrate("sweep", str(path), cwd=folder)
    if result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return path, Path(document["execution"]["workspace"])

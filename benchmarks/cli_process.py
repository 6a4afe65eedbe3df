"""Running the real ``orchestrate`` CLI from a benchmark, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def orchestrate(*args: str, cwd: Path, threads: int = 1) -> subprocess.Popen:
    """Start ``orchestrate ARGS`` with ``threads`` per process and the workspace's own stores."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env["ORCHESTRATE_WORKER_THREADS"] = str(threads)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    """Wait for ``process``; raise with its error output if it failed."""
    if process.wait() != 0:
        raise RuntimeError(process.stderr.read())

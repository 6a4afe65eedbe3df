"""Processes: the sweep's parent, the workers' claim loop, one trial's run, the console."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.execution.lifecycle import WorkerContext, run_claimed
    from orchestrator.execution.sweep import Prepared, close, follow, prepare, preview
    from orchestrator.execution.worker import Host, Worker, run_worker

# Each name is imported on first use: importing any module of the package runs this face
# first, and `orchestrate --help`, `validate` and `status` must not pay for torch, Optuna
# and MLflow.
_EXPORTS = {
    "Prepared": "sweep",
    "close": "sweep",
    "follow": "sweep",
    "prepare": "sweep",
    "preview": "sweep",
    "Host": "worker",
    "Worker": "worker",
    "WorkerContext": "lifecycle",
    "run_claimed": "lifecycle",
    "run_worker": "worker",
}
__all__ = [
    "Host",
    "Prepared",
    "Worker",
    "WorkerContext",
    "close",
    "follow",
    "prepare",
    "preview",
    "run_claimed",
    "run_worker",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

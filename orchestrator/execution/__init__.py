"""Processes: the sweep's parent, the workers' claim loop, one trial's run, the console."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face

if TYPE_CHECKING:
    from orchestrator.execution.lifecycle import WorkerContext, run_claimed
    from orchestrator.execution.sweep import Prepared, close, follow, prepare, preview
    from orchestrator.execution.worker import Host, Worker, run_worker

# Each name is imported on first use (orchestrator.lazy_face).
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


if not TYPE_CHECKING:  # type checkers read the imports above, and no name besides them
    __getattr__ = lazy_face(__name__, _EXPORTS)

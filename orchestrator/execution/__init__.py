"""Processes: the sweep's parent, the workers' claim loop, one trial's run, the console."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face

if TYPE_CHECKING:
    from orchestrator.execution.lifecycle import (
        WorkerContext as WorkerContext,
        run_claimed as run_claimed,
    )
    from orchestrator.execution.sweep import (
        Prepared as Prepared,
        close as close,
        follow as follow,
        prepare as prepare,
        preview as preview,
    )
    from orchestrator.execution.worker import (
        Host as Host,
        Worker as Worker,
        run_worker as run_worker,
    )

# Each name and its module, imported on first use (orchestrator.lazy_face); the imports above
# name them for type checkers.
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
__all__ = list(_EXPORTS)


if not TYPE_CHECKING:  # type checkers read the imports above, and no name besides them
    __getattr__ = lazy_face(__name__, _EXPORTS)

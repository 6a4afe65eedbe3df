"""What one trial is and does: its spec and key, the recipe of phases, training, checkpoints,
twins."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.trial.cache import CheckpointCache
    from orchestrator.trial.identity import RESULTS_VERSION, device_class, trial_key
    from orchestrator.trial.procedure import Step, TrialResult, run_trial
    from orchestrator.trial.spec import TrialSpec
    from orchestrator.trial.twins import PairedPruner, link

# Each name is imported on first use: importing any module of the package runs this face
# first, and `orchestrate --help`, `validate` and `status` must not pay for torch.
_EXPORTS = {
    "TrialSpec": "spec",
    "RESULTS_VERSION": "identity",
    "device_class": "identity",
    "trial_key": "identity",
    "Step": "procedure",
    "TrialResult": "procedure",
    "run_trial": "procedure",
    "CheckpointCache": "cache",
    "PairedPruner": "twins",
    "link": "twins",
}
__all__ = [
    "RESULTS_VERSION",
    "CheckpointCache",
    "PairedPruner",
    "Step",
    "TrialResult",
    "TrialSpec",
    "device_class",
    "link",
    "run_trial",
    "trial_key",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

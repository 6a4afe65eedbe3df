"""What one trial is and does: its spec and key, the recipe of phases, training, checkpoints,
twins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face

if TYPE_CHECKING:
    from orchestrator.trial.cache import CheckpointCache
    from orchestrator.trial.identity import RESULTS_VERSION, device_class, trial_key
    from orchestrator.trial.procedure import Step, TrialResult, run_trial
    from orchestrator.trial.spec import TrialSpec
    from orchestrator.trial.twins import PairedPruner, link

# Each name is imported on first use (orchestrator.lazy_face).
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


if not TYPE_CHECKING:  # type checkers read the imports above, and no name besides them
    __getattr__ = lazy_face(__name__, _EXPORTS)

"""What one trial is and does: its spec and key, the recipe of phases, training, checkpoints,
twins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face

if TYPE_CHECKING:
    from orchestrator.trial.cache import CheckpointCache as CheckpointCache
    from orchestrator.trial.identity import (
        RESULTS_VERSION as RESULTS_VERSION,
        device_class as device_class,
        trial_key as trial_key,
    )
    from orchestrator.trial.procedure import (
        Step as Step,
        TrialResult as TrialResult,
        run_trial as run_trial,
    )
    from orchestrator.trial.spec import TrialSpec as TrialSpec
    from orchestrator.trial.twins import PairedPruner as PairedPruner, link as link

# Each name and its module, imported on first use (orchestrator.lazy_face); the imports above
# name them for type checkers.
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
__all__ = list(_EXPORTS)


if not TYPE_CHECKING:  # type checkers read the imports above, and no name besides them
    __getattr__ = lazy_face(__name__, _EXPORTS)

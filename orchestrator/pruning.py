"""The paired pruner (``search.pruner: paired``): an ALDS trial is stopped only by its own
IMP-only twin, never by trials of other schedules.

Optuna's median and percentile pruners compare a trial with every other trial at the same
step: with several prune fractions, rates and scopes in one sweep that is a comparison with
other experiments. The question of the sweep is one pair, an ALDS configuration against its
twin (same seed, same IMP schedule, :func:`plan.twin_of`), so this pruner reads the two at
the same levels of the sparsity grid (the steps trials report, :data:`curve.PRUNING_GRID`)
and stops the ALDS trial once it trails its twin by more than :data:`MARGIN` at each of its
last :data:`PATIENCE` levels. Twins are never pruned (:func:`plan.prunable`), and a trial
whose twin has not reached its levels yet goes on.
"""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from orchestrator import keys, plan
from orchestrator.config import SweepConfig

__all__ = ["MARGIN", "PATIENCE", "PairedPruner"]

MARGIN = 0.01  # one accuracy point: the objective's unit
PATIENCE = 3  # consecutive grid levels the trial must trail at


class PairedPruner(BasePruner):
    """Prunes an ALDS trial that trails its own twin by more than ``margin`` at each of its
    last ``patience`` reported levels.

    Args:
        config: the sweep (its searched paths and fixed ALDS rate find the twin).
        margin: how far behind, in the objective's unit, counts as trailing.
        patience: how many consecutive levels it must trail at.
    """

    def __init__(
        self, config: SweepConfig, margin: float = MARGIN, patience: int = PATIENCE
    ) -> None:
        self.config = config
        self.margin = margin
        self.patience = patience

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if not plan.is_alds(plan.rate_of(self.config, trial.params)):
            return False
        levels = sorted(trial.intermediate_values)[-self.patience :]
        if len(levels) < self.patience:
            return False
        twin = self._twin(study, trial)
        if twin is None or not set(levels) <= set(twin.intermediate_values):
            return False
        behind = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        return all(
            behind * (twin.intermediate_values[level] - trial.intermediate_values[level])
            > self.margin
            for level in levels
        )

    def _twin(self, study: optuna.Study, trial: FrozenTrial) -> FrozenTrial | None:
        """The trial's twin that has reported most (a retry's or the first try's)."""
        params = plan.twin_of(self.config, trial.params)
        seed = trial.user_attrs.get(keys.TRIAL_SEED)
        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL)
        found = [
            t
            for t in study.get_trials(deepcopy=False, states=states)
            if t.params == params and t.user_attrs.get(keys.TRIAL_SEED) == seed
        ]
        return max(found, key=lambda t: len(t.intermediate_values), default=None)

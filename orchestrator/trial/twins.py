"""Paired trials: each ALDS trial and each control is compared with its IMP-only twin
(:attr:`TrialSpec.twin`: the same seed, schedule and training, so the two differ only by ALDS,
or by the control). The queue enqueues the twins; this module links their runs (:func:`link`)
and stops an ALDS trial that trails its own twin (:class:`PairedPruner`).

**The paired pruner** (``search.pruner: paired``). Optuna's median and percentile pruners
compare a trial with every other trial at the same step: with several prune fractions, rates
and scopes in one sweep that is a comparison with other experiments. The question of the sweep
is one pair, so this pruner reads an ALDS trial and its twin at the same levels of the sparsity
grid (the steps trials report, :data:`curve.PRUNING_GRID`) and stops the ALDS trial once it
trails its twin by more than :data:`MARGIN` at each of its last :data:`PATIENCE` levels. Twins
are never pruned (:func:`plan.prunable`), and a trial whose twin has not reached its levels
yet goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from orchestrator import stored_names
from orchestrator.config import SweepConfig
from orchestrator.trial.spec import TrialSpec

__all__ = ["MARGIN", "PATIENCE", "PairedPruner", "link"]

MARGIN = 0.01  # one accuracy point: the objective's unit
PATIENCE = 3  # consecutive grid levels the trial must trail at

# Of several baseline trials with the twin's key (a failed one and its retry), the run of the
# one that completed wins, then the one running.
_PREFERENCE = {TrialState.COMPLETE: 2, TrialState.RUNNING: 1}


def _run_id(trial: FrozenTrial) -> str | None:
    run_id = trial.user_attrs.get(stored_names.TRIAL_RUN_ID)
    # A run created during a tracking outage has only a provisional id until it is sent.
    return None if not run_id or run_id.startswith(stored_names.PENDING_RUN_ID) else run_id


def _tracked(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return sorted(
        (t for t in trials if _run_id(t) and stored_names.TRIAL_SEED in t.user_attrs),
        key=lambda t: (_PREFERENCE.get(t.state, 0), t.number),
    )


def link(
    study: optuna.Study,
    config: SweepConfig,
    number: int,
    tag: Callable[[str, str], None],
) -> dict[str, str]:
    """Pair trial ``number`` with its twins: an ALDS trial or a control with its baseline, a
    baseline with every ALDS trial and control it is the twin of. Call it when the trial
    starts and when it ends.

    Args:
        study: the sweep's study.
        config: the sweep's config (the ALDS rate of trials that do not search it).
        number: the trial whose pairs to link.
        tag: called as ``tag(run_id, baseline_run_id)`` for each pair found.

    Returns:
        The pairs linked, ALDS or control run id → baseline run id.
    """
    tracked = _tracked(study.get_trials(deepcopy=False))
    runs = {trial.number: _run_id(trial) for trial in tracked}
    specs = {
        trial.number: spec
        for trial in tracked
        if (spec := TrialSpec.of_trial(config, trial)) is not None
    }
    current = specs.get(number)
    if current is None:
        return {}
    same = [(n, spec) for n, spec in specs.items() if spec.pairing == current.pairing]
    baselines = [n for n, spec in same if not spec.is_paired]
    if not baselines:
        return {}
    baseline = baselines[-1]  # the most preferred
    baseline_run = str(runs[baseline])
    if current.is_paired:
        pairs = {str(runs[number]): baseline_run}
    elif number == baseline:
        pairs = {str(runs[n]): baseline_run for n, spec in same if spec.is_paired}
    else:
        pairs = {}
    for paired_run, baseline_run in pairs.items():
        tag(paired_run, baseline_run)
    return pairs


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
        spec = TrialSpec.of_trial(self.config, trial)
        if spec is None or not spec.is_alds:
            return False
        levels = sorted(trial.intermediate_values)[-self.patience :]
        if len(levels) < self.patience:
            return False
        twin = self._twin(study, spec)
        if twin is None or not set(levels) <= set(twin.intermediate_values):
            return False
        behind = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        return all(
            behind * (twin.intermediate_values[level] - trial.intermediate_values[level])
            > self.margin
            for level in levels
        )

    def _twin(self, study: optuna.Study, spec: TrialSpec) -> FrozenTrial | None:
        """The trial's twin that has reported most (a retry's or the first try's)."""
        twin = spec.twin
        if twin is None:
            return None
        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL)
        found = [
            t
            for t in study.get_trials(deepcopy=False, states=states)
            if t.params == twin.params and t.user_attrs.get(stored_names.TRIAL_SEED) == spec.seed
        ]
        return max(found, key=lambda t: len(t.intermediate_values), default=None)

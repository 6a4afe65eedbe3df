"""The plan's one rule for the arm: which configurations run ALDS, how an arm is named, and that
no other module decides it again. (Configurations, twins and the budget: tests/test_config.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import FrozenTrial

from orchestrator import plan, stored_names
from orchestrator.config import SweepConfig
from orchestrator.sweep_file import parse_config
from orchestrator.trial import twins
from orchestrator.trial.spec import TrialSpec
from orchestrator.trial.twins import PairedPruner

ROOT = Path(__file__).resolve().parent.parent


def test_a_positive_rate_is_alds_and_zero_is_imp_only() -> None:
    assert plan.is_alds(0.3) and not plan.is_alds(0.0) and not plan.is_alds(0)
    rates = pd.Series([0.0, 0.5, 0.8])
    assert plan.is_alds(rates).tolist() == [False, True, True]
    assert plan.is_alds(np.array([0.0, 0.2])).tolist() == [False, True]
    assert (plan.arm(0.0), plan.arm(0.2)) == (stored_names.ARM_BASELINE, stored_names.ARM_ALDS)
    assert (plan.arm_label(0.0), plan.arm_label(0.25)) == ("IMP only", "ALDS 0.25")


def test_the_rate_of_a_configuration_falls_back_to_the_config() -> None:
    config = SweepConfig(name="x", alds={"rate": 0.4})
    assert plan.rate_of(config, {}) == 0.4
    assert plan.rate_of(config, {plan.ALDS_RATE: 0.0}) == 0.0


def test_no_module_decides_the_arm_again() -> None:
    # `rate > 0`, `rate == 0`, `[RATE] != 0`, ...: the predicate is plan.is_alds, once.
    pattern = re.compile(r"(rate\b\)?|RATE\]\)?)\s*(>|==|!=|<=)\s*0(\.0)?\b")
    found = []
    for package in ("orchestrator", "benchmarks", "scripts"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "orchestrator" / "plan.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
    assert pattern.search("if config.alds.rate > 0:") and pattern.search("curves[RATE] == 0")


def test_a_trial_is_read_through_its_spec() -> None:
    # A trial's twin, control and rate are derived from its raw params once, by its TrialSpec
    # (trial/spec.py, on plan's rules); growth.py plans configurations, not trials.
    pattern = re.compile(r"\b(twin_of|control_of|without_control|rate_of)\(")
    allowed = {"orchestrator/plan.py", "orchestrator/trial/spec.py", "orchestrator/study/growth.py"}
    found = []
    for path in (ROOT / "orchestrator").rglob("*.py"):
        name = str(path.relative_to(ROOT))
        if name in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("def "):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_a_spec_knows_its_arm_twin_and_pairing() -> None:
    config = parse_config(
        {
            "name": "spec",
            "imp": {"controls": ["reinit"]},
            "search": {
                "sampler": "grid",
                "space": {
                    "alds.rate": {"choices": [0.0, 0.3]},
                    "alds.mode": {"choices": ["project", "factorize"]},
                },
            },
        }
    )
    alds = TrialSpec(config, {"alds.rate": 0.3, "alds.mode": "factorize"}, 2)
    assert (alds.is_alds, alds.arm, alds.label) == (True, stored_names.ARM_ALDS, "ALDS 0.3")
    twin = alds.twin
    assert twin is not None and twin.params == {"alds.rate": 0.0, "alds.mode": "project"}
    assert (twin.seed, twin.twin, twin.label) == (2, None, plan.IMP_ONLY)
    control = TrialSpec(config, {**twin.params, plan.CONTROL: "reinit"}, 2)
    assert control.is_control and control.arm == stored_names.ARM_CONTROL
    assert control.twin is not None and control.twin.params == twin.params
    assert control.config.alds.rate == 0.0 and control.label == "control reinit"
    # One pairing for a baseline and every trial paired with it, at its seed only.
    assert alds.pairing == twin.pairing == control.pairing
    assert TrialSpec(config, alds.params, 3).pairing != alds.pairing
    # The masks a control starts from are its twin's, which the twin saves.
    assert control.masks_owner is not None and control.masks_owner.params == twin.params
    assert twin.masks_owner is twin and alds.masks_owner is None
    assert control.progress_name.endswith("-reinit")
    assert control.key(device="cpu", data="d") != twin.key(device="cpu", data="d")
    assert twin.key(device="cuda:0", data="d") == twin.key(device="cuda", data="d")


@pytest.mark.parametrize("pruner", ["median", "percentile", "hyperband", "successive_halving"])
def test_no_pruner_ever_stops_an_imp_only_twin(pruner: str) -> None:
    config = parse_config({"name": "p", "search": {"pruner": pruner}})
    assert plan.prunable(config, 0.3)
    assert not plan.prunable(config, 0.0)  # the twin its ALDS configurations are paired with


def test_nothing_is_pruned_without_a_pruner() -> None:
    assert not plan.prunable(parse_config({"name": "p"}), 0.3)


def test_a_control_is_linked_to_a_baseline_that_searches_nothing() -> None:
    # A sweep without a search space: its IMP-only trial's params are {}, and still a trial.
    config = parse_config({"name": "plain", "imp": {"controls": ["reinit"]}})
    study = optuna.create_study()
    controls = optuna.distributions.CategoricalDistribution(list(plan.CONTROLS))
    for number, (params, run) in enumerate([({}, "base"), ({plan.CONTROL: "reinit"}, "ctl")]):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE,
                value=0.5,
                params=params,
                distributions={plan.CONTROL: controls} if params else {},
                user_attrs={stored_names.TRIAL_SEED: 0, stored_names.TRIAL_RUN_ID: run},
            )
        )
        spec = TrialSpec.of_trial(config, study.get_trials(deepcopy=False)[number])
        assert spec is not None and spec.is_control == bool(params)
    tagged: list[tuple[str, str]] = []
    assert twins.link(study, config, 1, lambda a, b: tagged.append((a, b))) == {"ctl": "base"}
    assert tagged == [("ctl", "base")]


def _reported(study: optuna.Study, rate: float, values: list[float], seed: int = 0) -> FrozenTrial:
    """A trial of ``study`` at ALDS ``rate`` that reported ``values`` on grid levels 0, 1, ..."""
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE,
        value=values[-1],
        params={"alds.rate": rate},
        distributions={"alds.rate": optuna.distributions.CategoricalDistribution((0.0, 0.3))},
        user_attrs={stored_names.TRIAL_SEED: seed},
        intermediate_values=dict(enumerate(values)),
    )
    study.add_trial(trial)
    return study.get_trials(deepcopy=False)[-1]


def test_the_paired_pruner_stops_a_trial_that_trails_its_own_twin() -> None:
    config = parse_config(
        {
            "name": "p",
            "search": {
                "pruner": "paired",
                "sampler": "grid",
                "space": {"alds.rate": {"choices": [0.0, 0.3]}},
            },
        }
    )
    pruner = PairedPruner(config)
    study = optuna.create_study(direction="maximize")
    twin = _reported(study, 0.0, [0.90, 0.89, 0.88, 0.86])
    # Behind by more than a point at its last three levels: pruned.
    trailing = _reported(study, 0.3, [0.90, 0.87, 0.86, 0.84])
    assert pruner.prune(study, trailing)
    # Behind at two of the three only, or by less than a point: goes on.
    assert not pruner.prune(study, _reported(study, 0.3, [0.90, 0.885, 0.86, 0.84]))
    assert not pruner.prune(study, _reported(study, 0.3, [0.90, 0.885, 0.875, 0.855]))
    # Ahead of its twin, however far behind the rest of the study: goes on.
    assert not pruner.prune(study, _reported(study, 0.3, [0.91, 0.90, 0.89, 0.87]))
    # The twin of another seed is not its twin; nor is a twin that has not reached its levels.
    assert not pruner.prune(study, _reported(study, 0.3, [0.90, 0.87, 0.86, 0.84], seed=1))
    longer = _reported(study, 0.3, [0.90, 0.87, 0.86, 0.84, 0.80, 0.70], seed=0)
    assert not pruner.prune(study, longer)
    # The twin itself is never pruned, nor by Optuna's median pruner (plan.prunable).
    assert not pruner.prune(study, twin)
    assert not plan.prunable(config, 0.0)

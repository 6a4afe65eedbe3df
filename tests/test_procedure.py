"""Objective values read from a trial's curve: final, best, and at a target sparsity."""

from __future__ import annotations

import math

import pytest

from orchestrator.config import parse_config
from orchestrator.procedure import Step, objective_value


def step(index: int, sparsity: float, accuracy: float) -> Step:
    return Step(index, "imp", index, accuracy, 1.0, None, sparsity, 1 - sparsity, 10, 10, 1.0, 1)


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ({"metric": "accuracy", "at": "final"}, 0.6),
        ({"metric": "accuracy", "at": "best"}, 0.8),  # step 0 (dense) does not count
        ({"metric": "loss", "at": "best", "direction": "minimize"}, 1.0),
        ({"metric": "sparsity", "at": "final"}, 0.75),
        ({"metric": "val_accuracy", "at": "final"}, math.nan),  # no validation split
    ],
)
def test_objective_values(objective: dict, expected: float) -> None:
    curve = [step(0, 0.0, 0.9), step(1, 0.5, 0.8), step(2, 0.75, 0.6)]
    config = parse_config({"name": "x", "search": {"objective": objective}})
    value = objective_value(curve, config.search.objective[0])
    assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


def test_objective_at_sparsity_is_interpolated() -> None:
    def step(index: int, sparsity: float, accuracy: float) -> Step:
        return Step(index, "imp", index, accuracy, 1.0, None, sparsity, 1 - sparsity, 1, 1, 1.0, 1)

    curve_ = [step(0, 0.0, 0.9), step(1, 0.5, 0.8), step(2, 0.75, 0.6)]
    config = parse_config(
        {"name": "x", "search": {"objective": {"metric": "accuracy", "at": 0.625}}}
    )
    assert objective_value(curve_, config.search.objective[0]) == pytest.approx(0.7)
    beyond = parse_config({"name": "x", "search": {"objective": {"at": 0.9}}})
    assert math.isnan(objective_value(curve_, beyond.search.objective[0]))

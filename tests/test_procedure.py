"""Objective values read from a trial's curve: final, best, and at a target sparsity."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from orchestrator.curve import objective_value
from orchestrator.sweep_file import parse_config
from orchestrator.testing.sweeps import sweep_document
from orchestrator.trial.cache import CheckpointCache
from orchestrator.trial.procedure import Step, run_trial


def step(index: int, sparsity: float, accuracy: float) -> Step:
    return Step(index, "imp", index, accuracy, 1.0, None, sparsity, 1 - sparsity, 10, 1.0, 10, 10)


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
    value = objective_value([s.row() for s in curve], config.search.objective[0])
    assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


def test_objective_at_sparsity_is_interpolated() -> None:
    def step(index: int, sparsity: float, accuracy: float) -> Step:
        return Step(index, "imp", index, accuracy, 1.0, None, sparsity, 1 - sparsity, 1, 1, 1.0, 1)

    rows = [s.row() for s in (step(0, 0.0, 0.9), step(1, 0.5, 0.8), step(2, 0.75, 0.6))]
    # Halfway between 50% and 25% remaining in log(remaining) is √(0.5 · 0.25) ≈ 35.4%.
    halfway = 1 - math.sqrt(0.5 * 0.25)
    config = parse_config(
        {"name": "x", "search": {"objective": {"metric": "accuracy", "at": halfway}}}
    )
    assert objective_value(rows, config.search.objective[0]) == pytest.approx(0.7)
    # The same sparsity interpolated linearly in sparsity would read 0.6835: not the rule.
    linear = parse_config({"name": "x", "search": {"objective": {"at": 0.625}}})
    assert objective_value(rows, linear.search.objective[0]) == pytest.approx(
        0.8 + (math.log(0.375) - math.log(0.5)) / (math.log(0.25) - math.log(0.5)) * -0.2
    )
    # The schedule reaches 0.9 (11 cycles of 20%); this curve stopped at 0.75.
    beyond = parse_config(
        {"name": "x", "imp": {"cycles": 11}, "search": {"objective": {"at": 0.9}}}
    )
    assert math.isnan(objective_value(rows, beyond.search.objective[0]))


def test_a_corrupt_progress_file_is_moved_aside_and_the_trial_starts_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(sweep_document(tmp_path, "progress")).with_params({"alds.rate": 0.5})
    progress = tmp_path / "trial.pt"
    progress.write_bytes(b"PK\x03\x04 half a zip file")
    result = run_trial(
        config, 0, device="cpu", cache=CheckpointCache(tmp_path / "cache"), progress_file=progress
    )
    assert [step.phase for step in result.steps] == ["dense", "alds", "imp", "imp"]
    (kept,) = tmp_path.glob("trial.pt.corrupt-*")
    assert kept.read_bytes() == b"PK\x03\x04 half a zip file"
    assert f"corrupt trial progress {progress}: does not load" in caplog.text


def test_a_factorized_network_rewinds_within_its_own_coordinates(tmp_path: Path) -> None:
    """The mask IMP computes on the trained factors keeps the large entries of the ALDS rewind
    point (the same coordinates), not of θ0 factorized by the plan (other coordinates)."""
    from compression import imp
    from orchestrator import data as datasets
    from orchestrator.trial import procedure

    document = sweep_document(tmp_path, "rewind", alds={"mode": "factorize", "finetune_epochs": 1})
    config = parse_config(document).with_params({"alds.rate": 0.5})
    cache = CheckpointCache(tmp_path / "cache")
    data = datasets.load(config.dataset, device="cpu", seed=0)
    init, dense, _ = procedure.dense_checkpoint(config, 0, data, cache, torch.device("cpu"))
    phases = procedure._Phases(
        config, 0, data, torch.device("cpu"), dense["state"], lambda s: None, lambda: None, None
    )
    phases.dense()
    phases.alds()
    trained = imp.prunable(phases.model)
    masks = imp.prune(phases.model, 0.5, scope="layer")

    def rewind_point(choice: str) -> dict:
        chosen = config.with_params({"imp.factorized_rewind": choice})
        return procedure._rewind_state(chosen, data, init["state"], dense, phases.progress, 0)

    ours, theta0, redrawn = (rewind_point(c) for c in ("alds", "theta0", "reinit"))
    factors = [name for name in trained if name.endswith((".encoder.weight", ".decoder.weight"))]
    assert factors
    for name in factors:
        kept = masks[name]
        # The ALDS point: what survives is large there too (fine-tuning moved it only a little).
        alds_point = ours[name].abs()
        assert alds_point[kept].mean() > 2 * alds_point[~kept].mean(), name
        # θ0 factorized by the plan is another matrix's factors: the mask fits it worse.
        other = theta0[name].abs()
        ratio = alds_point[kept].mean() / alds_point[~kept].mean()
        assert ratio > other[kept].mean() / other[~kept].mean(), name
        assert redrawn[name].shape == ours[name].shape
        assert not torch.equal(redrawn[name], ours[name])
    # The ALDS point is the network ALDS made, before fine-tuning moved it.
    assert not all(torch.equal(ours[n], phases.progress.compressed[n]) for n in factors)


def test_the_width_is_part_of_the_dense_checkpoints_identity(tmp_path: Path) -> None:
    from orchestrator import data as datasets
    from orchestrator.trial import procedure

    cache = CheckpointCache(tmp_path / "cache")
    plain = parse_config(sweep_document(tmp_path, "plain"))
    data = datasets.load(plain.dataset, device="cpu", seed=0)

    def dense_files(config) -> set[str]:
        procedure.dense_checkpoint(config, 0, data, cache, torch.device("cpu"))
        return {path.name for path in (tmp_path / "cache").rglob("*.pt")}

    first = dense_files(plain)
    # Width 1 spelled out is the plain name: the same θ0 and dense files, none trained anew.
    one = plain.with_params({"model.width": 1.0})
    assert dense_files(one) == first
    half = plain.with_params({"model.width": 0.5})
    assert len(dense_files(half) - first) == 2  # its own θ0 and dense network
    init, _, _ = procedure.dense_checkpoint(half, 0, data, cache, torch.device("cpu"))
    assert init["state"]["classifier.1.weight"].shape == (150, 64)  # 300 x 0.5 on 8x8 inputs

"""The lottery-ticket controls (``imp.controls``): the masks and weights each control trains,
how a sweep plans, keys and queues them, and that they never stand in for a twin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from compression import imp
from orchestrator import plan, stored_names, workspace
from orchestrator.config import ConfigError
from orchestrator.study import counts, growth, queue as queues
from orchestrator.study.queue import fill_queue
from orchestrator.sweep_file import parse_config
from orchestrator.testing.sweeps import sweep_document
from orchestrator.trial import identity
from orchestrator.trial.cache import CheckpointCache
from orchestrator.trial.identity import experiment_hash
from orchestrator.trial.procedure import dense_checkpoint, reinit_seed, run_trial
from tests.conftest import config_of, drain, open_study

RATE = plan.ALDS_RATE


def test_a_shuffled_mask_keeps_each_layers_count_and_moves_its_survivors() -> None:
    generator = torch.Generator().manual_seed(0)
    masks = {
        "a.weight": torch.rand(30, 20, generator=generator) > 0.7,
        "b.weight": torch.rand(10, 30, generator=generator) > 0.2,
        "c.weight": torch.ones(4, 10, dtype=torch.bool),  # an excluded layer: all alive
    }
    drawn = imp.shuffle(masks, seed=3)
    for name, mask in masks.items():
        assert drawn[name].shape == mask.shape and drawn[name].dtype == torch.bool
        assert int(drawn[name].sum()) == int(mask.sum())
    assert not torch.equal(drawn["a.weight"], masks["a.weight"])
    assert not torch.equal(drawn["b.weight"], masks["b.weight"])
    assert torch.equal(drawn["c.weight"], masks["c.weight"])
    # A seed is one draw; another seed another.
    assert all(torch.equal(drawn[n], imp.shuffle(masks, seed=3)[n]) for n in masks)
    assert not torch.equal(drawn["a.weight"], imp.shuffle(masks, seed=4)["a.weight"])


# --------------------------------------------------------------------------- the trials


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An IMP-only trial that keeps its masks, and both of its controls, at a learning rate
    so small that every network ends where it started: what a control trained from is
    what it holds at the end."""
    folder = tmp_path_factory.mktemp("controls")
    document = sweep_document(
        folder,
        "controls",
        train={"optimizer": "sgd", "lr": 1e-12, "batch_size": 64, "epochs": 1},
        imp={
            "cycles": 3,
            "prune_fraction": 0.5,
            "scope": "layer",
            "epochs_per_cycle": 1,
            "controls": [plan.RANDOM_MASK, plan.REINIT],
        },
    )
    config = parse_config(document).with_params({RATE: 0.0})
    cache = CheckpointCache(folder / "cache")
    masks = folder / "masks"
    twin = run_trial(config, 0, device="cpu", cache=cache, masks_folder=masks)
    controls = {
        name: run_trial(config, 0, device="cpu", cache=cache, control=name, masks_folder=masks)
        for name in plan.CONTROLS
    }
    # Without the twin's masks a control computes them itself, the same on the CPU.
    replayed = run_trial(config, 0, device="cpu", cache=cache, control=plan.REINIT)
    from orchestrator import data as datasets

    data = datasets.load(config.dataset, device="cpu", seed=0)
    init, _, _ = dense_checkpoint(config, 0, data, cache, torch.device("cpu"))
    return {
        "config": config,
        "twin": twin,
        "controls": controls,
        "replayed": replayed,
        "masks": masks,
        "theta0": init["state"],
    }


def _final_masks(trained: dict[str, Any]) -> dict[str, torch.Tensor]:
    cycles = len(trained["twin"].steps) - 2  # step 0 dense, step 1 after ALDS
    path = workspace.mask_file(trained["masks"], cycles)
    return torch.load(path, weights_only=True)["masks"]


def test_the_twin_keeps_its_masks_of_every_cycle(trained: dict[str, Any]) -> None:
    twin = trained["twin"]
    assert [s.phase for s in twin.steps] == ["dense", "alds", "imp", "imp", "imp"]
    for cycle in (1, 2, 3):
        assert workspace.mask_file(trained["masks"], cycle).exists()
    final = _final_masks(trained)
    assert all(torch.equal(final[n], twin.masks[n].cpu()) for n in twin.masks)


def test_a_random_mask_control_has_the_twins_per_layer_sparsity_and_another_mask(
    trained: dict[str, Any],
) -> None:
    control = trained["controls"][plan.RANDOM_MASK]
    twin = _final_masks(trained)
    assert set(control.masks) == set(twin)
    for name, mask in twin.items():
        assert int(control.masks[name].sum()) == int(mask.sum()), name
    pruned = [n for n, m in twin.items() if not bool(m.all())]
    assert pruned and all(not torch.equal(control.masks[n].cpu(), twin[n]) for n in pruned)
    # From θ0, as its twin: the weights it holds are θ0 under its own mask.
    state = control.model.state_dict()
    for name, mask in control.masks.items():
        expected = trained["theta0"][name] * mask.cpu()
        assert torch.allclose(state[name].cpu(), expected, atol=1e-6), name


def test_a_reinit_control_has_the_twins_mask_and_other_initial_weights(
    trained: dict[str, Any],
) -> None:
    control = trained["controls"][plan.REINIT]
    twin = _final_masks(trained)
    assert all(torch.equal(control.masks[n].cpu(), twin[n]) for n in twin)
    state = control.model.state_dict()
    theta0 = trained["theta0"]
    assert reinit_seed(0) != 0
    for name, mask in control.masks.items():
        alive = mask.cpu()
        # Not θ0: a fresh draw, under the same mask.
        assert not torch.allclose(state[name].cpu()[alive], theta0[name][alive], atol=1e-3)
        assert bool((state[name].cpu()[~alive] == 0).all())
    # A computed twin gives the same masks and the same curve as the saved one.
    replayed = trained["replayed"]
    assert all(torch.equal(replayed.masks[n].cpu(), twin[n]) for n in twin)
    assert [s.accuracy for s in replayed.steps] == [s.accuracy for s in control.steps]


def test_a_control_runs_at_its_twins_cycles_and_sparsities(trained: dict[str, Any]) -> None:
    twin = trained["twin"]
    for control in trained["controls"].values():
        steps = control.steps
        assert [s.step for s in steps] == [0, 2, 3, 4]
        assert steps[0].accuracy == twin.steps[0].accuracy  # the dense network itself
        ticket = {s.step: s for s in twin.steps}
        for step in steps[1:]:
            assert step.remaining == pytest.approx(ticket[step.step].remaining, abs=1e-9)
            assert step.cycle == step.step - 1


# --------------------------------------------------------------------------- the plan


def _document(tmp_path: Path, **imp_fields: Any) -> dict:
    return sweep_document(
        tmp_path,
        "planned",
        seeds=[0, 1],
        imp={"cycles": 2, "prune_fraction": 0.5, **imp_fields},
        search={"sampler": "grid", "space": {RATE: {"choices": [0.0, 0.3, 0.6]}}},
    )


def test_controls_are_planned_for_every_imp_only_configuration_and_counted(
    tmp_path: Path,
) -> None:
    config = parse_config(_document(tmp_path, controls=[plan.RANDOM_MASK, plan.REINIT]))
    assert plan.fixed_controls(config) == 4  # one IMP-only configuration x 2 seeds x 2
    assert plan.total_trials(config) == 10
    assert plan.describe(config) == "10 trials (4 controls)"
    study = optuna.create_study(study_name="planned")
    assert fill_queue(study, config) == 10
    queued = [t.system_attrs["fixed_params"] for t in study.trials]
    # Last, after every trial they start from.
    assert [plan.control_of(p) for p in queued[-4:]] == [plan.RANDOM_MASK] * 2 + [plan.REINIT] * 2
    assert all(plan.control_of(p) is None for p in queued[:-4])
    assert all(plan.without_control(p) == {RATE: 0.0} for p in queued[-4:])
    assert all(plan.asks_for(config, p) for p in queued)
    # A control of an ALDS configuration, or one the YAML does not list, is not asked for.
    assert not plan.asks_for(config, {RATE: 0.3, plan.CONTROL: plan.REINIT})
    one = parse_config(_document(tmp_path, controls=[plan.REINIT]))
    assert not plan.asks_for(one, {RATE: 0.0, plan.CONTROL: plan.RANDOM_MASK})
    assert plan.asks_for(one, {RATE: 0.0, plan.CONTROL: plan.REINIT})


def test_controls_leave_every_hash_and_the_twins_key_as_they_were(tmp_path: Path) -> None:
    plain = parse_config(_document(tmp_path))
    controlled = parse_config(_document(tmp_path, controls=[plan.RANDOM_MASK]))
    # A config without controls dumps as before they existed.
    assert "controls" not in plain.model_dump(mode="json")["imp"]
    assert experiment_hash(controlled) != experiment_hash(plain)
    twin = {RATE: 0.0}
    keys = {
        name: identity.trial_key(c, twin, 0, device="cpu", data="d")
        for name, c in (("plain", plain), ("controlled", controlled))
    }
    assert keys["plain"] == keys["controlled"]
    own = {
        control: identity.trial_key(
            controlled, {**twin, plan.CONTROL: control}, 0, device="cpu", data="d"
        )
        for control in plan.CONTROLS
    }
    assert len({keys["plain"], *own.values()}) == 3
    # Added to a grown sweep, controls are the only trials to run.
    found = growth.assess(controlled, [], lambda p, s: [], {})
    assert found.trials == 8 and len(found.enqueue) == 8


@pytest.mark.parametrize(
    ("imp_fields", "words"),
    [
        ({"controls": ["random_mask", "random_mask"]}, "imp.controls: controls must not repeat"),
        ({"controls": ["shuffled"]}, "imp.controls"),
        ({"controls": ["reinit"], "rewind": "compressed"}, "controls need rewind init"),
    ],
)
def test_bad_controls_are_named(tmp_path: Path, imp_fields: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(_document(tmp_path, **imp_fields))


def test_a_sampled_configurations_twin_brings_its_controls(tmp_path: Path) -> None:
    config = config_of(tmp_path).model_copy(
        update={"imp": parse_config({"name": "x", "imp": {"controls": ["reinit"]}}).imp}
    )
    study, storage = open_study(tmp_path, config)
    queues.fill_queue(study, config)
    trials = drain(study, storage, config)
    plain = [t for t in trials if plan.CONTROL not in t.params]
    controls = [t for t in trials if plan.CONTROL in t.params]
    twins = {
        (json.dumps(t.params, sort_keys=True), t.user_attrs[stored_names.TRIAL_SEED])
        for t in plain
        if not plan.is_alds(t.params[RATE])
    }
    # One reinit control for every IMP-only configuration at every seed, and no other.
    assert sorted(
        (json.dumps(plan.without_control(t.params), sort_keys=True), t.user_attrs["seed"])
        for t in controls
    ) == sorted(twins)
    assert all(t.params[plan.CONTROL] == plan.REINIT for t in controls)
    assert len(trials) == counts.expected(study, config) == len(plain) + len(twins)

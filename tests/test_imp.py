"""Iterative magnitude pruning: prunable tensors, exact schedules, enforcement, rewinding, I/O."""

from __future__ import annotations

import math
from functools import partial
from types import MappingProxyType

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
from compression import alds, imp, metrics
from compression.factorized import FactorizedLinear
from orchestrator.config import DatasetConfig, SyntheticConfig, TrainConfig
from orchestrator.data import DEBIAN_FASHION_MNIST, load
from orchestrator.trial import training

CLASSES = 4


class _Mixed(nn.Module):
    """Convs, BatchNorm and a chain of Linear layers with awkward sizes (77 and 81 weights
    drift by more than one weight at p = 0.2 when each step rounds on its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.conv2 = nn.Conv2d(5, 7, 3, padding=1, bias=False)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(7 * 3 * 3, 7),
            nn.ReLU(),
            nn.Linear(7, 11),
            nn.ReLU(),
            nn.Linear(11, 9),
            nn.ReLU(),
            nn.Linear(9, 9),
            nn.ReLU(),
            nn.Linear(9, CLASSES),
        )

    def forward(self, x):
        x = F.relu(self.bn(self.conv1(x)))
        x = F.adaptive_avg_pool2d(F.relu(self.conv2(x)), 3)
        return self.head(x)


def _mixed(seed: int = 0) -> _Mixed:
    torch.manual_seed(seed)
    return _Mixed()


def _batch(seed: int = 0, n: int = 16, side: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, side, side, generator=generator)
    return x, torch.randint(0, CLASSES, (n,), generator=generator)


def _retrain(model: nn.Module, masks: imp.Masks | None, generator: torch.Generator) -> None:
    """Stand-in for a training run: fresh random weights, masked."""
    with torch.no_grad():
        for weight in imp.prunable(model).values():
            weight.copy_(torch.randn(weight.shape, generator=generator))
    if masks is not None:
        imp.apply(model, masks)


def _synthetic_data(side: int = 8):
    synthetic = SyntheticConfig(
        image_size=side, channels=3, num_classes=CLASSES, train_size=64, test_size=32
    )
    return load(DatasetConfig(name="synthetic", synthetic=synthetic), seed=0)


# --------------------------------------------------------------------------- prunable, roles


def test_prunable_is_every_conv_and_linear_weight_never_biases_or_batchnorm():
    model = models.build("resnet20", num_classes=CLASSES)
    weights = imp.prunable(model)
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(weights) == len(layers) == 22  # 19 convs, 2 shortcut projections, 1 fc
    assert all(name.endswith(".weight") for name in weights)
    parameters = dict(model.named_parameters())
    for name, weight in weights.items():
        assert weight is parameters[name]  # the live parameter, not a copy
    assert not any("bn" in name or name.endswith(".bias") for name in weights)
    bn_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert not bn_weights & {id(w) for w in weights.values()}


def test_roles_mark_the_last_layer_as_output():
    model = models.build("conv2", num_classes=CLASSES, in_channels=1, input_size=8)
    assert imp.roles(model) == {
        "features.0.weight": "conv",
        "features.2.weight": "conv",
        "classifier.1.weight": "fc",
        "classifier.3.weight": "fc",
        "classifier.5.weight": "output",
    }
    assert imp.roles(models.build("resnet20"))["fc.weight"] == "output"


# --------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("fraction", [0.2, 0.5])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_ten_cycles_keep_the_exact_scheduled_counts(scope: str, fraction: float):
    model = _mixed()
    weights = imp.prunable(model)
    generator = torch.Generator().manual_seed(1)
    q = 1.0 - fraction
    masks = None
    for level in range(1, 11):
        _retrain(model, masks, generator)
        new = imp.prune(model, fraction, masks=masks, scope=scope)
        assert set(new) == set(weights)
        if masks is not None:
            for name in new:  # pruned weights never come back
                assert not (new[name] & ~masks[name]).any()
        previous, masks = masks, new
        if scope == "global":
            total = sum(w.numel() for w in weights.values())
            assert sum(int(m.sum()) for m in masks.values()) == round(total * q**level)
        else:
            for name, weight in weights.items():
                ideal = weight.numel() * q**level
                alive = int(masks[name].sum())
                if ideal >= 1 / fraction:
                    assert alive == round(ideal), (name, level, alive, ideal)
                else:  # tiny counts repeat across levels: never behind, always progressing
                    assert alive <= round(ideal), (name, level, alive, ideal)
                    assert alive < int(previous[name].sum()) or alive == 0


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_the_smallest_magnitudes_go_first(scope: str):
    model = _mixed()
    generator = torch.Generator().manual_seed(2)
    masks = imp.prune(model, 0.3, scope=scope)
    imp.apply(model, masks)
    _retrain(model, masks, generator)
    weights = imp.prunable(model)
    new = imp.prune(model, 0.3, masks=masks, scope=scope)
    groups = [[name] for name in weights] if scope == "layer" else [list(weights)]
    for names in groups:
        removed = torch.cat([weights[n].abs()[masks[n] & ~new[n]] for n in names])
        kept = torch.cat([weights[n].abs()[new[n]] for n in names])
        assert removed.numel() > 0
        assert removed.max() <= kept.min()


def test_ties_are_pruned_in_parameter_then_index_order():
    model = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 2, bias=False))
    with torch.no_grad():
        for weight in imp.prunable(model).values():
            weight.fill_(-1.0)  # all tied, and negative: ranks by |w|, not by w
    masks = imp.prune(model, 0.5)  # 15 of 30 go: the first 15 of the first weight
    first, second = masks["0.weight"].flatten(), masks["1.weight"].flatten()
    assert not first[:15].any() and first[15:].all() and second.all()
    assert all(torch.equal(masks[n], imp.prune(model, 0.5)[n]) for n in masks)
    layer = imp.prune(model, 0.5, scope="layer")
    assert torch.equal(layer["0.weight"].flatten(), torch.arange(20) >= 10)
    assert torch.equal(layer["1.weight"].flatten(), torch.arange(10) >= 5)


def test_per_role_rates_give_the_lottery_ticket_layerwise_schedule():
    model = models.build("conv2", num_classes=CLASSES, in_channels=1, input_size=8)
    weights = imp.prunable(model)
    rates = {"conv": 0.15, "fc": 0.2, "output": 0.1}
    role_of = imp.roles(model)
    masks = None
    for level in range(1, 4):
        masks = imp.prune(model, 0.5, masks=masks, scope="layer", rates=rates)
        imp.apply(model, masks)
        for name, weight in weights.items():
            expected = round(weight.numel() * (1 - rates[role_of[name]]) ** level)
            assert int(masks[name].sum()) == expected


def test_global_scope_gives_a_role_with_its_own_rate_its_own_threshold():
    model = models.build("conv2", num_classes=CLASSES, in_channels=1, input_size=8)
    weights = imp.prunable(model)
    output = "classifier.5.weight"
    masks = None
    for level in range(1, 4):
        masks = imp.prune(model, 0.2, masks=masks, rates={"output": 0.1})
        imp.apply(model, masks)
        assert int(masks[output].sum()) == round(weights[output].numel() * 0.9**level)
        rest = [n for n in weights if n != output]
        total = sum(weights[n].numel() for n in rest)
        assert sum(int(masks[n].sum()) for n in rest) == round(total * 0.8**level)


# --------------------------------------------------------------------------- exclusions


@pytest.mark.parametrize(
    ("entry", "left_out"),
    [
        ("output", {"classifier.5.weight"}),
        ("classifier.3", {"classifier.3.weight"}),
        ("classifier.3.weight", {"classifier.3.weight"}),
        ("features", {"features.0.weight", "features.2.weight"}),
        ("conv", {"features.0.weight", "features.2.weight"}),
    ],
)
def test_exclude_by_role_module_subtree_or_weight_name(entry: str, left_out: set[str]):
    model = models.build("conv2", num_classes=CLASSES, in_channels=1, input_size=8)
    before = {n: w.detach().clone() for n, w in imp.prunable(model).items()}
    masks = imp.prune(model, 0.5, scope="layer", exclude=(entry,))
    assert set(masks) == set(before) - left_out
    imp.apply(model, masks)
    for name in left_out:
        assert torch.equal(imp.prunable(model)[name], before[name])
    assert imp.sparsity(model, masks)["layers"][next(iter(left_out))]["sparsity"] == 0.0


def test_an_excluded_weight_keeps_its_earlier_mask():
    model = models.build("conv2", num_classes=CLASSES, in_channels=1, input_size=8)
    first = imp.prune(model, 0.5)
    imp.apply(model, first)
    second = imp.prune(model, 0.5, masks=first, exclude=("output",))
    assert torch.equal(second["classifier.5.weight"], first["classifier.5.weight"])
    assert int(second["classifier.3.weight"].sum()) < int(first["classifier.3.weight"].sum())


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, math.nan, True])
def test_fraction_outside_zero_one_is_rejected(fraction: float):
    with pytest.raises(ValueError, match="fraction must lie strictly between 0 and 1"):
        imp.prune(_mixed(), fraction)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scope": "local"}, "scope must be 'global' or 'layer'"),
        ({"rates": {"bias": 0.1}}, r"unknown roles \['bias'\]"),
        ({"rates": {"fc": 1.0}}, r"rates\['fc'\] must lie strictly between 0 and 1"),
        ({"exclude": ("decoder",)}, "exclude entry 'decoder' matches no prunable weight"),
        ({"exclude": ("conv", "fc", "output")}, "every prunable weight is excluded"),
    ],
)
def test_bad_pruning_options_are_named(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        imp.prune(_mixed(), 0.2, **kwargs)


def test_masks_of_another_architecture_are_rejected_everywhere():
    conv2 = models.build("conv2", num_classes=CLASSES, in_channels=1, input_size=8)
    conv4 = models.build("conv4", num_classes=CLASSES, in_channels=1, input_size=8)
    shape_mismatch = imp.prune(conv2, 0.2)  # same names, other shapes
    unknown_names = imp.prune(_mixed(), 0.2)
    for masks in (shape_mismatch, unknown_names):
        for call in (
            lambda m=masks: imp.prune(conv4, 0.2, masks=m),
            lambda m=masks: imp.apply(conv4, m),
            lambda m=masks: imp.rewind(conv4, imp.capture(conv4), m),
            lambda m=masks: imp.sparsity(conv4, m),
            lambda m=masks: imp.load(conv4, m),
        ):
            with pytest.raises(ValueError, match="masks do not fit this model"):
                call()


def test_non_bool_masks_and_models_without_layers_are_rejected():
    model = _mixed()
    floats = {name: mask.float() for name, mask in imp.prune(model, 0.2).items()}
    with pytest.raises(ValueError, match="must be a bool tensor"):
        imp.apply(model, floats)
    with pytest.raises(ValueError, match="no Conv2d or Linear weights"):
        imp.prune(nn.Sequential(nn.BatchNorm1d(3)), 0.2)


def test_prune_leaves_the_model_and_the_given_masks_alone():
    model = _mixed()
    masks = imp.prune(model, 0.5)
    saved = {n: m.clone() for n, m in masks.items()}
    weights = {n: w.detach().clone() for n, w in imp.prunable(model).items()}
    imp.prune(model, 0.5, masks=masks)
    assert all(torch.equal(masks[n], saved[n]) for n in masks)
    assert all(torch.equal(w, weights[n]) for n, w in imp.prunable(model).items())


# --------------------------------------------------------------------------- enforcement


def _adam(parameters):
    return torch.optim.Adam(parameters, lr=1e-2)


def _sgd(parameters):
    return torch.optim.SGD(parameters, lr=0.1, momentum=0.9, weight_decay=1e-3)


def _steps(
    model: nn.Module, optimizer, masks: imp.Masks, count: int, *, side: int = 8
) -> list[bool]:
    """Train on one batch; after each step, whether every pruned weight is exactly zero."""
    x, y = _batch(side=side)
    zero_after_each = []
    for _ in range(count):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        imp.apply(model, masks)
        weights = imp.prunable(model)
        zero_after_each.append(all(not weights[n][~m].any() for n, m in masks.items()))
    return zero_after_each


@pytest.mark.parametrize("make_optimizer", [_adam, _sgd])
def test_pruned_weights_stay_zero_after_every_optimizer_step(make_optimizer):
    model = _mixed()
    masks = imp.prune(model, 0.5)
    imp.apply(model, masks)
    before = {n: w.detach().clone() for n, w in imp.prunable(model).items()}
    assert all(_steps(model, make_optimizer(model.parameters()), masks, 5))
    weights = imp.prunable(model)
    assert all(not torch.equal(weights[n][masks[n]], before[n][masks[n]]) for n in masks)
    assert imp.sparsity(model)["alive"] == imp.sparsity(model, masks)["alive"]


@pytest.mark.parametrize("make_optimizer", [_adam, _sgd])
def test_without_apply_these_optimizers_regrow_pruned_weights(make_optimizer):
    # The control for the test above: masking once before training is not enough.
    model = _mixed()
    masks = imp.prune(model, 0.5)
    imp.apply(model, masks)
    optimizer = make_optimizer(model.parameters())
    x, y = _batch()
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    weights = imp.prunable(model)
    assert any(weights[n][~m].any() for n, m in masks.items())


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(optimizer="adam", lr=1e-2, batch_size=16, iterations=8),
        TrainConfig(
            optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3, batch_size=16, iterations=8
        ),
    ],
)
def test_the_training_hook_keeps_pruned_weights_zero(config: TrainConfig):
    data = _synthetic_data()
    model = _mixed()
    masks = imp.prune(model, 0.6, scope="layer")
    imp.apply(model, masks)
    before = imp.capture(model)
    seen: list[bool] = []

    def check(iteration: int, net: nn.Module) -> None:  # runs right after after_step
        weights = imp.prunable(net)
        seen.append(all(not weights[n][~m].any() for n, m in masks.items()))

    result = training.train(
        model,
        data,
        config,
        device="cpu",
        seed=0,
        after_step=lambda net: imp.apply(net, masks),
        on_iteration=check,
    )
    assert result.iterations == len(seen) == 8 and all(seen)
    assert imp.sparsity(model)["alive"] == imp.sparsity(model, masks)["alive"]
    assert not torch.equal(model.state_dict()["head.1.weight"], before["head.1.weight"])


def test_apply_accepts_a_read_only_mapping():
    model = _mixed()
    masks = imp.prune(model, 0.5)
    imp.apply(model, MappingProxyType(masks))
    assert imp.sparsity(model)["alive"] == sum(int(m.sum()) for m in masks.values())


# --------------------------------------------------------------------------- rewinding


def _assert_rewound(model: nn.Module, state: dict, masks: imp.Masks) -> None:
    current = model.state_dict()
    assert set(current) == set(state)
    for key, value in current.items():
        name = key if key in masks else None
        if name is None:  # biases, unpruned weights, BatchNorm parameters and buffers
            assert torch.equal(value, state[key]), key
        else:
            mask = masks[name]
            assert torch.equal(value[mask], state[key][mask]), key
            assert not value[~mask].any(), key


def test_rewinding_to_init_restores_survivors_biases_and_batchnorm_statistics():
    data = _synthetic_data()
    model = _mixed()
    theta0 = imp.capture(model)
    training.train(
        model, data, TrainConfig(lr=1e-2, batch_size=16, iterations=4), device="cpu", seed=0
    )
    trained = model.state_dict()
    for key in ("bn.running_mean", "bn.num_batches_tracked", "conv1.bias", "head.1.bias"):
        assert not torch.equal(trained[key], theta0[key]), key  # training moved them
    masks = imp.prune(model, 0.5)
    imp.rewind(model, theta0, masks)
    _assert_rewound(model, theta0, masks)


def test_rewinding_to_an_early_iteration_restores_that_iteration():
    data = _synthetic_data()
    model = _mixed()
    points: dict[int, dict] = {}

    def snapshot(iteration: int, net: nn.Module) -> None:
        if iteration == 2:
            points[iteration] = imp.capture(net)

    config = TrainConfig(lr=1e-2, batch_size=16, iterations=5)
    training.train(model, data, config, device="cpu", seed=0, on_iteration=snapshot)
    early = points[2]
    assert not torch.equal(early["conv1.weight"], model.state_dict()["conv1.weight"])
    masks = imp.prune(model, 0.3, scope="layer")
    imp.rewind(model, early, masks)
    _assert_rewound(model, early, masks)


def test_capture_is_a_detached_copy():
    model = _mixed()
    state = imp.capture(model)
    with torch.no_grad():
        model.conv1.weight.add_(1.0)
    assert not torch.equal(state["conv1.weight"], model.conv1.weight)
    assert not any(value.requires_grad for value in state.values())


def test_a_rewind_state_of_another_model_is_rejected():
    model = _mixed()
    masks = imp.prune(model, 0.2)
    before = imp.capture(model)
    other = imp.capture(models.build("conv2", num_classes=CLASSES, input_size=8))
    with pytest.raises(ValueError, match="the rewind state does not fit this model: missing"):
        imp.rewind(model, other, masks)
    reshaped = imp.capture(_mixed(seed=1))
    reshaped["head.9.weight"] = torch.zeros(CLASSES, 10)
    with pytest.raises(ValueError, match=r"head.9.weight has shape \(4, 10\), the model \(4, 9\)"):
        imp.rewind(model, reshaped, masks)
    # Nothing was loaded by the failed calls.
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


# --------------------------------------------------------------------------- save, load, resume


def test_masks_round_trip_through_torch_save_and_resume_identically(tmp_path):
    generator = torch.Generator().manual_seed(3)
    model = _mixed()
    masks = None
    history = []
    for _ in range(3):  # the uninterrupted run
        _retrain(model, masks, generator)
        history.append(imp.capture(model))
        masks = imp.prune(model, 0.3, masks=masks)
    final = masks

    # An interrupted run: two finished cycles on disk, then a fresh process resumes.
    resumed_model = _mixed(seed=7)
    masks = None
    for state in history[:2]:
        resumed_model.load_state_dict(state)
        masks = imp.prune(resumed_model, 0.3, masks=masks)
    torch.save(masks, tmp_path / "masks.pt")
    loaded = imp.load(_mixed(seed=9), torch.load(tmp_path / "masks.pt", weights_only=True))
    assert set(loaded) == set(masks)
    assert all(loaded[n].dtype == torch.bool and torch.equal(loaded[n], masks[n]) for n in masks)
    fresh = _mixed(seed=9)
    fresh.load_state_dict(history[2])
    resumed = imp.prune(fresh, 0.3, masks=loaded)
    assert all(torch.equal(resumed[n], final[n]) for n in final)


# --------------------------------------------------------------------------- accounting


def test_sparsity_counts_alive_weights_per_layer_and_in_total():
    model = models.build("conv2", num_classes=CLASSES, in_channels=1, input_size=8)
    masks = imp.prune(model, 0.5, scope="layer", exclude=("output",))
    report = imp.sparsity(model, masks)
    weights = imp.prunable(model)
    assert list(report["layers"]) == list(weights)
    for name, layer in report["layers"].items():
        alive = int(masks[name].sum()) if name in masks else weights[name].numel()
        assert layer == {
            "alive": alive,
            "total": weights[name].numel(),
            "sparsity": 1 - alive / weights[name].numel(),
        }
    assert report["total"] == sum(w.numel() for w in weights.values())
    assert report["alive"] == sum(layer["alive"] for layer in report["layers"].values())
    assert report["sparsity"] == pytest.approx(1 - report["alive"] / report["total"])
    # Before apply the weights are still dense: the measured count says so.
    assert imp.sparsity(model)["sparsity"] == 0.0
    imp.apply(model, masks)
    assert imp.sparsity(model) == report


def test_metrics_sparsity_counts_nonzero_entries_of_any_tensors():
    report = metrics.sparsity(
        {"a": torch.tensor([0.0, 1.0, -2.0, 0.0]), "b": torch.tensor([True, False, True])}
    )
    assert report["layers"]["a"] == {"alive": 2, "total": 4, "sparsity": 0.5}
    assert report["layers"]["b"]["alive"] == 2
    assert (report["alive"], report["total"]) == (4, 7)
    assert report["sparsity"] == pytest.approx(3 / 7)
    assert metrics.sparsity({}) == {"layers": {}, "alive": 0, "total": 0, "sparsity": 0.0}


def test_nonzero_parameters_and_compression_ratio_of_a_pruned_network():
    model = models.build("conv2", num_classes=CLASSES, in_channels=1, input_size=8)
    dense = metrics.count_parameters(model)
    nonzero = metrics.count_parameters(model, nonzero=True)  # Glorot init zeroes the biases
    masks = imp.prune(model, 0.5)
    imp.apply(model, masks)
    removed = sum(int((~m).sum()) for m in masks.values())
    assert metrics.count_parameters(model, nonzero=True) == nonzero - removed
    assert metrics.compression_ratio(model, dense) == pytest.approx(dense / (nonzero - removed))


# --------------------------------------------------------------------------- ALDS-factorized


ALDS_SIDE = 4  # small inputs keep the classifier, and so the allocation, quick


def _dense_conv2() -> nn.Module:
    return models.build("conv2", num_classes=CLASSES, in_channels=3, input_size=ALDS_SIDE)


@pytest.fixture(scope="module")
def plan() -> alds.AldsPlan:
    return alds.allocate(_dense_conv2(), 0.5, error="bound", seed=0)


def _factorized(plan: alds.AldsPlan) -> tuple[nn.Module, int]:
    dense = _dense_conv2()
    return alds.apply(dense, plan, mode="factorize"), metrics.count_parameters(dense)


def test_alds_factors_are_prunable_and_keep_the_role_of_the_layer_they_replace(plan):
    dense_roles = imp.roles(_dense_conv2())
    model, _ = _factorized(plan)
    role_of = imp.roles(model)
    assert list(role_of) == list(imp.prunable(model))
    decomposed = [layer.name for layer in plan.layers if layer.decomposed]
    assert decomposed
    for name in decomposed:
        for part in ("encoder", "decoder"):
            assert role_of[f"{name}.{part}.weight"] == dense_roles[f"{name}.weight"]
        masks = imp.prune(model, 0.5, exclude=(name,))  # the module name covers both factors
        assert not {f"{name}.encoder.weight", f"{name}.decoder.weight"} & set(masks)


def test_a_factorized_output_layer_is_the_output_as_a_whole():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 32),
        FactorizedLinear(nn.Conv2d(32, 8, 1, groups=4, bias=False), nn.Linear(8, CLASSES)),
    )
    assert imp.roles(model) == {
        "0.weight": "conv",
        "2.weight": "fc",
        "3.encoder.weight": "output",
        "3.decoder.weight": "output",
    }
    assert set(imp.prune(model, 0.5, exclude=("output",))) == {"0.weight", "2.weight"}
    masks = imp.prune(model, 0.5, scope="layer", rates={"output": 0.25})
    assert int(masks["3.encoder.weight"].sum()) == round(64 * 0.75)  # (8, 8, 1, 1): groups of 4
    assert int(masks["3.decoder.weight"].sum()) == round(8 * CLASSES * 0.75)
    assert int(masks["2.weight"].sum()) == round(144 * 32 * 0.5)


def test_pruning_a_factorized_network_counts_against_the_dense_original(plan):
    model, dense = _factorized(plan)
    compressed = imp.capture(model)  # the `compressed` rewind point
    weights = imp.prunable(model)
    total = sum(w.numel() for w in weights.values())
    nonzero = metrics.count_parameters(model, nonzero=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    masks = None
    for level in range(1, 4):
        masks = imp.prune(model, 0.2, masks=masks)
        assert sum(int(m.sum()) for m in masks.values()) == round(total * 0.8**level)
        imp.rewind(model, compressed, masks)
        _assert_rewound(model, compressed, masks)
        assert all(_steps(model, optimizer, masks, 2, side=ALDS_SIDE))
    imp.rewind(model, compressed, masks)
    removed = sum(int((~m).sum()) for m in masks.values())
    assert metrics.count_parameters(model, nonzero=True) == nonzero - removed
    ratio = metrics.compression_ratio(model, dense)
    assert ratio == pytest.approx(dense / (nonzero - removed))
    assert ratio > dense / metrics.count_parameters(model) > 1.9  # ALDS and IMP multiply
    assert model(_batch(side=ALDS_SIDE)[0]).shape == (16, CLASSES)


def test_rewinding_a_factorized_network_to_init_needs_the_factorized_init(plan):
    model, _ = _factorized(plan)
    masks = imp.prune(model, 0.3)
    theta0 = _dense_conv2()
    with pytest.raises(ValueError, match="the rewind state does not fit this model"):
        imp.rewind(model, imp.capture(theta0), masks)
    # The same plan applied to θ0 gives the factorized θ0 the masks fit.
    init = imp.capture(alds.apply(theta0, plan, mode="factorize"))
    imp.rewind(model, init, masks)
    _assert_rewound(model, init, masks)


def test_rewinding_to_the_projected_network_restores_the_projection(plan):
    dense = _dense_conv2()
    model = alds.apply(dense, plan, mode="project")
    compressed = imp.capture(model)
    assert not torch.equal(compressed["features.2.weight"], dense.state_dict()["features.2.weight"])
    masks = imp.prune(model, 0.4, scope="layer")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert all(_steps(model, optimizer, masks, 2, side=ALDS_SIDE))
    imp.rewind(model, compressed, masks)
    _assert_rewound(model, compressed, masks)


# --------------------------------------------------------------------------- real data


@pytest.fixture
def one_thread():
    # LeNet is too small to gain from intra-op threads, and on a shared host a descheduled
    # OpenMP worker stalls every step (measured here: 14 s with one thread, 135 s with two).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_lenet_tickets_on_fashion_mnist_hold_dense_accuracy_at_a_third_of_the_weights():
    config = DatasetConfig(name="fashion-mnist", root=str(DEBIAN_FASHION_MNIST), train_subset=3000)
    data = load(config, seed=0)
    train = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, epochs=4)
    model = models.build("lenet300100", num_classes=10, in_channels=1, seed=0, input_size=28)
    theta0 = imp.capture(model)
    training.train(model, data, train, device="cpu", seed=0)
    dense = training.evaluate(model, data, data.test).accuracy
    masks = None
    for _ in range(5):
        masks = imp.prune(model, 0.2, masks=masks)
        imp.rewind(model, theta0, masks)
        training.train(
            model, data, train, device="cpu", seed=0, after_step=partial(imp.apply, masks=masks)
        )
    report = imp.sparsity(model)  # measured on the weights, not read from the masks
    assert 1 - report["sparsity"] == pytest.approx(0.8**5, abs=1 / report["total"])
    ticket = training.evaluate(model, data, data.test).accuracy
    assert dense > 0.75  # the dense network learned something worth matching
    assert ticket >= dense - 0.02, (dense, ticket)

"""The training engine: learning, determinism, hooks, schedule, NaN detection, evaluation."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

import models
from orchestrator.config import DatasetConfig, SyntheticConfig, TrainConfig
from orchestrator.data import DEBIAN_FASHION_MNIST, ImageSplit, load
from orchestrator.trial.training import (
    CHECK_EVERY,
    Evaluation,
    NonFiniteLossError,
    build_optimizer,
    build_scheduler,
    evaluate,
    lr_factor,
    make_generator,
    seed_everything,
    train,
)

CLASSES = 4
SIZE = 16


def _data(*, augment: bool = False, noise: float = 0.5, train_size: int = 256):
    synthetic = SyntheticConfig(
        image_size=SIZE,
        channels=3,
        num_classes=CLASSES,
        train_size=train_size,
        test_size=128,
        noise=noise,
    )
    return load(DatasetConfig(name="synthetic", synthetic=synthetic, augment=augment), seed=0)


def _lenet(seed: int = 0) -> nn.Module:
    return models.build(
        "lenet300100", num_classes=CLASSES, in_channels=3, seed=seed, input_size=SIZE
    )


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


class _DropoutNet(nn.Module):
    """A small net whose forward draws random numbers (dropout) from the global RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * SIZE * SIZE, 32),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(32, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# --------------------------------------------------------------------------- learning


def test_conv2_learns_synthetic_task_well_above_chance():
    data = _data(noise=1.0)
    model = models.build("conv2", num_classes=CLASSES, in_channels=3, seed=0, input_size=SIZE)
    before = evaluate(model, data, data.test)
    result = train(model, data, TrainConfig(lr=1e-3, batch_size=32, epochs=3), device="cpu", seed=0)
    after = evaluate(model, data, data.test)
    assert after.accuracy > 0.8  # chance is 1 / CLASSES = 0.25
    assert after.loss < before.loss
    assert result.final_loss < math.log(CLASSES)
    assert result.iterations == 3 * math.ceil(len(data.train) / 32)
    assert result.images_per_second > 0 and result.seconds > 0


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(optimizer="adam", lr=1e-3, weight_decay=1e-4, batch_size=32, epochs=2),
        TrainConfig(
            optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=32, epochs=2
        ),
        TrainConfig(
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
            nesterov=True,
            batch_size=32,
            epochs=2,
            warmup_iterations=4,
            milestones=(12,),
            gamma=0.5,
        ),
    ],
    ids=["adam-wd", "sgd-momentum-wd", "sgd-nesterov-schedule"],
)
def test_each_optimizer_trains(config):
    data = _data(noise=1.0)
    model = _lenet()
    before = evaluate(model, data, data.train)
    train(model, data, config, device="cpu", seed=0)
    after = evaluate(model, data, data.train)
    assert after.loss < 0.5 * before.loss
    assert after.accuracy > 0.8


def test_build_optimizer_passes_the_config_hyperparameters():
    model = _lenet()
    sgd = build_optimizer(
        model, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-4)
    )
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.1,
        0.8,
        True,
        1e-4,
    )
    adam = build_optimizer(model, TrainConfig(optimizer="adam", lr=3e-4, weight_decay=1e-5))
    assert isinstance(adam, torch.optim.Adam)
    assert (adam.param_groups[0]["lr"], adam.param_groups[0]["weight_decay"]) == (3e-4, 1e-5)
    assert sum(len(g["params"]) for g in adam.param_groups) == len(list(model.parameters()))


def test_nesterov_without_momentum_is_rejected():
    config = TrainConfig(optimizer="sgd", momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="nesterov SGD needs momentum"):
        build_optimizer(_lenet(), config)


def test_model_without_trainable_parameters_is_rejected():
    model = _lenet().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model, TrainConfig())


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_weights_and_loss_different_seed_differs():
    data = _data(augment=True)  # shuffling, augmentation and dropout all draw random numbers
    config = TrainConfig(lr=1e-3, batch_size=32, epochs=2)

    def run(seed: int, global_seed: int):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = _DropoutNet()
        torch.manual_seed(global_seed)  # the caller's global RNG state must not matter
        result = train(model, data, config, device="cpu", seed=seed)
        return _flat(model), result.final_loss

    weights_a, loss_a = run(0, global_seed=1)
    weights_b, loss_b = run(0, global_seed=2)
    weights_c, loss_c = run(1, global_seed=1)
    assert torch.equal(weights_a, weights_b)
    assert loss_a == loss_b
    assert not torch.equal(weights_a, weights_c)
    assert loss_a != loss_c


def test_train_leaves_the_callers_global_rng_untouched():
    data = _data()
    model = _DropoutNet()
    state = torch.get_rng_state()
    train(model, data, TrainConfig(batch_size=64, iterations=3), device="cpu", seed=7)
    assert torch.equal(torch.get_rng_state(), state)


def test_seed_everything_and_make_generator_are_reproducible():
    seed_everything(5)
    first = torch.rand(4), random.random()
    seed_everything(5)
    assert torch.equal(torch.rand(4), first[0])
    assert random.random() == first[1]
    a = torch.randperm(10, generator=make_generator(3))
    b = torch.randperm(10, generator=make_generator(3))
    c = torch.randperm(100, generator=make_generator(4))
    assert torch.equal(a, b)
    assert not torch.equal(torch.randperm(100, generator=make_generator(3)), c)


# --------------------------------------------------------------------------- NaN detection


def test_diverging_learning_rate_raises_non_finite_loss_error():
    data = _data()
    config = TrainConfig(optimizer="sgd", lr=10.0, momentum=0.9, batch_size=32, epochs=20)
    steps = []
    with pytest.raises(NonFiniteLossError, match=r"non-finite .* at iteration \d+") as info:
        train(
            _lenet(), data, config, device="cpu", seed=0, on_iteration=lambda i, m: steps.append(i)
        )
    error = info.value
    assert not math.isfinite(error.loss)
    assert 1 <= error.iteration <= steps[-1]
    # The run stops within one check interval of the first bad loss, not after 20 epochs.
    assert steps[-1] < error.iteration + CHECK_EVERY


class _Infinite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * SIZE * SIZE, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * math.inf


def test_model_with_infinite_output_fails_at_its_first_iteration():
    data = _data()
    with pytest.raises(NonFiniteLossError) as info:
        train(_Infinite(), data, TrainConfig(batch_size=32, iterations=3), device="cpu", seed=0)
    assert info.value.iteration == 1
    assert "iteration 1" in str(info.value)


# --------------------------------------------------------------------------- hooks and length


def test_after_step_runs_once_per_step_and_on_iteration_counts_from_one():
    data = _data()
    calls = []
    model = _lenet()
    result = train(
        model,
        data,
        TrainConfig(batch_size=48, iterations=13),
        device="cpu",
        seed=0,
        after_step=lambda m: calls.append(("after", m)),
        on_iteration=lambda i, m: calls.append((i, m)),
    )
    assert result.iterations == 13
    assert [c[0] for c in calls] == [x for i in range(1, 14) for x in ("after", i)]
    assert all(c[1] is model for c in calls)


def test_after_step_effect_is_what_the_next_step_sees():
    # IMP's use: zero a weight after every step; Adam must not regrow it by the end.
    data = _data()
    model = _lenet()
    mask = torch.rand(model.classifier[1].weight.shape, generator=make_generator(0)) > 0.5

    def apply_mask(m: nn.Module) -> None:
        with torch.no_grad():
            m.classifier[1].weight.mul_(mask)

    train(
        model,
        data,
        TrainConfig(lr=1e-2, batch_size=32, epochs=2),
        device="cpu",
        seed=0,
        after_step=apply_mask,
    )
    weight = model.classifier[1].weight
    assert torch.all(weight[~mask] == 0)
    assert torch.all(weight[mask] != 0)


def test_iterations_and_epochs_override_the_config():
    data = _data()  # 256 images: 8 steps of 32 per epoch
    config = TrainConfig(batch_size=32, iterations=5)
    assert train(_lenet(), data, config, device="cpu", seed=0).iterations == 5
    assert train(_lenet(), data, config, device="cpu", seed=0, iterations=11).iterations == 11
    result = train(_lenet(), data, config, device="cpu", seed=0, epochs=1.5)
    assert (result.iterations, result.epochs) == (12, 1.5)
    by_epochs = TrainConfig(batch_size=32, epochs=2)
    assert train(_lenet(), data, by_epochs, device="cpu", seed=0).iterations == 16
    assert train(_lenet(), data, by_epochs, device="cpu", seed=0, iterations=3).iterations == 3


def test_epochs_count_the_partial_last_batch():
    data = _data(train_size=100)  # 100 images at batch 32: 4 steps, the last of 4 images
    result = train(_lenet(), data, TrainConfig(batch_size=32, epochs=1), device="cpu", seed=0)
    assert (result.iterations, result.epochs) == (4, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 1.0, "iterations": 3}, "either epochs or iterations"),
        ({"iterations": 0}, "iterations must be at least 1"),
        ({"epochs": 0.0}, "epochs must be positive"),
    ],
)
def test_bad_length_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train(_lenet(), _data(), TrainConfig(batch_size=32), device="cpu", seed=0, **kwargs)


def test_train_sets_training_mode_and_ignores_cuda_options_on_the_cpu():
    data = _data()
    model = models.build("conv2", num_classes=CLASSES, in_channels=3, seed=0, input_size=SIZE)
    model.eval()
    config = TrainConfig(batch_size=64, iterations=1, amp=True, channels_last=True)
    result = train(model, data, config, device="cpu", seed=0)
    assert model.training
    assert all(p.device == data.device and p.dtype == torch.float32 for p in model.parameters())
    # channels-last is a CUDA option: on the CPU the weights keep the standard layout.
    assert model.features[0].weight.is_contiguous()
    assert math.isfinite(result.final_loss)


# --------------------------------------------------------------------------- LR schedule


def test_lr_factor_warms_up_linearly_then_decays_at_milestones():
    config = TrainConfig(lr=0.1, warmup_iterations=4, milestones=(6, 9), gamma=0.5)
    factors = [lr_factor(step, config) for step in range(11)]
    expected = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert factors == pytest.approx(expected)
    assert lr_factor(0, TrainConfig()) == 1.0


def test_scheduler_sets_the_intended_learning_rates():
    model = _lenet()
    config = TrainConfig(optimizer="sgd", lr=0.2, warmup_iterations=2, milestones=(3,), gamma=0.1)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.1, 0.2, 0.2, 0.02, 0.02])


def test_train_follows_the_schedule():
    # Plain SGD moves the weights by lr * grad: after the milestone the steps shrink by gamma.
    data = _data()
    config = TrainConfig(
        optimizer="sgd",
        lr=0.01,
        momentum=0.0,
        batch_size=32,
        iterations=8,
        milestones=(4,),
        gamma=1e-6,
    )
    snapshots = []
    model = _lenet()
    initial = _flat(model)
    train(
        model,
        data,
        config,
        device="cpu",
        seed=0,
        on_iteration=lambda i, m: snapshots.append(_flat(m)),
    )
    moves = [(b - a).norm().item() for a, b in zip([initial, *snapshots], snapshots, strict=False)]
    assert min(moves[:4]) > 1e-4
    assert max(moves[4:]) < 1e-3 * min(moves[:4])


# --------------------------------------------------------------------------- evaluation


def test_evaluate_matches_a_direct_computation_and_restores_the_mode():
    data = _data(noise=1.5)
    model = _lenet()
    train(model, data, TrainConfig(batch_size=32, iterations=3), device="cpu", seed=0)
    result = evaluate(model, data, data.test, batch_size=50)  # 128 images: a partial batch
    assert isinstance(result, Evaluation)
    assert result.count == len(data.test)
    assert 0.0 <= result.accuracy <= 1.0
    model.eval()
    with torch.no_grad():
        logits = model(data.normalize(data.test.images))
    expected_accuracy = (logits.argmax(1) == data.test.labels).float().mean().item()
    expected_loss = nn.functional.cross_entropy(logits, data.test.labels).item()
    assert result.accuracy == pytest.approx(expected_accuracy)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    model.train()
    evaluate(model, data, data.test)
    assert model.training


def test_evaluate_rejects_an_empty_split_and_a_bad_batch_size():
    data = _data()
    empty = ImageSplit(
        torch.empty(0, 3, SIZE, SIZE, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    )
    with pytest.raises(ValueError, match="empty split"):
        evaluate(_lenet(), data, empty)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        evaluate(_lenet(), data, data.test, batch_size=0)


# --------------------------------------------------------------------------- real data


def test_fashion_mnist_from_the_real_files_learns_in_one_epoch():
    config = DatasetConfig(
        name="fashion-mnist", root=str(DEBIAN_FASHION_MNIST), train_subset=500, test_subset=1000
    )
    data = load(config, seed=0)
    assert (data.in_channels, data.image_size) == (1, 28)
    model = models.build("lenet300100", num_classes=10, in_channels=1, seed=0, input_size=28)
    result = train(model, data, TrainConfig(lr=1e-3, batch_size=20, epochs=1), device="cpu", seed=0)
    assert result.iterations == 25
    accuracy = evaluate(model, data, data.test).accuracy
    assert accuracy > 0.6

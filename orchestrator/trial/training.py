"""Train and evaluate loops driven by :class:`~orchestrator.config.TrainConfig`.

One loop serves dense training, ALDS fine-tuning and every IMP cycle: the optimizer and the
learning-rate schedule are built fresh on each :func:`train` call, ``after_step`` runs after
every optimizer step (IMP re-applies its masks there) and ``on_iteration`` sees the 1-based
iteration count (IMP snapshots its rewind point there).

Runs are reproducible: shuffling, augmentation and any randomness inside the model (dropout)
draw from generators seeded by ``seed``, never from the caller's global RNG state.
"""

from __future__ import annotations

import bisect
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.config import TrainConfig
from orchestrator.data import Datasets, ImageSplit

__all__ = [
    "Evaluation",
    "NonFiniteLossError",
    "TrainResult",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "lr_factor",
    "make_generator",
    "seed_everything",
    "train",
]

# Checking the loss for NaN/inf needs a device sync; doing it once per this many steps keeps
# the GPU queue full while still stopping a diverged run within a few dozen steps.
CHECK_EVERY = 50


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, iteration: int, loss: float) -> None:
        super().__init__(
            f"training loss became non-finite ({loss}) at iteration {iteration}; "
            "lower the learning rate, add warm-up, or disable AMP"
        )
        self.iteration = iteration
        self.loss = loss


@dataclass(frozen=True)
class TrainResult:
    """Summary of one :func:`train` call.

    ``final_loss`` is the mean training loss over the last epoch's worth of steps (all steps
    when the run is shorter than an epoch); ``epochs`` counts a partial last batch as a step.
    """

    iterations: int
    epochs: float
    final_loss: float
    seconds: float
    images_per_second: float


@dataclass(frozen=True)
class Evaluation:
    """Top-1 accuracy in [0, 1] and mean cross-entropy over ``count`` examples."""

    accuracy: float
    loss: float
    count: int


# --------------------------------------------------------------------------- randomness


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices) for code outside :func:`train`.

    With ``deterministic`` the CUDA backends are set to pick reproducible kernels, which
    :func:`train` needs to give identical metrics for the same seed on a GPU.
    """
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional for torch; nothing to seed then
        pass
    else:
        np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this when it initialises; setting it later has no effect.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (shuffling and augmentation draw here)."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(seed)
    return generator


@contextmanager
def _seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    # Dropout and other in-model randomness use the global RNG; forking it makes them depend on
    # `seed` alone and leaves the caller's random stream untouched.
    # torch.manual_seed reseeds every GPU, so every GPU's state is saved and restored.
    devices = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- optimiser


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """A fresh Adam or SGD (momentum, Nesterov, weight decay) over the model's parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        if config.nesterov and config.momentum == 0:
            raise ValueError("nesterov SGD needs momentum > 0")
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    raise ValueError(f"unknown optimizer '{config.optimizer}'; use adam or sgd")


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` for the optimizer step after ``step`` completed steps.

    Linear warm-up reaches the full rate on step ``warmup_iterations`` (the first step already
    moves, at ``1 / warmup_iterations``); once ``step`` reaches a milestone the rate is
    multiplied by ``gamma``.
    """
    warmup = min(1.0, (step + 1) / config.warmup_iterations) if config.warmup_iterations else 1.0
    return warmup * config.gamma ** bisect.bisect_right(config.milestones, step)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """The warm-up + milestone schedule of :func:`lr_factor`, stepped once per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))


# --------------------------------------------------------------------------- training


def _length(
    config: TrainConfig, steps_per_epoch: int, epochs: float | None, iterations: int | None
) -> int:
    if epochs is not None and iterations is not None:
        raise ValueError("give either epochs or iterations, not both")
    if epochs is None and iterations is None:
        epochs, iterations = config.epochs, config.iterations
    if iterations is not None:
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        return iterations
    if epochs is None or not epochs > 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return max(1, round(epochs * steps_per_epoch))


def _amp_dtype(device: torch.device, config: TrainConfig) -> torch.dtype | None:
    if device.type != "cuda" or not config.amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _check_finite(losses: list[torch.Tensor], first_iteration: int) -> None:
    """Raise on the first non-finite loss in ``losses`` (one device sync for all of them)."""
    if not losses:
        return
    window = torch.stack(losses)
    bad = ~torch.isfinite(window)
    if bad.any():
        index = int(bad.nonzero()[0, 0])
        raise NonFiniteLossError(first_iteration + index, float(window[index]))


def train(
    model: nn.Module,
    data: Datasets,
    config: TrainConfig,
    *,
    device: torch.device | str,
    seed: int,
    epochs: float | None = None,
    iterations: int | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    on_iteration: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data.train`` and return a summary.

    ``epochs`` or ``iterations`` override the config's length. The model is moved to
    ``device`` (channels-last there on CUDA when configured) and left in training mode.
    ``after_step(model)`` runs after every optimizer step, then
    ``on_iteration(iteration, model)`` with the 1-based count of steps taken.

    Raises :class:`NonFiniteLossError` when the loss becomes NaN or infinite; the check runs
    every ``CHECK_EVERY`` steps and at the end, so the hooks may see up to that many steps of
    a diverged model before the error.
    """
    device = torch.device(device)
    split = data.train
    if len(split) == 0:
        raise ValueError("the training split is empty")
    batch_size = config.batch_size
    steps_per_epoch = math.ceil(len(split) / batch_size)
    total = _length(config, steps_per_epoch, epochs, iterations)

    cuda = device.type == "cuda"
    if cuda:
        # cuDNN's autotuner picks kernels by timing, so two runs could differ.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    memory_format = torch.channels_last if cuda and config.channels_last else torch.preserve_format
    model.to(device)
    model.to(memory_format=memory_format)
    model.train()
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    amp_dtype = _amp_dtype(device, config)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    autocast = (
        (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_dtype is not None else nullcontext
    )
    generator = make_generator(seed, split.images.device)

    recent: deque[torch.Tensor] = deque(maxlen=steps_per_epoch)  # the last epoch's losses
    unchecked: list[torch.Tensor] = []
    images = 0
    step = 0
    start = time.perf_counter()
    with _seeded_global_rng(seed, device):
        while step < total:
            batches = data.batches(
                split, batch_size, shuffle=True, generator=generator, augment=data.augment
            )
            for x, y in batches:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if cuda and config.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = F.cross_entropy(model(x), y)
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                scheduler.step()
                step += 1
                images += y.shape[0]
                if after_step is not None:
                    after_step(model)
                if on_iteration is not None:
                    on_iteration(step, model)

                loss = loss.detach()
                recent.append(loss)
                unchecked.append(loss)
                if len(unchecked) == CHECK_EVERY:
                    _check_finite(unchecked, step - CHECK_EVERY + 1)
                    unchecked.clear()
                if step == total:
                    break
        _check_finite(unchecked, step - len(unchecked) + 1)
        final_loss = float(torch.stack(list(recent)).float().mean())
    seconds = time.perf_counter() - start
    return TrainResult(
        iterations=step,
        epochs=step / steps_per_epoch,
        final_loss=final_loss,
        seconds=seconds,
        images_per_second=images / seconds if seconds > 0 else math.inf,
    )


# --------------------------------------------------------------------------- evaluation


def evaluate(
    model: nn.Module, data: Datasets, split: ImageSplit, *, batch_size: int = 1000
) -> Evaluation:
    """Accuracy and mean cross-entropy of ``model`` on ``split`` (no augmentation).

    The model is moved to the split's device and its train/eval mode is restored afterwards.
    """
    count = len(split)
    if count == 0:
        raise ValueError("cannot evaluate on an empty split")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = split.images.device
    was_training = model.training
    model.to(device)
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    try:
        with torch.inference_mode():
            for x, y in data.batches(split, batch_size, shuffle=False, augment=False):
                logits = model(x).float()
                total_loss += F.cross_entropy(logits, y, reduction="sum")
                correct += (logits.argmax(dim=1) == y).sum()
    finally:
        model.train(was_training)
    return Evaluation(accuracy=int(correct) / count, loss=float(total_loss) / count, count=count)

"""One trial of the seed's procedure: θ0 → dense training → ALDS → IMP cycles.

Step 0 is the dense-trained network, step 1 the network after ALDS (and its fine-tuning),
steps 2..C+1 the IMP cycles. Every step is measured the same way and handed to ``on_step``,
which may raise to stop the trial (the worker raises ``optuna.TrialPruned`` there).
The procedure knows nothing of Optuna or MLflow.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import models
from compression import alds, imp, metrics
from orchestrator import data as datasets
from orchestrator.cache import CheckpointCache
from orchestrator.config import Objective, SweepConfig
from orchestrator.training import evaluate, train

__all__ = ["Step", "TrialResult", "objective_value", "run_trial"]


@dataclass(frozen=True)
class Step:
    """What one compression step measured."""

    step: int
    phase: str  # "dense", "alds", "imp"
    cycle: int
    accuracy: float
    loss: float
    val_accuracy: float | None
    sparsity: float  # 1 - remaining
    remaining: float  # nonzero prunable weights / prunable weights of the original network
    params_nonzero: int
    params_total: int
    compression_ratio: float  # original parameters / nonzero parameters
    flops: int

    def metrics(self) -> dict[str, float]:
        """The numeric measurements, as logged per step."""
        values = asdict(self)
        for key in ("step", "phase", "cycle"):
            values.pop(key)
        return {k: float(v) for k, v in values.items() if v is not None}


@dataclass
class TrialResult:
    """Everything a trial produced: its curve, the ALDS plan, the final masks and model."""

    steps: list[Step]
    model: nn.Module
    masks: dict[str, torch.Tensor]
    plan: alds.AldsPlan | None
    dense_checkpoint: str  # "trained" or "cached"
    layers: list[dict[str, Any]] = field(default_factory=list)


def _input_shape(data: datasets.Datasets) -> tuple[int, int, int]:
    return (data.in_channels, data.image_size, data.image_size)


def _build(config: SweepConfig, data: datasets.Datasets, seed: int) -> nn.Module:
    return models.build(
        config.model,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        seed=seed,
        input_size=data.image_size,
    )


def _early_iteration(rewind: str) -> int | None:
    return int(rewind.split(":", 1)[1]) if rewind.startswith("early:") else None


def dense_checkpoint(
    config: SweepConfig,
    seed: int,
    data: datasets.Datasets,
    cache: CheckpointCache,
    device: torch.device,
    check: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """θ0 and the dense-trained network of ``seed``, from the cache or computed once.

    Returns (θ0 payload, dense payload, whether the dense network was trained by this call).
    """
    init_key = {
        "model": config.model,
        "classes": data.num_classes,
        "channels": data.in_channels,
        "size": data.image_size,
        "seed": seed,
    }
    init, _ = cache.get_or_make(
        "init", init_key, lambda: {"state": imp.capture(_build(config, data, seed))}
    )
    early = _early_iteration(config.imp.rewind)
    dense_key = {
        "init": init_key,
        "dataset": config.dataset.model_dump(mode="json"),
        "train": config.train.model_dump(mode="json"),
        "early": early,
    }

    def make() -> dict[str, Any]:
        model = _build(config, data, seed)
        model.load_state_dict(init["state"])
        snapshots: dict[str, Any] = {}

        def snapshot(iteration: int, network: nn.Module) -> None:
            check()
            if iteration == early:
                snapshots["early"] = {k: v.cpu() for k, v in imp.capture(network).items()}

        train(model, data, config.train, device=device, seed=seed, on_iteration=snapshot)
        if early is not None and "early" not in snapshots:
            raise ValueError(
                f"imp.rewind early:{early} is past the end of dense training "
                "(fewer iterations); choose a smaller N"
            )
        return {"state": {k: v.cpu() for k, v in imp.capture(model).items()}, **snapshots}

    dense, trained = cache.get_or_make("dense", dense_key, make)
    return init, dense, trained


def _measure(
    step: int,
    phase: str,
    cycle: int,
    model: nn.Module,
    data: datasets.Datasets,
    config: SweepConfig,
    original_parameters: int,
    original_prunable: int,
) -> Step:
    test = evaluate(model, data, data.test, batch_size=config.train.eval_batch_size)
    val = (
        evaluate(model, data, data.val, batch_size=config.train.eval_batch_size)
        if data.val is not None and len(data.val)
        else None
    )
    alive = imp.sparsity(model)["alive"]
    nonzero = metrics.count_parameters(model, nonzero=True)
    remaining = alive / original_prunable
    return Step(
        step=step,
        phase=phase,
        cycle=cycle,
        accuracy=test.accuracy,
        loss=test.loss,
        val_accuracy=None if val is None else val.accuracy,
        sparsity=1.0 - remaining,
        remaining=remaining,
        params_nonzero=nonzero,
        params_total=metrics.count_parameters(model),
        compression_ratio=original_parameters / max(nonzero, 1),
        flops=metrics.count_flops(model, _input_shape(data)),
    )


def _rewind_state(
    rewind: str,
    config: SweepConfig,
    data: datasets.Datasets,
    init: Mapping[str, torch.Tensor],
    dense: Mapping[str, Any],
    compressed: Mapping[str, torch.Tensor],
    plan: alds.AldsPlan | None,
) -> Mapping[str, torch.Tensor] | None:
    """The weights IMP rewinds the survivors to, in the shapes of the compressed network.

    A factorized network has no θ0 of its own: its rewind point is the original rewind point
    factorized by the same plan (same k and ranks per layer).
    """
    if rewind == "none":
        return None
    if rewind == "compressed":
        return compressed
    source = init if rewind == "init" else dense["early"]
    if plan is None or config.alds.mode == "project":
        return source
    reference = _build(config, data, 0)
    reference.load_state_dict(source)
    return alds.apply(reference, plan, mode="factorize").state_dict()


def _cpu(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in state.items()}


def _save_progress(path: Path, progress: dict[str, Any]) -> None:
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(progress, temporary)
    os.replace(temporary, path)  # a crash mid-write leaves the previous cycle intact


def run_trial(
    config: SweepConfig,
    seed: int,
    *,
    device: torch.device | str,
    cache: CheckpointCache,
    on_step: Callable[[Step], None] = lambda step: None,
    check: Callable[[], None] = lambda: None,
    progress_file: Path | None = None,
) -> TrialResult:
    """Run the seed's procedure for ``config`` (with the trial's parameters) at ``seed``.

    ``check()`` runs after every training iteration and may raise to abort (a time limit).
    With ``progress_file``, the state after every compressed step is saved there, and a run
    that finds the file resumes after the last step it holds (its steps are reported again).
    """
    device = torch.device(device)
    data = datasets.load(config.dataset, device=device, seed=seed)
    init, dense, trained = dense_checkpoint(config, seed, data, cache, device, check)
    iteration_check = functools.partial(_call_check, check)

    model = _build(config, data, seed)
    model.load_state_dict(dense["state"])
    model.to(device)
    original_parameters = metrics.count_parameters(model)
    original_prunable = sum(w.numel() for w in imp.prunable(model).values())
    steps: list[Step] = []
    saved = None
    if progress_file is not None and progress_file.exists():
        saved = torch.load(progress_file, map_location="cpu", weights_only=True)

    def record(phase: str, cycle: int) -> None:
        step = _measure(
            len(steps), phase, cycle, model, data, config, original_parameters, original_prunable
        )
        steps.append(step)
        if progress_file is not None and step.step > 0:
            _save_progress(
                progress_file,
                {
                    "cycle": cycle,
                    "state": _cpu(model.state_dict()),
                    "masks": _cpu(masks),
                    "steps": [asdict(s) for s in steps],
                    "plan": None if plan is None else json.dumps(plan.to_dict()),
                    "compressed": None if compressed is None else _cpu(compressed),
                },
            )
        on_step(step)

    plan: alds.AldsPlan | None = None
    compressed: dict[str, torch.Tensor] | None = None
    masks: dict[str, torch.Tensor] = {}
    if saved is None:
        record("dense", 0)
        if config.alds.rate > 0:
            model, plan = alds.compress(
                model,
                config.alds.rate,
                mode=config.alds.mode,
                error=config.alds.error,
                seed=seed,
                k_candidates=config.alds.k_candidates,
                input_shape=_input_shape(data),
            )
            model.to(device)
        if config.alds.finetune_epochs > 0:
            # The baseline (rate 0) is fine-tuned too: both arms get the same training budget.
            train(
                model,
                data,
                config.train,
                device=device,
                seed=seed + 1,
                epochs=config.alds.finetune_epochs,
                on_iteration=iteration_check,
            )
        compressed = imp.capture(model)
        record("alds", 0)
        first_cycle = 1
    else:
        if saved["plan"] is not None:
            plan = alds.AldsPlan.from_dict(json.loads(saved["plan"]))
            model = alds.apply(model, plan, mode=config.alds.mode).to(device)
        model.load_state_dict(saved["state"])
        masks = {name: mask.to(device) for name, mask in saved["masks"].items()}
        compressed = saved["compressed"]
        for values in saved["steps"]:
            steps.append(Step(**values))
            on_step(steps[-1])
        first_cycle = saved["cycle"] + 1

    target = _rewind_state(config.imp.rewind, config, data, init["state"], dense, compressed, plan)
    for cycle in range(first_cycle, config.imp.cycles + 1):
        if config.imp.until_remaining is not None and (
            steps[-1].remaining <= config.imp.until_remaining
        ):
            break
        masks = imp.prune(
            model,
            config.imp.prune_fraction,
            masks=masks,
            scope=config.imp.scope,
            exclude=config.imp.exclude,
            rates=config.imp.rates,
        )
        if target is None:
            imp.apply(model, masks)
        else:
            imp.rewind(model, target, masks)
        train(
            model,
            data,
            config.train,
            device=device,
            seed=seed + 1 + cycle,
            epochs=config.imp.epochs_per_cycle,
            after_step=functools.partial(imp.apply, masks=masks),
            on_iteration=iteration_check,
        )
        record("imp", cycle)

    return TrialResult(
        steps=steps,
        model=model,
        masks=masks,
        plan=plan,
        dense_checkpoint="trained" if trained else "cached",
        layers=_layer_table(model, masks),
    )


def _call_check(check: Callable[[], None], iteration: int, model: nn.Module) -> None:
    check()


def _layer_table(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
    report = imp.sparsity(model, masks)
    return [{"layer": name, **values} for name, values in report["layers"].items()]


def objective_value(steps: Sequence[Step], objective: Objective) -> float:
    """The value of one objective on a finished curve.

    ``at: final`` reads the last step, ``best`` the best compressed step (1 and later),
    a number reads the metric at that sparsity, interpolated linearly between the two steps
    around it; a curve that never reached it gives NaN (the trial fails with that reason).
    """

    def value(step: Step) -> float:
        measured = getattr(step, objective.metric)
        return math.nan if measured is None else float(measured)

    if objective.at == "final":
        return value(steps[-1])
    if objective.at == "best":
        compressed = [value(step) for step in steps[1:]] or [value(steps[-1])]
        return max(compressed) if objective.direction == "maximize" else min(compressed)
    target = float(objective.at)
    for before, after in itertools.pairwise(steps):
        if before.sparsity <= target <= after.sparsity:
            span = after.sparsity - before.sparsity
            weight = 0.0 if span == 0 else (target - before.sparsity) / span
            return value(before) + weight * (value(after) - value(before))
    return math.nan

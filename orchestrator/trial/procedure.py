"""One trial of the seed's procedure: θ0 → dense training → ALDS → IMP cycles.

Step 0 is the dense-trained network, step 1 the network after ALDS (and its fine-tuning),
steps 2..C+1 the IMP cycles. Every step is measured the same way and handed to ``on_step``,
which may raise to stop the trial (the worker's step reporter raises ``optuna.TrialPruned``
there: ``execution.lifecycle``).
The procedure knows nothing of Optuna or MLflow.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression import alds, imp, metrics
from orchestrator import data as datasets, plan, stored_names, workspace
from orchestrator.config import SweepConfig
from orchestrator.data.specs import DatasetShape
from orchestrator.trial import identity, network
from orchestrator.trial.cache import (
    CheckpointCache,
    CorruptCheckpoint,
    load as load_checkpoint,
    move_aside,
    save_atomically,
)
from orchestrator.trial.training import evaluate, train

logger = logging.getLogger(__name__)

__all__ = ["Progress", "Step", "TrialResult", "dense_checkpoint", "reinit_seed", "run_trial"]


@dataclass(frozen=True)
class Step:
    """What one compression step measured: only what a step can change.

    The dense network's size is step 0's ``params_nonzero`` and ``flops_effective``.
    """

    step: int
    phase: str  # "dense", "alds", "imp"
    cycle: int
    accuracy: float
    loss: float
    val_accuracy: float | None
    sparsity: float  # 1 - remaining
    remaining: float  # nonzero prunable weights / prunable weights of the original network
    params_nonzero: int
    compression_ratio: float  # original parameters / nonzero parameters
    # Each weight in the cheaper exact form, sparse or ALDS's rank factors (see
    # compression.metrics.layer_costs): what ALDS changes even where it keeps the shapes.
    params_effective: int
    flops_effective: int
    # Layer of the original network → its nonzero weights / its original weights, for the
    # layers IMP prunes (an excluded layer's fraction is a constant of the run).
    layers: dict[str, float] = field(default_factory=dict)
    # The share of the prunable weights' total magnitude held by their smallest and largest
    # tenth (nonzero entries): does ALDS shrink the insignificant weights and grow the others?
    mass_smallest_decile: float = math.nan
    mass_largest_decile: float = math.nan

    def metrics(self) -> dict[str, float]:
        """The numeric measurements, as logged per step (one per pruned layer included)."""
        values = asdict(self)
        for key in ("step", "phase", "cycle", "layers"):
            values.pop(key)
        flat = {k: float(v) for k, v in values.items() if v is not None and not math.isnan(v)}
        flat.update({stored_names.layer_remaining(name): v for name, v in self.layers.items()})
        return flat

    def row(self) -> dict[str, Any]:
        """The step as a row of the trial's curve (``curve.Row``): what its run's curve table
        holds and what a reused result keeps."""
        return {"step": self.step, "phase": self.phase, "cycle": self.cycle, **self.metrics()}


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
    data_shape = DatasetShape(data.num_classes, data.in_channels, data.image_size)
    return network.build(config, data_shape, seed)


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
    init_key = identity.init_key(
        config,
        classes=data.num_classes,
        channels=data.in_channels,
        size=data.image_size,
        seed=seed,
    )
    init, _ = cache.get_or_make(
        "init", init_key, lambda: {"state": imp.capture(_build(config, data, seed))}
    )
    early = config.imp.early_iteration
    dense_key = identity.dense_key(config, init_key)

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


@dataclass(frozen=True)
class _Reference:
    """What every step is measured against: the dense network before any compression."""

    parameters: int
    prunable: int
    input_shape: tuple[int, int, int]
    layers: dict[str, int]  # weights of each layer IMP prunes


def _measure(
    model: nn.Module,
    data: datasets.Datasets,
    reference: _Reference,
    plan: alds.AldsPlan | None,
    *,
    step: int,
    phase: str,
    cycle: int,
    eval_batch_size: int,
) -> Step:
    test = evaluate(model, data, data.test, batch_size=eval_batch_size)
    val = (
        evaluate(model, data, data.val, batch_size=eval_batch_size)
        if data.val is not None and len(data.val)
        else None
    )
    alive = imp.sparsity(model)["alive"]
    smallest, largest = metrics.magnitude_shares(list(imp.prunable(model).values()))
    nonzero = metrics.count_parameters(model, nonzero=True)
    splits = {} if plan is None else {layer.name: layer.k for layer in plan.layers}
    costs = metrics.layer_costs(model, reference.input_shape, splits)
    # Biases and normalisation parameters are stored as they are.
    other = nonzero - sum(cost.nonzero for cost in costs.values())
    remaining = alive / reference.prunable
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
        compression_ratio=metrics.compression_ratio(model, reference.parameters, nonzero=nonzero),
        params_effective=other + sum(cost.params for cost in costs.values()),
        flops_effective=sum(cost.flops for cost in costs.values()),
        layers={name: costs[name].nonzero / weights for name, weights in reference.layers.items()},
        mass_smallest_decile=smallest,
        mass_largest_decile=largest,
    )


def _rewind_state(
    config: SweepConfig,
    data: datasets.Datasets,
    init: Mapping[str, torch.Tensor],
    dense: Mapping[str, Any],
    progress: Progress,
    seed: int,
) -> Mapping[str, torch.Tensor] | None:
    """The weights IMP rewinds the survivors to, in the shapes of the compressed network.

    A dense network (the IMP-only arm, and ALDS in project mode) rewinds as ``imp.rewind``
    says. A factorized network has coordinates of its own: ``imp.factorized_rewind`` names
    its rewind point in them (the factors ALDS made, the fine-tuned ones, redrawn ones, none),
    or, by explicit choice, θ0 factorized by the trained plan.
    """
    if progress.plan is None or config.alds.mode == "project":
        rewind = config.imp.rewind
        if rewind == "none":
            return None
        if rewind == "compressed":
            return progress.compressed
        return init if rewind == "init" else dense["early"]
    match config.imp.factorized_rewind:
        case "none":
            return None
        case "compressed":
            return progress.compressed
        case "alds":
            return progress.factorized
        case "reinit":
            return _redrawn_factors(progress.factorized, seed)
    source = init if config.imp.rewind in ("init", "compressed", "none") else dense["early"]
    reference = _build(config, data, 0)
    reference.load_state_dict(source)
    return alds.apply(reference, progress.plan, mode="factorize").state_dict()


def _redrawn_factors(
    state: Mapping[str, torch.Tensor] | None, seed: int
) -> dict[str, torch.Tensor] | None:
    """``state`` with every factor weight (``*.encoder.weight``, ``*.decoder.weight``) drawn
    anew, Glorot normal from the trial's seed; every other entry as it is."""
    if state is None:
        return None
    generator = torch.Generator().manual_seed(seed)
    redrawn = {}
    for name, tensor in state.items():
        if name.endswith((".encoder.weight", ".decoder.weight")):
            fresh = torch.empty(tensor.shape, dtype=tensor.dtype)
            nn.init.xavier_normal_(fresh, generator=generator)
            redrawn[name] = fresh.to(tensor.device)
        else:
            redrawn[name] = tensor
    return redrawn


def _cpu(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in state.items()}


@dataclass
class Progress:
    """Where a trial stands after its last completed step: enough for a retry to resume.

    Saved after every compressed step (the model's weights with it), so a trial whose worker
    died resumes after the last step it completed instead of from the dense network.
    """

    cycle: int = 0  # the last IMP cycle completed (0: none, ALDS done)
    steps: list[Step] = field(default_factory=list)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    plan: alds.AldsPlan | None = None
    compressed: dict[str, torch.Tensor] | None = None  # after ALDS and its fine-tuning
    factorized: dict[str, torch.Tensor] | None = None  # as ALDS made them, before fine-tuning

    def save(self, path: Path, model: nn.Module) -> None:
        """Write this progress and ``model``'s weights to ``path`` (atomically)."""
        save_atomically(
            {
                "cycle": self.cycle,
                "state": _cpu(model.state_dict()),
                "masks": _cpu(self.masks),
                "steps": [asdict(step) for step in self.steps],
                "plan": None if self.plan is None else json.dumps(self.plan.to_dict()),
                "compressed": None if self.compressed is None else _cpu(self.compressed),
                "factorized": None if self.factorized is None else _cpu(self.factorized),
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> tuple[Progress, dict[str, torch.Tensor]]:
        """The progress saved at ``path`` and the model weights saved with it (on the CPU)."""
        saved = load_checkpoint(path)
        plan = saved["plan"]
        progress = cls(
            cycle=saved["cycle"],
            steps=[Step(**values) for values in saved["steps"]],
            masks=saved["masks"],
            plan=None if plan is None else alds.AldsPlan.from_dict(json.loads(plan)),
            compressed=saved["compressed"],
            factorized=saved.get("factorized"),
        )
        return progress, saved["state"]


class _Phases:
    """The phases of one trial over its model: each ends by measuring and reporting a step."""

    def __init__(
        self,
        config: SweepConfig,
        seed: int,
        data: datasets.Datasets,
        device: torch.device,
        dense_state: Mapping[str, torch.Tensor],
        on_step: Callable[[Step], None],
        check: Callable[[], None],
        progress_file: Path | None,
        masks_folder: Path | None = None,
    ) -> None:
        self.config = config
        self.seed = seed
        self.progress = Progress()
        self.progress_file = progress_file
        self.masks_folder = masks_folder
        # What a control's replay of its twin is built from (_TwinMasks): the same trial,
        # reporting nothing.
        self.arguments = (config, seed, data, device, dense_state, _ignore, check, None)
        self.data = data
        self.device = device
        self.on_step = on_step
        self.iteration_check = functools.partial(_call_check, check)
        self.model = _build(config, data, seed)
        self.model.load_state_dict(dense_state)
        self.model.to(device)
        weights = imp.prunable(self.model)
        excluded = imp.excluded(self.model, config.imp.exclude)
        self.reference = _Reference(
            parameters=metrics.count_parameters(self.model),
            prunable=sum(w.numel() for w in weights.values()),
            input_shape=_input_shape(data),
            layers={
                name.removesuffix(".weight"): weight.numel()
                for name, weight in weights.items()
                if name not in excluded
            },
        )

    def dense(self) -> None:
        """Step 0: the dense-trained network as it is."""
        self._record("dense", 0)

    def alds(self) -> None:
        """Step 1: ALDS at the trial's rate, then the fine-tuning every arm gets."""
        config = self.config
        if plan.is_alds(config.alds.rate):
            self.model, self.progress.plan = alds.compress(
                self.model,
                config.alds.rate,
                mode=config.alds.mode,
                error=config.alds.error,
                seed=self.seed,
                k_candidates=config.alds.k_candidates,
                input_shape=self.reference.input_shape,
            )
            self.model.to(self.device)
            if config.alds.mode == "factorize":
                self.progress.factorized = imp.capture(self.model)
        if config.alds.finetune_epochs > 0:
            # The baseline (rate 0) is fine-tuned too: both arms get the same training budget.
            train(
                self.model,
                self.data,
                config.train,
                device=self.device,
                seed=self.seed + 1,
                epochs=config.alds.finetune_epochs,
                on_iteration=self.iteration_check,
            )
        self.progress.compressed = imp.capture(self.model)
        self._record("alds", 0)

    def resume(self, progress: Progress, weights: Mapping[str, torch.Tensor]) -> None:
        """Continue after the last saved step; its steps are reported again."""
        if progress.plan is not None:
            self.model = alds.apply(self.model, progress.plan, mode=self.config.alds.mode)
            self.model.to(self.device)
        self.model.load_state_dict(weights)
        progress.masks = {name: mask.to(self.device) for name, mask in progress.masks.items()}
        self.progress = progress
        for step in progress.steps:
            self.on_step(step)

    def target_reached(self) -> bool:
        """Whether IMP has pruned down to ``imp.until_remaining``."""
        until = self.config.imp.until_remaining
        return until is not None and self.progress.steps[-1].remaining <= until

    def imp_cycle(self, cycle: int, rewind_to: Mapping[str, torch.Tensor] | None) -> None:
        """Step 1 + ``cycle``: prune, rewind the survivors, retrain with the masks held."""
        config = self.config
        masks = imp.prune(
            self.model,
            config.imp.prune_fraction,
            masks=self.progress.masks,
            scope=config.imp.scope,
            exclude=config.imp.exclude,
            rates=config.imp.rates,
        )
        self.progress.masks = masks
        if self.masks_folder is not None:
            self.masks_folder.mkdir(parents=True, exist_ok=True)
            save_atomically({"masks": _cpu(masks)}, workspace.mask_file(self.masks_folder, cycle))
        if rewind_to is None:
            imp.apply(self.model, masks)
        else:
            imp.rewind(self.model, rewind_to, masks)
        self._retrain(cycle, masks)
        self._record("imp", cycle)

    def control_cycle(
        self, cycle: int, start: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> None:
        """Step 1 + ``cycle`` of a control trial: ``masks`` (its twin's at ``cycle``, or drawn
        to match them) on the weights ``start``, retrained as the twin retrains that cycle."""
        self.progress.masks = dict(masks)
        imp.rewind(self.model, start, self.progress.masks)
        self._retrain(cycle, self.progress.masks)
        self._record("imp", cycle, step=1 + cycle)

    def _retrain(self, cycle: int, masks: Mapping[str, torch.Tensor]) -> None:
        train(
            self.model,
            self.data,
            self.config.train,
            device=self.device,
            seed=self.seed + 1 + cycle,
            epochs=self.config.imp.epochs_per_cycle,
            after_step=functools.partial(imp.apply, masks=masks),
            on_iteration=self.iteration_check,
        )

    def _record(self, phase: str, cycle: int, step: int | None = None) -> None:
        measured = _measure(
            self.model,
            self.data,
            self.reference,
            self.progress.plan,
            step=len(self.progress.steps) if step is None else step,
            phase=phase,
            cycle=cycle,
            eval_batch_size=self.config.train.eval_batch_size,
        )
        self.progress.steps.append(measured)
        self.progress.cycle = cycle
        if self.progress_file is not None and measured.step > 0:
            self.progress.save(self.progress_file, self.model)
        self.on_step(measured)

    def result(self, dense_trained: bool) -> TrialResult:
        return TrialResult(
            steps=self.progress.steps,
            model=self.model,
            masks=self.progress.masks,
            plan=self.progress.plan,
            dense_checkpoint="trained" if dense_trained else "cached",
            layers=_layer_table(self.model, self.progress.masks),
        )


def run_trial(
    config: SweepConfig,
    seed: int,
    *,
    device: torch.device | str,
    cache: CheckpointCache,
    on_step: Callable[[Step], None] = lambda step: None,
    check: Callable[[], None] = lambda: None,
    progress_file: Path | None = None,
    control: str | None = None,
    masks_folder: Path | None = None,
) -> TrialResult:
    """Run the seed's procedure for ``config`` (with the trial's parameters) at ``seed``.

    ``check()`` runs after every training iteration and may raise to abort (a time limit).
    With ``progress_file``, the state after every compressed step is saved there, and a run
    that finds the file resumes after the last step it holds (its steps are reported again).

    ``control`` (``plan.RANDOM_MASK`` or ``plan.REINIT``) runs the lottery-ticket control of
    this IMP-only configuration instead (:func:`_run_control`). ``masks_folder``: an IMP-only
    trial saves its masks there after every pruning step; a control reads its twin's there.
    """
    device = torch.device(device)
    data = datasets.load(config.dataset, device=device, seed=seed)
    init, dense, trained = dense_checkpoint(config, seed, data, cache, device, check)
    if control is not None:
        trial = _Phases(config, seed, data, device, dense["state"], on_step, check, None)
        # The twin's rewind point: θ0 or θ_N, which a sweep with controls must rewind to.
        start = _rewind_state(config, data, init["state"], dense, Progress(), seed)
        assert start is not None
        _run_control(trial, control, start, masks_folder)
        return trial.result(trained)
    trial = _Phases(
        config, seed, data, device, dense["state"], on_step, check, progress_file, masks_folder
    )
    saved = _saved_progress(progress_file)
    if saved is not None:
        trial.resume(*saved)
    else:
        trial.dense()
        trial.alds()
    rewind_to = _rewind_state(config, data, init["state"], dense, trial.progress, seed)
    for cycle in range(trial.progress.cycle + 1, config.imp.cycles + 1):
        if trial.target_reached():
            break
        trial.imp_cycle(cycle, rewind_to)
    return trial.result(trained)


def _run_control(
    trial: _Phases, control: str, rewind_point: Mapping[str, torch.Tensor], folder: Path | None
) -> None:
    """A lottery-ticket control of an IMP-only configuration, as open_lth branches one off
    each level: step 0 is the dense network; step 1 + c trains, from the rewind point, the
    twin's masks of cycle c redrawn at random with each layer's sparsity (``random_mask``), or
    from a fresh initialisation the twin's masks themselves (``reinit``), for the epochs the
    twin retrains each cycle, and stops where the twin stopped.
    """
    config, seed = trial.config, trial.seed
    twin = _TwinMasks(folder, lambda: _Phases(*trial.arguments, folder), rewind_point)
    trial.dense()
    start = rewind_point
    if control == plan.REINIT:
        start = imp.capture(_build(config, trial.data, reinit_seed(seed)))
    for cycle in range(1, config.imp.cycles + 1):
        masks = twin.at(cycle)
        if control == plan.RANDOM_MASK:
            masks = imp.shuffle(masks, seed=seed * 1_000 + cycle)
        trial.control_cycle(cycle, start, {k: v.to(trial.device) for k, v in masks.items()})
        if trial.target_reached():
            break


def reinit_seed(seed: int) -> int:
    """The seed of a reinit control's fresh initialisation: never the trial's own, so the
    control never starts from its twin's θ0 (torch seeds with the low 32 bits alone)."""
    return (seed + 2**31) % 2**32


class _TwinMasks:
    """A control's IMP-only twin's masks at each cycle: as the twin saved them in
    ``folder``, else computed here by running the twin's cycles (saving them for the next
    control of the same twin)."""

    def __init__(
        self,
        folder: Path | None,
        make_twin: Callable[[], _Phases],
        rewind_to: Mapping[str, torch.Tensor],
    ) -> None:
        self.folder = folder
        self.make_twin = make_twin
        self.rewind_to = rewind_to
        self.twin: _Phases | None = None

    def at(self, cycle: int) -> dict[str, torch.Tensor]:
        if self.folder is not None:
            path = workspace.mask_file(self.folder, cycle)
            if path.exists():
                try:
                    return dict(load_checkpoint(path)["masks"])
                except CorruptCheckpoint as exc:
                    logger.warning("corrupt twin masks %s (moved to %s)", exc, move_aside(path))
        twin = self.twin
        if twin is None:
            twin = self.twin = self.make_twin()
            twin.alds()
        while twin.progress.cycle < cycle:
            twin.imp_cycle(twin.progress.cycle + 1, self.rewind_to)
        return {name: mask.cpu() for name, mask in twin.progress.masks.items()}


def _ignore(step: Step) -> None:
    pass


def _saved_progress(
    progress_file: Path | None,
) -> tuple[Progress, dict[str, torch.Tensor]] | None:
    """The progress a retry resumes from; ``None`` when there is none or it is corrupt (then
    it is moved aside and the trial starts again from the dense network)."""
    if progress_file is None or not progress_file.exists():
        return None
    try:
        return Progress.load(progress_file)
    except CorruptCheckpoint as exc:
        moved = move_aside(progress_file)
        logger.warning(
            "corrupt trial progress %s; moved to %s, starting the trial over", exc, moved
        )
        return None


def _call_check(check: Callable[[], None], iteration: int, model: nn.Module) -> None:
    check()


def _layer_table(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
    report = imp.sparsity(model, masks)
    return [{"layer": name, **values} for name, values in report["layers"].items()]

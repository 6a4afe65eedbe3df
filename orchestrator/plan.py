"""What a sweep asks for: its configurations, the IMP-only twin of each, the grid, the budget.

A configuration maps every searched path (``alds.rate``, ``imp.prune_fraction``, ...) to a
value and runs once per seed. The seed's question pairs each ALDS configuration with its twin:
the same configuration at ALDS rate 0 (plain IMP), the same schedule, training and seed, so
the two differ by ALDS alone. Whether a rate means ALDS, and how an arm is named, is decided
here once (:func:`is_alds`, :func:`arm`, :func:`arm_label`) for the queue, the worker, tracking
and the report.

The schema (:mod:`orchestrator.config`) validates a sweep with :func:`check`, so this module
sits below it: it reads a config through the few fields :class:`Sweep` names, and imports no
other part of the orchestrator but :mod:`orchestrator.stored_names`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, Protocol

from orchestrator import stored_names

# The seed's two knobs, by the dotted path a search space, a trial's params and MLflow use.
ALDS_RATE = "alds.rate"
PRUNE_FRACTION = "imp.prune_fraction"
IMP_ONLY = "IMP only"  # the baseline arm, as tables, figures and run names show it
# The lottery-ticket controls (imp.controls). A control trial's parameters are its IMP-only
# configuration's plus CONTROL, a path no config field has: its key, label and run differ from
# the configuration's, and a trial's spec takes it off to build the trial's config
# (``trial.spec.TrialSpec.configuration``).
CONTROL = "imp.control"
Control = Literal["random_mask", "reinit"]  # the type of imp.controls' items
RANDOM_MASK: Final[Control] = "random_mask"
REINIT: Final[Control] = "reinit"
CONTROLS: tuple[Control, ...] = (RANDOM_MASK, REINIT)

__all__ = [
    "ALDS_RATE",
    "CONTROL",
    "CONTROLS",
    "IMP_ONLY",
    "PRUNE_FRACTION",
    "AldsSection",
    "Control",
    "ImpSection",
    "ReportSection",
    "SearchSection",
    "SequentialSection",
    "SpaceRange",
    "Sweep",
    "all_seeds",
    "arm",
    "arm_label",
    "asks_for",
    "budget",
    "check",
    "configuration_name",
    "control_configurations",
    "control_of",
    "describe",
    "fixed_configurations",
    "fixed_controls",
    "is_alds",
    "most_sampled_twins",
    "prunable",
    "rate_of",
    "reachable_sparsity",
    "space_size",
    "total_trials",
    "twin_of",
    "without_control",
]


# What the plan reads of a sweep's config, section by section: an
# ``orchestrator.config.SweepConfig`` is a Sweep (mypy checks it where one is passed here).


class SpaceRange(Protocol):
    """The values one searched field may take (``orchestrator.config.SearchRange``)."""

    @property
    def choices(self) -> Sequence[Any] | None: ...

    @property
    def low(self) -> float | None: ...

    @property
    def high(self) -> float | None: ...

    @property
    def step(self) -> float | None: ...

    def values(self) -> list[Any]: ...


class SearchSection(Protocol):
    """The search: its space, sampler, enqueued configurations and budget."""

    @property
    def space(self) -> Mapping[str, SpaceRange]: ...

    @property
    def sampler(self) -> str: ...

    @property
    def enqueue(self) -> Sequence[Mapping[str, Any]]: ...

    @property
    def enqueue_baseline(self) -> bool: ...

    @property
    def n_trials(self) -> int | None: ...

    @property
    def objective(self) -> Sequence[object]: ...

    @property
    def pruner(self) -> str: ...


class AldsSection(Protocol):
    """The ALDS section: its rate."""

    @property
    def rate(self) -> float: ...


class ImpSection(Protocol):
    """The IMP section: its lottery-ticket controls and its prune fraction."""

    @property
    def controls(self) -> Sequence[Control]: ...

    @property
    def prune_fraction(self) -> float: ...


class SequentialSection(Protocol):
    """A sweep that decides: the most seeds a configuration gets."""

    @property
    def max_seeds(self) -> int: ...


class ReportSection(Protocol):
    """The report section: the equivalence margin a sequential sweep decides with."""

    @property
    def margin(self) -> float | None: ...


class Sweep(Protocol):
    """What the plan reads of a sweep's config (an ``orchestrator.config.SweepConfig``)."""

    @property
    def seeds(self) -> tuple[int, ...]: ...

    @property
    def sequential(self) -> SequentialSection | None: ...

    @property
    def report(self) -> ReportSection: ...

    @property
    def search(self) -> SearchSection: ...

    @property
    def alds(self) -> AldsSection: ...

    @property
    def imp(self) -> ImpSection: ...

    def value_at(self, path: str) -> Any: ...


# --------------------------------------------------------------------------- the arm


def prunable(config: Sweep, rate: float) -> bool:
    """Whether the study's pruner may stop a trial at ALDS rate ``rate`` of this sweep.

    Only in a single-objective sweep with a pruner, and never an IMP-only trial: it is the
    twin its ALDS configurations are paired with (a pruned twin leaves them unpaired, the
    comparison the sweep exists for lost), and the reference a pruner measures them by.

    Args:
        config: the sweep.
        rate: the trial's ALDS rate.
    """
    search = config.search
    return len(search.objective) == 1 and search.pruner != "none" and bool(is_alds(rate))


def is_alds(rate: Any) -> Any:
    """Whether a configuration at ALDS rate ``rate`` runs ALDS; rate 0 is IMP only, the twin.

    Args:
        rate: an ALDS rate, or a pandas column or NumPy array of them.

    Returns:
        A bool, or a boolean column of the same shape.
    """
    return rate > 0


def rate_of(config: Sweep, params: Mapping[str, Any]) -> float:
    """The ALDS rate of the configuration ``params`` (the config's own when not searched)."""
    return float(params.get(ALDS_RATE, config.alds.rate))


def arm(rate: float, control: str | None = None) -> str:
    """The stored arm of a trial at ``rate``: ``stored_names.ARM_ALDS``,
    ``stored_names.ARM_BASELINE``, or ``stored_names.ARM_CONTROL`` for a control trial
    (``control``)."""
    if control is not None:
        return stored_names.ARM_CONTROL
    return stored_names.ARM_ALDS if is_alds(rate) else stored_names.ARM_BASELINE


def arm_label(rate: float, control: str | None = None) -> str:
    """The arm as people read it: ``ALDS 0.3``, ``IMP only`` or ``control random_mask``."""
    if control is not None:
        return f"control {control}"
    return f"ALDS {rate:g}" if is_alds(rate) else IMP_ONLY


def configuration_name(config: Sweep, params: Mapping[str, Any]) -> str:
    """A configuration as people read it, the one name the status, the failures, the MLflow
    runs and the report's tables, notes and figures give it: ``ALDS 0.3 · prune 0.2``,
    ``IMP only · prune 0.2`` or ``control reinit · prune 0.2``, other searched fields by their
    last name.

    Args:
        config: the sweep's config (the prune fraction where it is not searched).
        params: the configuration's searched parameters by dotted path, as stored.
    """
    plain = without_control(params)
    fraction = plain.get(PRUNE_FRACTION, config.imp.prune_fraction)
    parts = [arm_label(rate_of(config, plain), control_of(params)), f"prune {fraction:g}"]
    for path, value in plain.items():
        if path not in (ALDS_RATE, PRUNE_FRACTION):
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            parts.append(f"{path.rsplit('.', 1)[-1]} {shown}")
    return " · ".join(parts)


# --------------------------------------------------------------------------- the controls


def control_of(params: Mapping[str, Any]) -> str | None:
    """The control a trial's parameters name (:data:`CONTROL`), or None for a plain trial."""
    return params.get(CONTROL)


def without_control(params: Mapping[str, Any]) -> dict[str, Any]:
    """A control trial's IMP-only configuration: its parameters less :data:`CONTROL`."""
    return {path: value for path, value in params.items() if path != CONTROL}


def control_configurations(
    config: Sweep, configurations: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The control trials' parameters for ``configurations``: every IMP-only one with each
    control of ``imp.controls``, in that order (run once per seed, as every configuration)."""
    return [
        {**params, CONTROL: control}
        for params in configurations
        if not is_alds(rate_of(config, params))
        for control in config.imp.controls
    ]


# --------------------------------------------------------------------------- configurations


def fixed_configurations(config: Sweep) -> list[dict[str, Any]]:
    """The configurations enqueued before any is sampled, each run once per seed.

    Each maps every searched path to a value: the user's ``search.enqueue`` entries (paths
    they leave out take the config's own value), then the IMP-only baseline at the config's
    own values, then, for the grid sampler, every grid point; then the IMP-only twin
    (:func:`twin_of`) of every ALDS configuration among them. The baseline and the twins come
    when ``alds.rate`` is searched and ``search.enqueue_baseline`` is on. Duplicates are
    dropped.
    """
    search = config.search
    defaults = {path: config.value_at(path) for path in search.space}
    entries = [{**defaults, **entry} for entry in search.enqueue]
    pairs = _pairs(config)
    if pairs:
        entries.append({**defaults, ALDS_RATE: 0.0})
    if search.sampler == "grid":
        entries += [dict(zip(search.space, point, strict=True)) for point in _grid(config)]
    if pairs:
        # An IMP-only configuration is its own twin: the fields that mean nothing without
        # ALDS take the twin's values, so a grid over them runs the baseline once.
        entries = [e if is_alds(e[ALDS_RATE]) else twin_of(config, e) for e in entries]
        entries += [twin_of(config, e) for e in entries if is_alds(e[ALDS_RATE])]
    unique: dict[str, dict[str, Any]] = {}
    for entry in entries:
        unique.setdefault(json.dumps(entry, sort_keys=True), entry)
    return list(unique.values())


def twin_of(config: Sweep, params: Mapping[str, Any]) -> dict[str, Any]:
    """The searched parameters of the IMP-only twin of a configuration: ``alds.rate`` 0,
    every IMP and training field the same, so the two differ by ALDS alone.

    The other searched ``alds.*`` fields mean nothing without ALDS and take one value for
    every twin (the config's own, or the first in their space), so configurations that differ
    only there share one twin; ``alds.finetune_epochs`` stays, since both arms of a comparison
    get the same training.
    """
    twin = dict(params)
    for path, space in config.search.space.items():
        if path == ALDS_RATE:
            twin[path] = 0.0
        elif path.startswith("alds.") and path != "alds.finetune_epochs":
            own = config.value_at(path)
            twin[path] = own if _inside(own, space) else space.values()[0]
    return twin


def asks_for(config: Sweep, params: Mapping[str, Any]) -> bool:
    """Whether the configuration ``params`` is one the sweep plans: it sets exactly the
    searched paths, each inside its space, and for a grid it is one of the grid's
    configurations (a trial of an earlier YAML may be neither); a control, of an IMP-only
    configuration the sweep plans, is one ``imp.controls`` lists."""
    control = control_of(params)
    if control is not None:
        plain = without_control(params)
        return (
            control in config.imp.controls
            and not is_alds(rate_of(config, plain))
            and asks_for(config, plain)
        )
    space = config.search.space
    if set(params) != set(space):
        return False
    if config.search.sampler == "grid":
        return json.dumps(dict(params), sort_keys=True) in _grid_configurations(config)
    return all(_inside(value, space[path]) for path, value in params.items())


# The grid's configurations of the few configs a process holds, as JSON: the report and the
# progress display ask for every trial of a sweep.
_GRIDS: dict[int, tuple[Sweep, set[str]]] = {}


def _grid_configurations(config: Sweep) -> set[str]:
    held = _GRIDS.get(id(config))
    if held is None or held[0] is not config:
        if len(_GRIDS) > 32:
            _GRIDS.clear()
        found = {json.dumps(c, sort_keys=True) for c in fixed_configurations(config)}
        held = _GRIDS[id(config)] = (config, found)
    return held[1]


def _pairs(config: Sweep) -> bool:
    """Whether the sweep enqueues IMP-only twins (it searches the ALDS rate and asks for them)."""
    return config.search.enqueue_baseline and ALDS_RATE in config.search.space


def _bounds(space: SpaceRange) -> tuple[float, float]:
    """The low and high of a range without choices (the schema sets both there)."""
    if space.low is None or space.high is None:
        raise ValueError("a range needs both 'low' and 'high' (or 'choices')")
    return space.low, space.high


def _inside(value: Any, space: SpaceRange) -> bool:
    if space.choices is not None:
        return value in space.choices
    low, high = _bounds(space)
    return isinstance(value, int | float) and low <= value <= high


def reachable_sparsity(config: Sweep) -> tuple[float, float, int, float]:
    """The sparsity every trial of the sweep can reach at most: its least-compressing
    configuration's ALDS rate (0 where it runs IMP-only twins), then its IMP cycles at the
    least prune fraction (IMP leaves biases and some layers less pruned, so trials reach at
    most this).

    Returns:
        (that sparsity, the rate, the cycles, the prune fraction) it is computed from.
    """
    rate = 0.0 if _pairs(config) else _least(config, ALDS_RATE)
    cycles = int(_least(config, "imp.cycles"))
    fraction = _least(config, PRUNE_FRACTION)
    return 1 - (1 - rate) * (1 - fraction) ** cycles, rate, cycles, fraction


def _least(config: Sweep, path: str) -> float:
    """The smallest value ``path`` takes in the sweep: its own, or the least of its space."""
    space = config.search.space.get(path)
    if space is None:
        return float(config.value_at(path))
    return float(min(space.choices) if space.choices is not None else space.low or 0.0)


def space_size(config: Sweep) -> int | None:
    """How many configurations the search space holds: the grid's points where every
    parameter has choices or a step; None where one is continuous."""
    space = config.search.space.values()
    if not space or any(s.choices is None and s.step is None for s in space):
        return None
    return len(_grid(config))


def _grid(config: Sweep) -> list[tuple[Any, ...]]:
    axes = []
    for path, space in config.search.space.items():
        if space.choices is not None:
            axes.append(list(space.choices))
        elif space.step is None:
            raise ValueError(f"search.space.{path}: the grid sampler needs 'choices' or a 'step'")
        else:
            low, high = _bounds(space)
            count = round((high - low) / space.step) + 1
            axes.append([round(low + i * space.step, 10) for i in range(count)])
    return list(itertools.product(*axes)) if axes else []


# --------------------------------------------------------------------------- the budget


def total_trials(config: Sweep) -> int:
    """Trials the study runs in all: ``search.n_trials`` or, for a grid, the whole grid, and
    the controls of its enqueued IMP-only configurations (:func:`fixed_controls`)."""
    return budget(config) + fixed_controls(config)


def budget(config: Sweep) -> int:
    """The trials of the sweep's configurations, controls left out: ``search.n_trials``, or
    the configurations it enqueues (at least 10 when it samples) × seeds."""
    if config.search.n_trials is not None:
        return config.search.n_trials
    fixed = len(fixed_configurations(config))
    configurations = fixed if config.search.sampler == "grid" else max(fixed, 10)
    return configurations * len(config.seeds)


def fixed_controls(config: Sweep) -> int:
    """The control trials of the enqueued configurations: each control of ``imp.controls``
    for every IMP-only configuration, at every seed."""
    return len(control_configurations(config, fixed_configurations(config))) * len(config.seeds)


def most_sampled_twins(config: Sweep) -> int:
    """The most IMP-only twins the sampled configurations can add to :func:`total_trials`
    (one per seed for each, when its schedule has none yet), their controls included."""
    if config.search.sampler == "grid" or not _pairs(config):
        return 0
    seeds = len(config.seeds)
    sampled = budget(config) // seeds - len(fixed_configurations(config))
    return max(sampled, 0) * seeds * (1 + len(config.imp.controls))


def describe(config: Sweep) -> str:
    """The trials a sweep runs, as its start and ``validate`` print it."""
    extra = most_sampled_twins(config)
    controls = fixed_controls(config)
    parts = [f"{controls} controls"] if controls else []
    if extra:
        kinds = "and their controls " if config.imp.controls else ""
        parts.append(f"+ up to {extra} IMP-only twins {kinds}of sampled configurations")
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{total_trials(config)} trials{detail}"


# --------------------------------------------------------------------------- validation


def all_seeds(config: Sweep) -> tuple[int, ...]:
    """Every seed the sweep may run: the listed ones and, for a sequential sweep, those a look
    may add (upward from the largest listed one, up to ``sequential.max_seeds``)."""
    if config.sequential is None:
        return config.seeds
    first = max(config.seeds) + 1
    return (*config.seeds, *range(first, first + config.sequential.max_seeds - len(config.seeds)))


def check(config: Sweep) -> None:
    """Raise ``ValueError`` naming the field when the plan cannot be run: an enqueued or
    baseline configuration outside the search space, a trial budget that does not fit the
    configurations and seeds, or a sequential sweep without its margin or with fewer
    ``max_seeds`` than listed seeds."""
    _check_inside_space(config)
    _check_budget(config)
    _check_sequential(config)


def _check_sequential(config: Sweep) -> None:
    if config.sequential is None:
        return
    if config.report.margin is None:
        raise ValueError(
            "sequential needs report.margin: the margin decides which configurations are equivalent"
        )
    if config.sequential.max_seeds < len(config.seeds):
        raise ValueError(
            f"sequential.max_seeds ({config.sequential.max_seeds}) is smaller than the "
            f"{len(config.seeds)} listed seeds (the first look)"
        )


def _check_inside_space(config: Sweep) -> None:
    search = config.search
    defaults = {path: config.value_at(path) for path in search.space}
    entries = [(f"search.enqueue[{i}]", {**defaults, **e}) for i, e in enumerate(search.enqueue)]
    if _pairs(config):
        entries.append(("search.enqueue_baseline", {**defaults, ALDS_RATE: 0.0}))
        entries += [
            ("search.enqueue_baseline", twin_of(config, entry))
            for _, entry in list(entries)
            if isinstance(entry[ALDS_RATE], int | float) and is_alds(entry[ALDS_RATE])
        ]
    for where, entry in entries:
        for path, value in entry.items():
            if _inside(value, search.space[path]):
                continue
            hint = ""
            if where == "search.enqueue_baseline":
                hint = (
                    " (let the space include 0.0, or set enqueue_baseline: false)"
                    if path == ALDS_RATE
                    else f" (the baseline takes the config's {path}: set it inside the "
                    "range, or set enqueue_baseline: false)"
                )
            raise ValueError(f"{where}: {path} = {value!r} lies outside search.space.{path}{hint}")


def _check_budget(config: Sweep) -> None:
    fixed = len(fixed_configurations(config))  # a grid it cannot enumerate is refused here
    n_trials = config.search.n_trials
    if n_trials is None:
        return
    seeds = len(config.seeds)
    if n_trials % seeds:
        raise ValueError(
            f"search.n_trials ({n_trials}) must be a multiple of the {seeds} seeds: every "
            "configuration runs once per seed"
        )
    if n_trials < fixed * seeds:
        raise ValueError(
            f"search.n_trials ({n_trials}) is smaller than the {fixed} enqueued "
            f"configurations x {seeds} seeds = {fixed * seeds}"
        )
    if config.search.sampler == "grid" and n_trials != fixed * seeds:
        raise ValueError(
            f"search.n_trials ({n_trials}) must equal the grid's {fixed} configurations x "
            f"{seeds} seeds = {fixed * seeds}, or be left out"
        )

"""A sequential sweep's looks: from the study's finished trials, each ALDS configuration's
state (open at n seeds, or decided at which look) and the seeds every configuration needs.

A look is a pure function of the trials: the decision at look k reads only the COMPLETE trials
of the configuration and its twin at the look's seeds, which never change once finished. Any
worker, on any host, reaches the same decisions from the same trials: a worker that finishes a
trial looks, under the storage's creation lock, and enqueues what the open configurations need
next (``execution.worker.Worker.look``); a worker killed after deciding and before enqueueing
leaves nothing half-done, since the next look decides the same and enqueues what is missing.
The decisions made are kept in the study (:func:`records`) so that one stays made when the
design later grows (a larger ``max_seeds`` moves every boundary); only an "undecided" reopens.
A configuration with a result from another sweep counts it as a seed (it is COMPLETE here once
copied).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator import plan, stored_names
from orchestrator.config import SweepConfig
from orchestrator.curve import curve_of, curve_points, mean_between
from orchestrator.report import planner, sequential
from orchestrator.report.sequential import Design
from orchestrator.sweep_file import describe_params
from orchestrator.trial.spec import TrialSpec, twin_configuration

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = [
    "Curve",
    "State",
    "configurations_of",
    "curves_of",
    "design",
    "family",
    "look",
    "needs",
    "plan_lines",
    "records",
    "states",
]

Curve = tuple[list[int], list[float], list[float]]


@dataclass(frozen=True)
class State:
    """One ALDS configuration at the sweep's latest look.

    Attributes:
        config: its label (``alds.rate=0.3``), as the report names it.
        params: its searched parameters.
        decision: a code of :mod:`sequential` (``OPEN`` while it waits for its seeds).
        look: the look it was decided at, or the look it waits for (0 the first).
        seeds: the seeds of that look.
        needs: the seeds it needs run (those of that look).
        mean, ci_low, ci_high: the paired difference's mean and repeated interval at the
            look decided (NaN while open).
        std: the paired differences' standard deviation there.
    """

    config: str
    params: Mapping[str, Any]
    decision: int
    look: int
    seeds: int
    needs: tuple[int, ...]
    mean: float = math.nan
    std: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan

    @property
    def decided(self) -> bool:
        return self.decision != sequential.OPEN

    def describe(self, margin: float) -> str:
        """``open at 4 seeds`` or ``equivalent within ±0.5 pt at look 2 (5 seeds)``."""
        if not self.decided:
            return f"open, waiting for {self.seeds} seeds (look {self.look + 1})"
        return (
            f"{sequential.words(self.decision, margin)} at look {self.look + 1} "
            f"({self.seeds} seeds)"
        )


def family(config: SweepConfig) -> list[dict[str, Any]]:
    """The sweep's ALDS configurations known before any is sampled (each raced against its
    twin)."""
    seed = config.seeds[0]
    return [p for p in plan.fixed_configurations(config) if TrialSpec(config, p, seed).is_alds]


def design(config: SweepConfig) -> Design:
    """The sweep's sequential design: its looks over the family of every ALDS configuration
    it plans (the fixed ones and the placeholders still to sample)."""
    sequential_section = config.sequential
    assert sequential_section is not None and config.report.margin is not None
    fixed = plan.fixed_configurations(config)
    sampled = max(plan.budget(config) // len(config.seeds) - len(fixed), 0)
    return Design(
        first=len(config.seeds),
        step=sequential_section.step,
        max_seeds=sequential_section.max_seeds,
        alpha=sequential_section.alpha,
        family_size=max(len(family(config)) + sampled, 1),
        margin=config.report.margin / 100,
        kind=sequential_section.spending,
    )


def curves_of(trials: Iterable[FrozenTrial]) -> dict[str, dict[int, Curve]]:
    """The COMPLETE trials' kept curves (step, sparsity, accuracy) by configuration label and
    seed, the first of two."""
    found: dict[str, dict[int, Curve]] = {}
    for trial in trials:
        if trial.state.name != "COMPLETE" or not trial.params:
            continue
        rows = curve_of(trial)
        if not rows:
            continue
        seed = int(trial.user_attrs[stored_names.TRIAL_SEED])
        curve = (
            [int(row["step"]) for row in rows],
            [float(row.get("sparsity", math.nan)) for row in rows],
            [float(row.get("accuracy", math.nan)) for row in rows],
        )
        found.setdefault(describe_params(trial.params), {}).setdefault(seed, curve)
    return found


def _differences(
    ours: Mapping[Any, Curve],
    theirs: Mapping[Any, Curve],
    seeds: Sequence[int],
    level: float | None,
) -> np.ndarray:
    """Per seed, the primary endpoint's paired difference (as ``compare.endpoint_table``
    reads a pair: the mean accuracy over the range both arms reach at every seed of the look,
    or the accuracy at ``level``)."""
    spans = [curve_points(*arm[seed])[0] for arm in (ours, theirs) for seed in seeds]
    if any(len(span) == 0 for span in spans):
        return np.full(len(seeds), math.nan)
    low, high = max(span[0] for span in spans), min(span[-1] for span in spans)
    if level is not None:
        low = high = level
    return np.array(
        [mean_between(*ours[s], low, high) - mean_between(*theirs[s], low, high) for s in seeds]
    )


def states(
    config: SweepConfig,
    curves: Mapping[str, Mapping[Any, Curve]],
    configurations: Sequence[Mapping[str, Any]],
    decided: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[State]:
    """Each ALDS configuration's state at the latest look its trials allow: decided at the
    first look whose repeated interval decides it, or open, waiting for the next look's
    seeds.

    Args:
        config: the sweep's config (its design).
        curves: the finished trials' curves by configuration label and seed (:func:`curves_of`
            from the study, or the report's steps).
        configurations: the ALDS configurations raced (:func:`configurations_of`).
        decided: the decisions made before (:func:`records`, as the study keeps them): each
            stays, but an ``undecided`` made with fewer ``max_seeds`` than now, which looks
            again beyond the seeds it had.
    """
    the_design = design(config)
    seeds = plan.all_seeds(config)
    found = []
    for params in configurations:
        label = describe_params(params)
        record = (decided or {}).get(label)
        if record is not None and _stands(record, the_design):
            found.append(_from_record(label, params, record, seeds))
            continue
        had = int(record["seeds"]) if record is not None else 0
        ours = curves.get(label, {})
        theirs = curves.get(describe_params(twin_configuration(config, params)) or "default", {})
        state = None
        for look, n in enumerate(the_design.looks):
            if n <= had and n != the_design.looks[-1]:
                continue  # looked at under the design before it grew
            wanted = seeds[:n]
            if not all(s in ours and s in theirs for s in wanted):
                state = State(describe_params(params), params, sequential.OPEN, look, n, wanted)
                break
            differences = _differences(ours, theirs, wanted, config.report.level)
            mean = float(np.mean(differences))
            std = float(np.std(differences, ddof=1)) if n > 1 else math.nan
            decision, low, high = the_design.decide(mean, 0.0 if math.isnan(std) else std, look)
            if int(decision) != sequential.OPEN:
                state = State(
                    describe_params(params),
                    params,
                    int(decision),
                    look,
                    n,
                    wanted,
                    mean,
                    std,
                    float(low),
                    float(high),
                )
                break
        assert state is not None  # the last look decides or leaves it undecided
        found.append(state)
    return found


def _stands(record: Mapping[str, Any], the_design: Design) -> bool:
    """Whether a decision made before stands: every decision does, but "undecided" made
    with fewer ``max_seeds`` than the design now has."""
    reopened = int(record["max_seeds"]) < the_design.max_seeds
    return not (int(record["decision"]) == sequential.UNDECIDED and reopened)


def _from_record(
    label: str, params: Mapping[str, Any], record: Mapping[str, Any], seeds: Sequence[int]
) -> State:
    n = int(record["seeds"])
    return State(
        label,
        params,
        int(record["decision"]),
        int(record["look"]),
        n,
        tuple(seeds[:n]),
        *(float(record[k]) for k in ("mean", "std", "ci_low", "ci_high")),
    )


def records(config: SweepConfig, found: Sequence[State]) -> dict[str, dict[str, Any]]:
    """The decided states as the study keeps them (:data:`stored_names.STUDY_DECISIONS`),
    with the ``max_seeds`` they were decided under."""
    assert config.sequential is not None
    return {
        state.config: {
            "decision": state.decision,
            "look": state.look,
            "seeds": state.seeds,
            "mean": state.mean,
            "std": state.std,
            "ci_low": state.ci_low,
            "ci_high": state.ci_high,
            "max_seeds": config.sequential.max_seeds,
        }
        for state in found
        if state.decided
    }


def configurations_of(
    config: SweepConfig, chosen: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The ALDS configurations raced: the fixed ones, then those of ``chosen`` (the sampled
    configurations' parameters) the sweep asks for, first chosen first."""
    fixed = family(config)
    known = {describe_params(p) for p in plan.fixed_configurations(config)}
    found: dict[str, dict[str, Any]] = {}
    for params in chosen:
        label = describe_params(params)
        alds = TrialSpec(config, params, config.seeds[0]).is_alds
        if label not in known and alds and plan.asks_for(config, params):
            found.setdefault(label, dict(params))
    return fixed + list(found.values())


def look(
    config: SweepConfig,
    trials: Sequence[FrozenTrial],
    decided: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[State]:
    """The states at the latest look of a study's trials (the sweep's, ``growth.in_sweep``),
    with the decisions it made before (``decided``, :func:`records`)."""
    chosen = [
        t.params
        for t in sorted(trials, key=lambda t: t.number)
        if stored_names.TRIAL_SLOT in t.user_attrs and t.params
    ]
    return states(config, curves_of(trials), configurations_of(config, chosen), decided)


def needs(config: SweepConfig, found: Sequence[State]) -> dict[str, tuple[int, ...]]:
    """The seeds each configuration needs, by its label (:func:`describe_params`): an ALDS
    configuration its look's; a twin the seeds of every configuration it serves; every other
    configuration (a control) the listed seeds. What ``growth.assess`` plans from."""
    needed: dict[str, tuple[int, ...]] = {}
    for state in found:
        needed[state.config] = state.needs
        twin = describe_params(twin_configuration(config, state.params))
        needed[twin] = tuple(sorted({*needed.get(twin, ()), *state.needs}))
    return needed


def plan_lines(config: SweepConfig) -> list[str]:
    """What ``validate`` says of a sequential sweep: its looks, the boundary at each, the most
    trials it can cost, and its expected cost by simulation at assumed spreads."""
    the_design = design(config)
    difference, equivalence = the_design.nominal_levels()
    boundary = ", ".join(
        f"{n}: {d:.2g}/{e:.2g}"
        for n, d, e in zip(the_design.looks, difference, equivalence, strict=True)
    )
    arms = len(plan.fixed_configurations(config))
    most = arms * the_design.max_seeds
    lines = [
        f"sequential: looks at {', '.join(map(str, the_design.looks))} seeds; each of the "
        f"{the_design.family_size} ALDS configuration(s) decided against its twin at family-wise "
        f"alpha {the_design.alpha:g} ({config.sequential.spending if config.sequential else ''} "
        f"spending); each look's nominal levels (seeds: difference two-sided/equivalence "
        f"one-sided) {boundary}",
    ]
    rng = np.random.default_rng(0)
    margin = the_design.margin
    costs = []
    for spread in planner.SPREADS:
        size = the_design.family_size
        _, used = sequential.simulate(the_design, [0.0] * size, [spread * margin] * size, 400, rng)
        # The twin runs every seed a configuration of the sweep runs.
        costs.append(f"paired std {spread * 100 * margin:g} pt: {used.mean():.1f} seeds")
    lines.append(
        f"at most {most} trials ({arms} configurations × {the_design.max_seeds} seeds); "
        "expected seeds per configuration with no true difference (simulated): " + "; ".join(costs)
    )
    return lines


DECISION_COLUMNS = [
    "config",
    "baseline",
    "decision",
    "look",
    "seeds",
    "difference_mean",
    "difference_std",
    "ci_low",
    "ci_high",
    "ci_level",
    "fixed_seeds",
    "trials_saved",
    "planned",
]


def decisions_table(
    config: SweepConfig,
    steps: Any,
    params: Sequence[str],
    decided: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """The report's ``decisions`` table: per ALDS configuration of a sequential sweep, its
    decision (or ``open``), the look and seeds it was made at, the repeated interval it was
    made on (``ci_level``: that look's two-sided level), and against the fixed design of the
    same power (the planner's seeds at ``report.power`` for the decision reached, from the
    spread measured) the seeds it saved; an undecided one says the seeds the planner asks.
    Empty for a sweep of fixed seeds.

    Args:
        config: the sweep's config.
        steps: the labelled steps of the finished trials (``config``, ``seed``, ``step``,
            ``sparsity``, ``accuracy`` and the searched parameters).
        params: the searched parameters' paths.
        decided: the decisions the study keeps (:func:`records`); without them (a report
            rebuilt from its export), the looks are made again from the steps.
    """
    import pandas as pd

    if config.sequential is None or config.report.margin is None or steps.empty:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    curves: dict[str, dict[int, Curve]] = {}
    for (label, seed), rows in steps.sort_values("step").groupby(["config", "seed"]):
        curve = (rows["step"].tolist(), rows["sparsity"].tolist(), rows["accuracy"].tolist())
        curves.setdefault(str(label), {})[int(seed)] = curve
    present = [p for p in params if p in steps]
    chosen = [
        {p: row[p].item() if isinstance(row[p], np.generic) else row[p] for p in present}
        for row in steps.drop_duplicates("config")[present].to_dict("records")
    ]
    the_design = design(config)
    levels, _ = the_design.nominal_levels()
    margin = the_design.margin
    rows = []
    for state in states(config, curves, configurations_of(config, chosen), decided):
        plan_of = None
        if state.decided and not math.isnan(state.std):
            plan_of = planner.plan_seeds(
                state.std, state.seeds, margin, the_design.family_size, config.report.power
            )
        fixed = None
        if plan_of is not None and state.decision != sequential.UNDECIDED:
            equivalent = state.decision == sequential.EQUIVALENT
            fixed = (plan_of.equivalence if equivalent else plan_of.difference)[0]
        rows.append(
            {
                "config": state.config,
                "baseline": describe_params(twin_configuration(config, state.params)) or "default",
                "decision": sequential.words(state.decision, margin),
                "look": state.look + 1,
                "seeds": state.seeds,
                "difference_mean": state.mean,
                "difference_std": state.std,
                "ci_low": state.ci_low,
                "ci_high": state.ci_high,
                "ci_level": 1.0 - float(levels[state.look]) if state.decided else math.nan,
                "fixed_seeds": fixed if fixed is not None else math.nan,
                "trials_saved": fixed - state.seeds if fixed is not None else math.nan,
                "planned": plan_of.describe()
                if plan_of is not None and state.decision == sequential.UNDECIDED
                else "",
            }
        )
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)

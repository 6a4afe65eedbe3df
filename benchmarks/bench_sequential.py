"""The error rates and the cost of a sweep that decides (``sequential:``), by simulation.

Simulates sweeps of 3 to 6 ALDS configurations, each against its IMP-only twin, with paired
differences drawn normal, with the standard deviations the published sweeps measured
(``docs/results/*/endpoint.csv``), and decided by the code a sweep's look runs
(``orchestrator.report.sequential``). Prints, for each spending function:

- the family-wise rate of a wrong "better"/"worse" when every true effect is 0, and of a wrong
  "equivalent" when every true effect is ±margin, each with its 95% (Clopper-Pearson) interval;
- per configuration, the mean and 90th percentile of the seeds used, and the seeds of the fixed
  design that reaches the same power (the chance of the right decision: equivalent for a true
  effect inside the margin, the difference's sign outside), computed exactly with the
  planner; and the trials of a sweep (configurations and the twin) against the fixed design's.

Run: ``.venv/bin/python benchmarks/bench_sequential.py [--sweeps 10000] [--max-seeds 15]``.
"""

from __future__ import annotations

import argparse
import functools
import glob
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from orchestrator.report import planner, sequential

ROOT = Path(__file__).resolve().parent.parent
MARGIN = 0.005  # half a point, the published sweeps' margin
EFFECTS = (0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0)  # in margins
BLOCK = 250  # sweeps simulated with one draw of the configurations' spreads


def published_stds() -> np.ndarray:
    """The paired standard deviations of the published sweeps' primary endpoints."""
    found = [
        pd.read_csv(path)["difference_std"].dropna()
        for path in sorted(glob.glob(str(ROOT / "docs/results/*/endpoint.csv")))
        if "/family/" not in path
    ]
    return np.concatenate([np.asarray(values, dtype=float) for values in found])


def right(decision: np.ndarray, effect: np.ndarray, margin: float) -> np.ndarray:
    """Whether each decision is right for its true effect: its sign, where it is not 0;
    equivalent, where it is inside the margin (both are right for 0 < |effect| < margin)."""
    sign = np.where(effect > 0, sequential.BETTER, sequential.WORSE)
    signed = (effect != 0) & (decision == sign)
    inside = (np.abs(effect) < margin) & (decision == sequential.EQUIVALENT)
    return signed | inside


@functools.lru_cache(maxsize=100_000)
def fixed_seeds(std: float, effect: float, margin: float, level: float, power: float) -> int:
    """The seeds of the fixed design (the report's rule at one look, at the family's level
    ``level``) whose chance of the right decision (:func:`right`) reaches ``power``; a fixed
    design's chance of "equivalent" at a true 0 never exceeds 1 − level (a difference shown
    takes precedence), so the power asked is capped just below it."""
    if effect == 0:
        reach = 1.0 - level - 0.005

        def chance(n: int) -> float:
            return planner.power_of_equivalence(n, std, margin, level)

    elif abs(effect) < margin:
        reach = 0.995

        def chance(n: int) -> float:
            equivalent = planner.power_of_equivalence(n, std, margin, level, difference=effect)
            return equivalent + planner.power_of_difference(n, std, abs(effect), level)

    else:
        reach = 0.995

        def chance(n: int) -> float:
            return planner.power_of_difference(n, std, abs(effect), level)

    wanted = min(power, reach)
    n = planner.MIN_SEEDS
    while chance(n) < wanted and n < 10_000:
        n += 1 if n < 50 else n // 10
    return n


def binomial(hits: int, total: int) -> str:
    """A rate with its 95% Clopper-Pearson interval."""
    low = stats.beta.ppf(0.025, hits, total - hits + 1) if hits else 0.0
    high = stats.beta.ppf(0.975, hits + 1, total - hits) if hits < total else 1.0
    return f"{hits / total:.4f} [{low:.4f}, {high:.4f}]"


def run(
    sweeps: int, max_seeds: int, kind: str, seed: int = 0, first: int = 3, alpha: float = 0.05
) -> dict[str, object]:
    """Simulate ``sweeps`` sweeps per scenario and size; returns the figures printed."""
    rng = np.random.default_rng(seed)
    spreads = published_stds()
    wrong_difference = wrong_equivalence = nulls_difference = nulls_equivalence = 0
    used_all: list[np.ndarray] = []
    fixed_all: list[np.ndarray] = []
    trials_sequential = trials_fixed = 0.0
    sizes = (3, 4, 5, 6)
    scenarios = [("null", None), ("margin", None), ("mixed", None)]
    blocks = max(1, sweeps // BLOCK)
    for size in sizes:
        design = sequential.Design(first, 1, max_seeds, alpha, size, MARGIN, kind)
        for scenario, _ in scenarios:
            for _block in range(blocks):
                std = rng.choice(spreads, size)
                if scenario == "null":
                    effect = np.zeros(size)
                elif scenario == "margin":
                    effect = MARGIN * rng.choice([-1.0, 1.0], size)
                else:
                    effect = MARGIN * rng.choice(EFFECTS, size)
                decision, used = sequential.simulate(design, effect, std, BLOCK, rng)
                if scenario == "null":
                    shown = np.isin(decision, (sequential.BETTER, sequential.WORSE))
                    wrong_difference += int(shown.any(axis=1).sum())
                    nulls_difference += BLOCK
                if scenario == "margin":
                    wrong_equivalence += int((decision == sequential.EQUIVALENT).any(axis=1).sum())
                    nulls_equivalence += BLOCK
                power = right(decision, effect[None, :], MARGIN).mean(axis=0)
                fixed = np.array(
                    [
                        fixed_seeds(
                            round(float(s), 6),
                            float(e),
                            MARGIN,
                            design.level,
                            round(float(p), 3),
                        )
                        for s, e, p in zip(std, effect, power, strict=True)
                    ]
                )
                used_all.append(used.ravel())
                fixed_all.append(np.repeat(fixed[None, :], BLOCK, axis=0).ravel())
                # The twin runs every seed some configuration of the sweep runs.
                trials_sequential += float((used.sum(axis=1) + used.max(axis=1)).sum())
                trials_fixed += BLOCK * (size + 1) * float(fixed.max())
    used_seeds = np.concatenate(used_all)
    fixed_seeds_all = np.concatenate(fixed_all)
    return {
        "kind": kind,
        "wrong_difference": binomial(wrong_difference, nulls_difference),
        "wrong_equivalence": binomial(wrong_equivalence, nulls_equivalence),
        "seeds_mean": float(used_seeds.mean()),
        "seeds_p90": float(np.percentile(used_seeds, 90)),
        "fixed_mean": float(fixed_seeds_all.mean()),
        "fixed_p90": float(np.percentile(fixed_seeds_all, 90)),
        "trials_ratio": trials_sequential / trials_fixed,
        "sweeps": blocks * BLOCK * len(sizes),
    }


def worst_case(sweeps: int = 20_000) -> str:
    """The wrong better/worse rate where equivalence rarely stops a configuration (a spread of
    1, 2 and 200 margins; 4 configurations, max_seeds 12; the default spending): the
    boundaries' own rate."""
    rng = np.random.default_rng(3)
    design = sequential.Design(3, 1, 12, 0.05, 4, MARGIN)
    rates = []
    for spread in (1.0, 2.0, 200.0):
        decided, _ = sequential.simulate(design, [0.0] * 4, [spread * MARGIN] * 4, sweeps, rng)
        wrong = int(np.isin(decided, (sequential.BETTER, sequential.WORSE)).any(axis=1).sum())
        rates.append(f"{spread:g} margins: {binomial(wrong, sweeps)}")
    return "; ".join(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=10_000, help="sweeps per scenario")
    parser.add_argument("--max-seeds", type=int, default=15)
    args = parser.parse_args()
    print(
        f"{args.sweeps} simulated sweeps per scenario (every effect 0; every effect ±margin; "
        f"effects drawn from {', '.join(f'{e:g}' for e in EFFECTS)} margins), 3 to 6 "
        f"configurations, margin ±{100 * MARGIN:g} pt, first look at 3 seeds, "
        f"max_seeds {args.max_seeds}, alpha 0.05; paired spreads drawn from the published "
        f"sweeps' {len(published_stds())} endpoints"
    )
    for kind in sequential.SPENDING:
        start = time.perf_counter()
        figures = run(args.sweeps // 4, args.max_seeds, kind)
        print(
            f"\n{kind} spending ({time.perf_counter() - start:.1f} s, "
            f"{figures['sweeps']} sweeps per scenario)\n"
            f"  family-wise wrong better/worse, every effect 0:   {figures['wrong_difference']}\n"
            f"  family-wise wrong equivalent, every effect ±margin: "
            f"{figures['wrong_equivalence']}\n"
            f"  seeds per configuration: mean {figures['seeds_mean']:.2f}, 90th percentile "
            f"{figures['seeds_p90']:.0f}; the fixed design of the same power: mean "
            f"{figures['fixed_mean']:.2f}, 90th percentile {figures['fixed_p90']:.0f}\n"
            f"  trials per sweep (the twin included), sequential / fixed: "
            f"{figures['trials_ratio']:.3f} ({100 * (1 - figures['trials_ratio']):.0f}% fewer)"
        )
    print(
        f"\nworst case, {sequential.Design.kind}, every effect 0, family-wise wrong better/worse: "
        f"{worst_case()}"
    )


if __name__ == "__main__":
    main()

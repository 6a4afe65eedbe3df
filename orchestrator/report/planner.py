"""The seeds a verdict needs: the power analysis of :func:`statistics.judge`'s rule.

For each ALDS configuration, the seeds for an 80% chance (``report.power``) that the rule shows
equivalence within the margin when the true difference is zero, and that it detects a true
difference of the margin, each at the family's 0.05/m: computed exactly (the non-central t for
a difference; for equivalence the normal mean's chance integrated over the sample variance's
χ² distribution), from a paired standard deviation and its upper confidence bound, since a
spread measured on 5 seeds is itself uncertain; before any data (:func:`declared_plan`, what
``validate`` prints), for assumed spreads. Numpy and scipy.special alone: ``validate`` plans
without the report's tables.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from orchestrator import plan
from orchestrator.config import DEFAULT_POWER, SweepConfig
from orchestrator.trial.spec import TrialSpec

__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "MAX_SEEDS",
    "MIN_SEEDS",
    "NO_SPREAD_STD",
    "SPREADS",
    "SeedPlan",
    "declared_plan",
    "plan_seeds",
    "power_of_difference",
    "power_of_equivalence",
    "seeds_for",
    "std_upper_bound",
]

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
MIN_SEEDS = 3  # the fewest paired seeds a verdict stands on: two give a spread of one number
MAX_SEEDS = 100_000  # the planner's search stops here: beyond it, "more than"
NO_SPREAD_STD = 1e-9  # below this, paired differences are one value (float noise aside)


def _t_quantile(probability: float, freedom: int) -> float:
    return float(special.stdtrit(freedom, probability))


def _chi2_quantile(probability: float, freedom: int) -> float:
    return float(special.chdtri(freedom, 1.0 - probability))


def _chi2_density(x: np.ndarray, freedom: int) -> np.ndarray:
    half = freedom / 2
    return np.exp((half - 1) * np.log(x) - x / 2 - half * math.log(2) - special.gammaln(half))


def std_upper_bound(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided upper confidence bound of a standard deviation estimated from ``n``
    values: s·√((n − 1)/χ²(1 − confidence, n − 1)), about 2.4·s at n = 5 and 1.6·s at n = 10."""
    return std * math.sqrt((n - 1) / _chi2_quantile(1 - confidence, n - 1))


def power_of_difference(n: int, std: float, effect: float, alpha: float = ALPHA) -> float:
    """The chance that the two-sided paired t-test at level ``alpha`` detects a true mean
    difference ``effect`` with ``n`` pairs of standard deviation ``std`` (non-central t)."""
    freedom = n - 1
    critical = _t_quantile(1 - alpha / 2, freedom)
    shift = effect * math.sqrt(n) / std
    above = 1.0 - special.nctdtr(freedom, shift, critical)
    return float(above + special.nctdtr(freedom, shift, -critical))


def power_of_equivalence(
    n: int, std: float, margin: float, alpha: float = ALPHA, difference: float = 0.0
) -> float:
    """The chance that :func:`statistics.judge`'s rule at level ``alpha`` calls ``n`` pairs of
    standard deviation ``std`` and true mean ``difference`` equivalent within ±``margin``: TOST
    accepts (|mean| < margin − t(1 − α)·s/√n) and no difference is shown (|mean| <
    t(1 − α/2)·s/√n), which takes precedence. Exact: the normal mean's chance integrated over
    the sample variance's χ² distribution (Gauss-Legendre over all but 1e-12 of it)."""
    freedom = n - 1
    one_sided = _t_quantile(1 - alpha, freedom)
    two_sided = _t_quantile(1 - alpha / 2, freedom)
    error = std / math.sqrt(n)
    # TOST accepts only for s below this.
    limit = freedom * (margin / (one_sided * error)) ** 2
    low = _chi2_quantile(1e-12, freedom)
    high = min(limit, _chi2_quantile(1 - 1e-12, freedom))
    if high <= low:
        return 0.0
    nodes, weights = _GAUSS_LEGENDRE
    u = low + (high - low) * (nodes + 1) / 2
    scale = error * np.sqrt(u / freedom)  # the sample's s/√n
    reach = np.minimum(margin - one_sided * scale, two_sided * scale)
    inside = special.ndtr((reach - difference) / error) - special.ndtr(
        (-reach - difference) / error
    )
    density = _chi2_density(u, freedom)
    value = (high - low) / 2 * float(np.sum(weights * density * np.clip(inside, 0.0, None)))
    return min(max(value, 0.0), 1.0)


_GAUSS_LEGENDRE = np.polynomial.legendre.leggauss(400)


def _seeds_text(n: int | None) -> str:
    """A planned number of seeds, or "more than" the planner's bound."""
    return f"{n}" if n is not None else f">{MAX_SEEDS}"


def _least_seeds(power: float, chance: Callable[[int], float]) -> int | None:
    """The least n ≥ :data:`MIN_SEEDS` whose ``chance(n)`` reaches ``power`` (monotone in n);
    None beyond :data:`MAX_SEEDS`."""
    high = MIN_SEEDS
    while chance(high) < power:
        if high >= MAX_SEEDS:
            return None
        high = min(2 * high, MAX_SEEDS)
    low = max(MIN_SEEDS, high // 2)
    if chance(low) >= power:
        return low
    while high - low > 1:  # chance(low) < power <= chance(high)
        middle = (low + high) // 2
        low, high = (low, middle) if chance(middle) >= power else (middle, high)
    return high


@dataclass(frozen=True)
class SeedPlan:
    """The seeds a configuration needs, from a paired standard deviation and its upper bound.

    ``equivalence`` and ``difference`` are (seeds at the estimated std, seeds at its upper 95%
    bound): for ``power`` that the family-wise TOST shows equivalence within ±``margin`` when
    the true difference is zero, and that the family-wise t-test detects a true difference of
    the margin. None in a range: more than :data:`MAX_SEEDS`.
    """

    estimated_from: int
    std: float
    std_upper: float
    margin: float
    power: float
    family_size: int
    equivalence: tuple[int | None, int | None]
    difference: tuple[int | None, int | None]

    def describe(self) -> str:
        """The plan in one line, in points and seeds."""

        def seeds(pair: tuple[int | None, int | None]) -> str:
            low, high = (_seeds_text(n) for n in pair)
            return low if low == high else f"{low}–{high}"

        return (
            f"{seeds(self.equivalence)} seeds to show equivalence within ±{100 * self.margin:g} "
            f"pt, {seeds(self.difference)} to detect a difference of "
            f"{100 * self.margin:g} pt ({100 * self.power:g}% power, family of "
            f"{self.family_size}; paired std {100 * self.std:.2f} pt, upper 95% bound "
            f"{100 * self.std_upper:.2f} pt, estimated from {self.estimated_from} seeds)"
        )


def seeds_for(
    std: float, margin: float, family_size: int = 1, power: float = DEFAULT_POWER
) -> tuple[int | None, int | None]:
    """The least seeds for ``power`` that :func:`statistics.judge` over a family of ``family_size``
    shows equivalence within ±``margin`` (true difference 0) and detects a true difference of
    ``margin``, when the paired differences vary by ``std``.

    Returns:
        (seeds for equivalence, seeds for the difference); None beyond :data:`MAX_SEEDS`.
    """
    alpha = ALPHA / max(family_size, 1)
    equivalence = functools.partial(power_of_equivalence, std=std, margin=margin, alpha=alpha)
    difference = functools.partial(power_of_difference, std=std, effect=margin, alpha=alpha)
    return _least_seeds(power, equivalence), _least_seeds(power, difference)


def plan_seeds(
    std: float, n: int, margin: float, family_size: int = 1, power: float = DEFAULT_POWER
) -> SeedPlan | None:
    """The seeds for ``power`` that the report's rule (:func:`statistics.judge`, over a family of
    ``family_size``) reaches its verdict, from a paired std estimated on ``n`` seeds.

    Args:
        std: the paired differences' standard deviation (ddof 1), in accuracy.
        n: the seeds it was estimated from; below :data:`MIN_SEEDS` no plan is made.
        margin: the equivalence margin, in accuracy; also the difference to detect.
        family_size: the comparisons judged together (each at α/m).
        power: the chance wanted, in (0, 1).

    Returns:
        The :class:`SeedPlan`, or None (too few seeds, or no spread to plan from).
    """
    if n < MIN_SEEDS or not std > NO_SPREAD_STD:
        return None
    upper = std_upper_bound(std, n)
    at_std, at_upper = (seeds_for(spread, margin, family_size, power) for spread in (std, upper))
    return SeedPlan(
        estimated_from=n,
        std=std,
        std_upper=upper,
        margin=margin,
        power=power,
        family_size=max(family_size, 1),
        equivalence=(at_std[0], at_upper[0]),
        difference=(at_std[1], at_upper[1]),
    )


SPREADS = (0.5, 1.0, 2.0)  # validate's assumed paired std, in margins: no data yet


def declared_plan(config: SweepConfig) -> list[str]:
    """What ``orchestrate validate`` says of the verdict a sweep declares before its data: the
    primary endpoint, the margin, and with a margin the seed plan for paired spreads of half,
    one and two margins (no spread is measured yet), over its ALDS configurations as one family.
    """
    report = config.report
    margin = report.margin
    lines = [
        f"primary endpoint (report.primary: {report.primary}; report table endpoint): "
        f"{_primary(report.level)}, ALDS + IMP minus its IMP-only twin, judged with "
        "family-wise intervals over the configurations; equivalence margin (report.margin): "
        + (
            "none, the report states the bound the data give"
            if margin is None
            else f"±{margin:g} pt"
        )
    ]
    if margin is None:
        return lines
    configurations = plan.fixed_configurations(config)
    seed = config.seeds[0]
    family = max(1, sum(TrialSpec(config, p, seed).is_alds for p in configurations))
    plans = []
    for spread in SPREADS:
        seeds = seeds_for(spread * margin / 100, margin / 100, family, report.power)
        shown = [_seeds_text(n) for n in seeds]
        plans.append(f"paired std {spread * margin:g} pt: {shown[0]} and {shown[1]}")
    lines.append(
        f"seeds for each verdict with probability {report.power:g} (report.power) over "
        f"{family} ALDS configuration(s) as one family, to show equivalence within "
        f"±{margin:g} pt and to detect a difference of {margin:g} pt: "
        + "; ".join(plans)
        + f" (the sweep runs {len(config.seeds)}; the report plans again from the spread it "
        "measures)"
    )
    return lines


def _primary(level: float | None) -> str:
    """The primary endpoint in words: the AUC over the common range, or one sparsity."""
    if level is None:
        return (
            "per seed, the mean accuracy over log(weights remaining) across the sparsity range "
            "every compared configuration and twin reaches"
        )
    return f"per seed, the accuracy at {100 * level:g}% sparsity"

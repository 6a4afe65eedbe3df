"""The report's paired statistics: one rule that judges a family of paired differences (ALDS +
IMP minus its IMP-only twin, seed by seed), and the seeds a verdict needs.

A table's rows of paired differences are one family (the summary's configurations, the
at-sparsity cells, the step-by-step comparison, the magnitude shares; the primary endpoints of
several sweeps reported together): with 34 intervals about 1.7 exclude zero by chance. Every
number a verdict rests on comes from one procedure, Bonferroni over the family's m members
(:func:`judge`):

- the adjusted p is min(1, m·p) of the paired t-test, and a difference is shown exactly when it
  is below α = 0.05, exactly when the simultaneous interval (each at 1 − α/m) excludes zero;
- equivalence within ±margin is Schuirmann's two one-sided tests at α/m (the 1 − 2α/m interval
  inside ±margin), its p adjusted alike; it is claimed only where no difference is shown, so a
  row never reads "worse" and "equivalent" at once;
- a row that cannot carry a verdict says why: fewer than :data:`MIN_SEEDS` paired seeds, no
  spread (every seed gave the same difference: accuracy on a finite test set moves in steps of
  1/n_test, and a zero spread is the measurement's, not certainty), or an interval wider than the
  accuracy scale. Such rows are outside the family.

The unadjusted 95% interval stays beside them for reference; it decides nothing.
:func:`plan_seeds` is the power analysis a verdict needs: the seeds for an 80% chance that the
same rule shows equivalence, or detects a difference of the margin.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from orchestrator.report.schema import is_missing

__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "INCONCLUSIVE",
    "JUDGED",
    "MIN_SEEDS",
    "NO_DIFFERENCE",
    "NO_SPREAD",
    "SCALE",
    "TOO_FEW",
    "UNINFORMATIVE",
    "SeedPlan",
    "equivalent_words",
    "interval",
    "judge",
    "judged_columns",
    "p_value",
    "paired_interval",
    "plan_seeds",
    "power_of_difference",
    "power_of_equivalence",
    "seeds_for",
    "std_upper_bound",
]

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
MIN_SEEDS = 3  # the fewest paired seeds a verdict stands on: two give a spread of one number
SCALE = 1.0  # accuracy's whole range: an interval wider than it says nothing
_NO_SPREAD_STD = 1e-9  # below this, the paired differences are one value (float noise aside)
MAX_SEEDS = 100_000  # the planner's search stops here: beyond it, "more than"

TOO_FEW = f"too few seeds (fewer than {MIN_SEEDS})"
NO_SPREAD = "no spread: test set too small?"
UNINFORMATIVE = "interval wider than the accuracy scale"
NO_DIFFERENCE = "no difference shown"
INCONCLUSIVE = "inconclusive"


def equivalent_words(margin: float) -> str:
    """The verdict of a row shown equivalent within ±``margin`` (in accuracy)."""
    return f"equivalent within ±{100 * margin:g} pt"


@functools.lru_cache(maxsize=4096)
def _t_quantile(freedom: int, confidence: float = CONFIDENCE) -> float:
    # scipy's ppf costs 0.1 ms a call; a report asks it for every configuration and level.
    return float(stats.t.ppf(0.5 + confidence / 2, freedom))


def interval(
    mean: float, std: float, n: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The two-sided interval of a mean from its summary: mean ± t · std / √n.

    Args:
        mean: the mean of the paired differences.
        std: their standard deviation (ddof 1).
        n: how many pairs.
        confidence: the interval's level.

    Returns:
        (low, high); NaN with fewer than two pairs.
    """
    if n < 2 or is_missing(std) or is_missing(mean):
        return math.nan, math.nan
    half = _t_quantile(int(n) - 1, confidence) * std / math.sqrt(n)
    return mean - half, mean + half


def paired_interval(differences: pd.Series | Sequence[float]) -> tuple[float, float]:
    """The 95% confidence interval of the mean of paired differences (Student's t over the
    pairs: mean ± t(0.975, n − 1) · s / √n); NaN with fewer than two pairs."""
    n = len(differences)
    if n < 2:
        return math.nan, math.nan
    return interval(float(np.mean(differences)), float(np.std(differences, ddof=1)), n)


def p_value(mean: float, std: float, n: int) -> float:
    """The two-sided p-value of a paired t-test of ``mean`` against zero; NaN below two pairs
    or where the differences do not vary (no test is possible, :data:`NO_SPREAD`)."""
    if n < 2 or is_missing(std) or is_missing(mean) or std <= _NO_SPREAD_STD:
        return math.nan
    t = mean / (std / math.sqrt(n))
    return float(2 * stats.t.sf(abs(t), n - 1))


def _p_equivalence(mean: float, std: float, n: int, margin: float) -> float:
    """Schuirmann's TOST p-value: the larger of the one-sided p-values of mean > −margin and
    mean < margin."""
    scale = std / math.sqrt(n)
    lower = stats.t.sf((mean + margin) / scale, n - 1)
    upper = stats.t.sf((margin - mean) / scale, n - 1)
    return float(max(lower, upper))


def _status(mean: float, std: float, n: int) -> str | None:
    """Why a row can carry no verdict, or None for a member of the family."""
    if n < MIN_SEEDS or is_missing(mean) or is_missing(std):
        return TOO_FEW
    if std <= _NO_SPREAD_STD:
        return NO_SPREAD
    return None


JUDGED = (
    "p_value",
    "p_adjusted",
    "adjusted_ci_low",
    "adjusted_ci_high",
    "equivalence_bound",
    "p_equivalence",
    "p_equivalence_adjusted",
    "verdict",
    "family_size",
)  # the columns judge adds, in order (the p_equivalence pair only with a margin)


def judge(
    table: pd.DataFrame,
    margin: float | None = None,
    *,
    words: tuple[str, str] = ("ALDS better", "ALDS worse"),
    family_size: int | None = None,
    scale: float = SCALE,
) -> pd.DataFrame:
    """Judge a family of paired differences by one rule (Bonferroni over its members).

    Args:
        table: one row per comparison, with ``difference_mean``, ``difference_std`` (ddof 1)
            and ``paired_n``; the rows are one family.
        margin: the equivalence margin, in accuracy (0.005 is half a point); None tests no
            equivalence.
        words: the verdicts of a difference above and below zero.
        family_size: the m to adjust by; default the rows that can carry a verdict.
        scale: the differences' whole range: a family-wise interval wider than it, holding
            zero, shows nothing (accuracy's, 1, by default).

    Returns:
        Indexed as ``table``: ``p_value`` (paired t), ``p_adjusted`` (min(1, m·p)), the
        simultaneous interval ``adjusted_ci_low``/``adjusted_ci_high`` (1 − α/m; NaN where it
        is wider than the accuracy scale and shows nothing), ``equivalence_bound`` (the
        smallest margin the family-wise TOST would accept: the largest end of the 1 − 2α/m
        interval), with a margin ``p_equivalence`` and ``p_equivalence_adjusted`` (TOST,
        min(1, m·p)), ``verdict`` (one word from the same numbers) and ``family_size``.
    """
    means = table["difference_mean"].to_numpy(dtype=float)
    stds = table["difference_std"].to_numpy(dtype=float)
    counts = table["paired_n"].fillna(0).to_numpy(dtype=int)
    rows = list(zip(means, stds, counts, strict=True))
    status = [_status(*row) for row in rows]
    members = sum(reason is None for reason in status)
    m = max(family_size if family_size is not None else members, 1)
    columns: dict[str, list] = {name: [] for name in JUDGED if name != "family_size"}
    for (mean, std, n), reason in zip(rows, status, strict=True):
        p = math.nan if reason else p_value(mean, std, n)
        low, high = (math.nan, math.nan) if reason else interval(mean, std, n, 1 - ALPHA / m)
        tost_low, tost_high = (
            (math.nan, math.nan) if reason else interval(mean, std, n, 1 - 2 * ALPHA / m)
        )
        p_tost = math.nan if reason or margin is None else _p_equivalence(mean, std, n, margin)
        adjusted = min(1.0, m * p) if not reason else math.nan
        adjusted_tost = min(1.0, m * p_tost) if not is_missing(p_tost) else math.nan
        if reason:
            said = reason
        elif adjusted < ALPHA:  # exactly when the simultaneous interval excludes zero
            said = words[0] if mean > 0 else words[1]
        elif margin is not None and adjusted_tost < ALPHA:
            said = equivalent_words(margin)
        elif high - low > scale:
            said, low, high = UNINFORMATIVE, math.nan, math.nan
        else:
            said = INCONCLUSIVE if margin is not None else NO_DIFFERENCE
        columns["p_value"].append(p)
        columns["p_adjusted"].append(adjusted)
        columns["adjusted_ci_low"].append(low)
        columns["adjusted_ci_high"].append(high)
        columns["equivalence_bound"].append(
            max(abs(tost_low), abs(tost_high)) if not reason else math.nan
        )
        columns["p_equivalence"].append(p_tost)
        columns["p_equivalence_adjusted"].append(adjusted_tost)
        columns["verdict"].append(said)
    judged = pd.DataFrame(columns, index=table.index)
    judged["family_size"] = members if family_size is None else family_size
    return judged[judged_columns(margin)]


def judged_columns(margin: float | None) -> list[str]:
    """The columns :func:`judge` adds with ``margin`` (None: no equivalence test)."""
    return [c for c in JUDGED if margin is not None or not c.startswith("p_equivalence")]


def std_upper_bound(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided upper confidence bound of a standard deviation estimated from ``n``
    values: s·√((n − 1)/χ²(1 − confidence, n − 1)), about 2.4·s at n = 5 and 1.6·s at n = 10."""
    return std * math.sqrt((n - 1) / stats.chi2.ppf(1 - confidence, n - 1))


def power_of_difference(n: int, std: float, effect: float, alpha: float = ALPHA) -> float:
    """The chance that the two-sided paired t-test at level ``alpha`` detects a true mean
    difference ``effect`` with ``n`` pairs of standard deviation ``std`` (non-central t)."""
    freedom = n - 1
    critical = stats.t.ppf(1 - alpha / 2, freedom)
    shift = effect * math.sqrt(n) / std
    return float(stats.nct.sf(critical, freedom, shift) + stats.nct.cdf(-critical, freedom, shift))


def power_of_equivalence(
    n: int, std: float, margin: float, alpha: float = ALPHA, difference: float = 0.0
) -> float:
    """The chance that :func:`judge`'s rule at level ``alpha`` calls ``n`` pairs of standard
    deviation ``std`` and true mean ``difference`` equivalent within ±``margin``: TOST accepts
    (|mean| < margin − t(1 − α)·s/√n) and no difference is shown (|mean| < t(1 − α/2)·s/√n),
    which takes precedence. Exact: the normal mean's chance integrated over the sample
    variance's χ² distribution (Gauss-Legendre over all but 1e-12 of it)."""
    freedom = n - 1
    one_sided = float(stats.t.ppf(1 - alpha, freedom))
    two_sided = float(stats.t.ppf(1 - alpha / 2, freedom))
    error = std / math.sqrt(n)
    # TOST accepts only for s below this.
    limit = freedom * (margin / (one_sided * error)) ** 2
    low = float(stats.chi2.ppf(1e-12, freedom))
    high = min(limit, float(stats.chi2.isf(1e-12, freedom)))
    if high <= low:
        return 0.0
    nodes, weights = _GAUSS_LEGENDRE
    u = low + (high - low) * (nodes + 1) / 2
    scale = error * np.sqrt(u / freedom)  # the sample's s/√n
    reach = np.minimum(margin - one_sided * scale, two_sided * scale)
    inside = special.ndtr((reach - difference) / error) - special.ndtr(
        (-reach - difference) / error
    )
    density = stats.chi2.pdf(u, freedom)
    value = (high - low) / 2 * float(np.sum(weights * density * np.clip(inside, 0.0, None)))
    return min(max(value, 0.0), 1.0)


_GAUSS_LEGENDRE = np.polynomial.legendre.leggauss(400)


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
            low, high = (f"{n}" if n is not None else f">{MAX_SEEDS}" for n in pair)
            return low if low == high else f"{low}–{high}"

        return (
            f"{seeds(self.equivalence)} seeds to show equivalence within ±{100 * self.margin:g} "
            f"pt, {seeds(self.difference)} to detect a difference of "
            f"{100 * self.margin:g} pt ({100 * self.power:g}% power, family of "
            f"{self.family_size}; paired std {100 * self.std:.2f} pt, upper 95% bound "
            f"{100 * self.std_upper:.2f} pt, estimated from {self.estimated_from} seeds)"
        )


def seeds_for(
    std: float, margin: float, family_size: int = 1, power: float = 0.8
) -> tuple[int | None, int | None]:
    """The least seeds for ``power`` that :func:`judge` over a family of ``family_size``
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
    std: float, n: int, margin: float, family_size: int = 1, power: float = 0.8
) -> SeedPlan | None:
    """The seeds for ``power`` that the report's rule (:func:`judge`, over a family of
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
    if n < MIN_SEEDS or is_missing(std) or std <= _NO_SPREAD_STD:
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

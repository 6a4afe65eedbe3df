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

The unadjusted 95% interval stays beside them for reference; it decides nothing. The seeds a
verdict needs are ``planner``'s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from orchestrator.report.planner import ALPHA, CONFIDENCE, MIN_SEEDS, NO_SPREAD_STD
from orchestrator.report.schema import is_missing

__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "INCONCLUSIVE",
    "JUDGED",
    "MIN_SEEDS",
    "NOT_REACHED",
    "NO_DIFFERENCE",
    "NO_SPREAD",
    "SCALE",
    "TOO_FEW",
    "UNINFORMATIVE",
    "equivalent_words",
    "interval",
    "judge",
    "judged_columns",
    "p_value",
    "paired_interval",
]

SCALE = 1.0  # accuracy's whole range: an interval wider than it says nothing

TOO_FEW = f"too few seeds (fewer than {MIN_SEEDS})"
# A level a configuration (or its twin) never had a network at, in every seed: more seeds
# would not help, a longer schedule would.
NOT_REACHED = "not reached"
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
    if n < 2 or is_missing(std) or is_missing(mean) or std <= NO_SPREAD_STD:
        return math.nan
    t = mean / (std / math.sqrt(n))
    return float(2 * stats.t.sf(abs(t), n - 1))


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
    counts = table["paired_n"].fillna(0).to_numpy(dtype=float)
    # Why a row carries no verdict (TOO_FEW, NO_SPREAD), or "" for a member of the family;
    # every row at once: a sampled sweep's step-by-step table has 10^5 rows.
    known = ~(np.isnan(means) | np.isnan(stds))
    reason = np.where(
        (counts < MIN_SEEDS) | ~known, TOO_FEW, np.where(stds <= NO_SPREAD_STD, NO_SPREAD, "")
    )
    member = reason == ""
    members = int(member.sum())
    m = max(family_size if family_size is not None else members, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        freedom = np.where(member, counts - 1, np.nan)
        error = np.where(member, stds / np.sqrt(counts), np.nan)
        p = 2 * stats.t.sf(np.abs(means / error), freedom)
        half = stats.t.ppf(1 - ALPHA / (2 * m), freedom) * error
        low, high = means - half, means + half
        tost_half = stats.t.ppf(1 - ALPHA / m, freedom) * error
        bound = np.maximum(np.abs(means - tost_half), np.abs(means + tost_half))
        p_tost = (
            np.maximum(
                stats.t.sf((means + margin) / error, freedom),
                stats.t.sf((margin - means) / error, freedom),
            )
            if margin is not None
            else np.full(len(means), np.nan)
        )
    adjusted, adjusted_tost = np.minimum(1.0, m * p), np.minimum(1.0, m * p_tost)
    different = member & (adjusted < ALPHA)  # exactly when the simultaneous interval excludes 0
    equivalent = member & ~different & (adjusted_tost < ALPHA)
    wide = member & ~different & ~equivalent & (high - low > scale)
    undecided = INCONCLUSIVE if margin is not None else NO_DIFFERENCE
    verdict = np.select(
        [~member, different & (means > 0), different, equivalent, wide],
        [
            reason,
            words[0],
            words[1],
            equivalent_words(margin) if margin is not None else "",
            UNINFORMATIVE,
        ],
        undecided,
    )
    judged = pd.DataFrame(
        {
            "p_value": p,
            "p_adjusted": adjusted,
            "adjusted_ci_low": np.where(wide, np.nan, low),
            "adjusted_ci_high": np.where(wide, np.nan, high),
            "equivalence_bound": bound,
            "p_equivalence": p_tost,
            "p_equivalence_adjusted": adjusted_tost,
            "verdict": verdict.astype(object),
            "family_size": members if family_size is None else family_size,
        },
        index=table.index,
    )
    return judged[judged_columns(margin)]


def judged_columns(margin: float | None) -> list[str]:
    """The columns :func:`judge` adds with ``margin`` (None: no equivalence test)."""
    return [c for c in JUDGED if margin is not None or not c.startswith("p_equivalence")]

"""The report's paired statistics: intervals of paired differences (ALDS + IMP minus its
IMP-only twin, seed by seed), their family-wise adjustment, equivalence tests, and the seeds
an interval needs.

A table's rows of paired differences are one family (the summary's configurations, the
at-sparsity cells, the step-by-step comparison, the magnitude shares): with 34 intervals
about 1.7 exclude zero by chance, so a verdict reads the family's simultaneous interval
(Bonferroni: each at 1 − 0.05/m, m the rows with an interval), never a single row's 95% one.
Holm's step-down adjusted p-values are given beside them (as powerful as any procedure that
controls the family-wise error without assumptions on the rows' dependence); the unadjusted
95% interval stays for reference. Equivalence is Schuirmann's two one-sided tests (TOST) at
α = 0.05: the 90% interval inside ±margin.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from orchestrator.report.schema import is_missing

__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "equivalence",
    "equivalence_bound",
    "family",
    "holm",
    "interval",
    "p_value",
    "paired_interval",
    "seeds_needed",
    "verdict",
]

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE


@functools.lru_cache(maxsize=1024)
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
    """The two-sided p-value of a paired t-test of ``mean`` against zero (NaN below two
    pairs; 0 or 1 when the differences do not vary)."""
    if n < 2 or is_missing(std) or is_missing(mean):
        return math.nan
    if std == 0:
        return 1.0 if mean == 0 else 0.0
    t = mean / (std / math.sqrt(n))
    return float(2 * stats.t.sf(abs(t), n - 1))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN where a p-value is missing, outside the family).

    The k-th smallest of m p-values becomes max over j ≤ k of min(1, (m − j + 1) · p_(j)).
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = len(present)
    if not m:
        return adjusted
    order = present[np.argsort(p[present], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def family(
    table: pd.DataFrame,
    *,
    mean: str = "difference_mean",
    std: str = "difference_std",
    n: str = "paired_n",
) -> pd.DataFrame:
    """The family-wise columns of a table's paired differences, one row each.

    Args:
        table: a table with a mean, std and count of paired differences per row.
        mean, std, n: their columns.

    Returns:
        ``p_value``, ``p_holm`` and the simultaneous interval ``adjusted_ci_low``,
        ``adjusted_ci_high`` (each at 1 − 0.05/m), indexed as ``table``.
    """
    means = table[mean].to_numpy(dtype=float) if len(table) else np.array([])
    stds = table[std].to_numpy(dtype=float) if len(table) else np.array([])
    counts = table[n].fillna(0).to_numpy(dtype=int) if len(table) else np.array([], dtype=int)
    p = np.array([p_value(*row) for row in zip(means, stds, counts, strict=True)])
    members = int(np.sum(~np.isnan(p)))
    level = 1.0 - ALPHA / max(members, 1)
    bounds = [interval(*row, confidence=level) for row in zip(means, stds, counts, strict=True)]
    return pd.DataFrame(
        {
            "p_value": p,
            "p_holm": holm(p) if len(p) else p,
            "adjusted_ci_low": [low for low, _ in bounds],
            "adjusted_ci_high": [high for _, high in bounds],
        },
        index=table.index,
    )


def verdict(low: float, high: float, above: str = "ALDS better", below: str = "ALDS worse") -> str:
    """What an interval of ALDS + IMP minus IMP only says: only one that excludes zero is
    called a difference (``above`` or ``below`` zero)."""
    if is_missing(low) or is_missing(high):
        return "too few seeds"
    if low > 0:
        return above
    if high < 0:
        return below
    return "no difference shown"


def equivalence(mean: float, std: float, n: int, margin: float) -> str:
    """TOST at α = 0.05 with the equivalence margin ±``margin``.

    Returns:
        ``equivalent`` when the 90% interval lies inside (−margin, margin); else
        ``different`` when the 95% interval excludes zero; else ``inconclusive`` (also with
        fewer than two pairs).
    """
    low, high = interval(mean, std, n, confidence=1.0 - 2 * ALPHA)
    if is_missing(low):
        return "inconclusive"
    if -margin < low and high < margin:
        return "equivalent"
    low, high = interval(mean, std, n)
    return "different" if low > 0 or high < 0 else "inconclusive"


def equivalence_bound(mean: float, std: float, n: int) -> float:
    """The smallest margin within which TOST (α = 0.05) calls the difference equivalent: the
    largest end of its 90% interval in absolute value ("differences beyond ±X excluded")."""
    low, high = interval(mean, std, n, confidence=1.0 - 2 * ALPHA)
    return max(abs(low), abs(high)) if not is_missing(low) else math.nan


def seeds_needed(std: float, halfwidth: float, confidence: float = CONFIDENCE) -> int:
    """The fewest seeds whose paired interval is at most ±``halfwidth`` when the differences
    vary by ``std``: the least n ≥ 2 with t(n − 1) · std / √n ≤ halfwidth, starting from the
    normal approximation n = (z · std / halfwidth)².

    Raises:
        ValueError: ``halfwidth`` not positive, or ``std`` missing.
    """
    if not halfwidth > 0 or is_missing(std):
        raise ValueError("seeds_needed takes a positive half-width and a known std")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    n = max(2, math.ceil((z * std / halfwidth) ** 2))
    while _t_quantile(n - 1, confidence) * std / math.sqrt(n) > halfwidth:
        n += 1
    return n

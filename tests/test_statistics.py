"""The report's paired statistics against hand computations: Holm's adjustment, simultaneous
intervals, TOST verdicts on constructed data, the equivalence bound and the seed planner; and
the tables' verdicts reading the family-wise interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.curve import mean_between
from orchestrator.report import compare, describe, statistics
from tests.test_report import ALDS, BASELINE, S1, hand_built


def test_holm_adjusts_by_hand_and_keeps_missing_values_out_of_the_family() -> None:
    # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → kept monotone: 0.06.
    adjusted = statistics.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert statistics.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_p_value_is_the_paired_t_test() -> None:
    differences = [0.012, 0.004, 0.009, -0.002]
    mean, std = float(np.mean(differences)), float(np.std(differences, ddof=1))
    expected = stats.ttest_1samp(differences, 0.0).pvalue
    assert statistics.p_value(mean, std, len(differences)) == pytest.approx(expected)
    assert math.isnan(statistics.p_value(0.01, math.nan, 1))


def test_family_gives_simultaneous_intervals_at_one_minus_alpha_over_m() -> None:
    table = pd.DataFrame(
        {
            "difference_mean": [0.02, -0.01, 0.03],
            "difference_std": [0.01, 0.02, math.nan],
            "paired_n": [3, 5, 1],
        }
    )
    found = statistics.family(table)
    # Two rows have an interval: each at 1 − 0.05/2, i.e. t(1 − 0.0125, n − 1).
    for row, n in ((0, 3), (1, 5)):
        half = stats.t.ppf(1 - 0.0125, n - 1) * table["difference_std"][row] / math.sqrt(n)
        mean = table["difference_mean"][row]
        assert found["adjusted_ci_low"][row] == pytest.approx(mean - half)
        assert found["adjusted_ci_high"][row] == pytest.approx(mean + half)
    assert math.isnan(found["adjusted_ci_low"][2]) and math.isnan(found["p_holm"][2])
    p = [statistics.p_value(0.02, 0.01, 3), statistics.p_value(-0.01, 0.02, 5)]
    assert list(found["p_holm"][:2]) == pytest.approx(list(statistics.holm(p)))
    # Wider than the row's own 95% interval.
    low, _ = statistics.interval(0.02, 0.01, 3)
    assert found["adjusted_ci_low"][0] < low


@pytest.mark.parametrize(
    ("differences", "margin", "expected"),
    [
        ([0.001, -0.001, 0.0005, 0.0, -0.0005], 0.01, "equivalent"),  # tight, inside ±1 pt
        ([0.05, 0.051, 0.049, 0.052, 0.05], 0.01, "different"),  # 5 points, clearly apart
        ([0.03, -0.04, 0.01], 0.01, "inconclusive"),  # wide: neither shown
    ],
)
def test_tost_on_constructed_data(differences: list[float], margin: float, expected: str) -> None:
    mean, std = float(np.mean(differences)), float(np.std(differences, ddof=1))
    assert statistics.equivalence(mean, std, len(differences), margin) == expected


def test_the_equivalence_bound_is_the_90_percent_interval_by_hand() -> None:
    mean, std, n = 0.002, 0.004, 4
    half = stats.t.ppf(0.95, 3) * std / math.sqrt(n)
    assert statistics.equivalence_bound(mean, std, n) == pytest.approx(mean + half)
    # TOST calls it equivalent just outside the bound and not just inside.
    bound = statistics.equivalence_bound(mean, std, n)
    assert statistics.equivalence(mean, std, n, bound * 1.001) == "equivalent"
    assert statistics.equivalence(mean, std, n, bound * 0.999) != "equivalent"


@pytest.mark.parametrize(("std", "halfwidth"), [(0.005, 0.0025), (0.01, 0.0025), (0.002, 0.01)])
def test_the_seed_planner_is_the_least_n_of_the_closed_form(std: float, halfwidth: float) -> None:
    n = statistics.seeds_needed(std, halfwidth)

    def half(seeds: int) -> float:
        return stats.t.ppf(0.975, seeds - 1) * std / math.sqrt(seeds)

    assert half(n) <= halfwidth
    assert n == 2 or half(n - 1) > halfwidth
    with pytest.raises(ValueError):
        statistics.seeds_needed(std, 0.0)


def test_verdicts_read_the_family_wise_interval() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    pairs = compare.baseline_pairs(steps, ["alds.rate"], lambda p: {**p, "alds.rate": 0.0})
    table = compare.versus_baseline(steps, pairs, margin=0.5)
    for row in table.to_dict("records"):
        if row["paired_n"] < 2:
            assert row["verdict"] == "too few seeds"
            continue
        low, high = row["adjusted_ci_low"], row["adjusted_ci_high"]
        assert low <= row["difference_ci_low"] and high >= row["difference_ci_high"]
        assert row["verdict"] == statistics.verdict(low, high)
        assert row["equivalence"] in ("equivalent within ±50 pt", "different", "inconclusive")
    summary = compare.summary_table(
        describe.curve_table(steps, ["alds.rate"]),
        table,
        compare.tolerance_table(steps),
        pairs,
        ["alds.rate"],
    )
    alds = summary[summary["role"] == compare.ALDS_PLUS_IMP].iloc[0]
    assert alds["verdict"] == statistics.verdict(alds["adjusted_ci_low"], alds["adjusted_ci_high"])
    assert alds["equivalence_bound"] == pytest.approx(
        statistics.equivalence_bound(
            alds["difference_mean"], alds["difference_std"], alds["paired_n"]
        )
    )


def test_mean_between_integrates_the_curve_by_hand() -> None:
    # Remaining 1/2, 1/4, 1/8: equally spaced in log(remaining), so the trapezoids are equal.
    steps, sparsity, accuracy = [1, 2, 3], [0.5, 0.75, 0.875], [0.9, 0.8, 0.6]
    assert mean_between(steps, sparsity, accuracy, 0.5, 0.875) == pytest.approx(
        ((0.9 + 0.8) / 2 + (0.8 + 0.6) / 2) / 2
    )
    # A range inside: from remaining 1/2^1.5 (accuracy halfway, 0.85) to 1/4.
    inside = 1 - 2**-1.5
    assert mean_between(steps, sparsity, accuracy, inside, 0.75) == pytest.approx(0.825)
    # A straight line in log(remaining) averages to its value in the middle.
    line = [0.9, 0.8, 0.7]
    assert mean_between(steps, sparsity, line, 0.5, 0.875) == pytest.approx(0.8)
    # Never extrapolated.
    assert math.isnan(mean_between(steps, sparsity, accuracy, 0.2, 0.875))


def test_the_endpoint_pairs_the_mean_over_the_range_both_arms_cover() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    pairs = {"alds.rate=0.5": "alds.rate=0.0"}
    (row,) = compare.endpoint_table(steps, pairs).to_dict("records")
    # The baseline's compressed steps cover sparsity 0 to 0.75, ALDS's S1 to S3: S1 to 0.75,
    # which is 0.5 to 2 halvings of the weights. By hand, per seed (trapezoids in halvings):
    # IMP only 0.855 and 0.855; ALDS 1.335125 / 1.5 and 1.369375 / 1.5.
    assert (row["sparsity_low"], row["sparsity_high"]) == pytest.approx((S1, 0.75))
    alds = [1.335125 / 1.5, 1.369375 / 1.5]
    assert row["baseline_auc_mean"] == pytest.approx(0.855)
    assert row["auc_mean"] == pytest.approx(np.mean(alds))
    assert row["difference_mean"] == pytest.approx(np.mean(alds) - 0.855)
    assert row["difference_std"] == pytest.approx(np.std(alds, ddof=1))
    assert row["paired_n"] == 2
    assert row["verdict"] == statistics.verdict(row["adjusted_ci_low"], row["adjusted_ci_high"])


def test_a_sparsity_as_primary_endpoint_pairs_the_accuracy_there() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    pairs = {"alds.rate=0.5": "alds.rate=0.0"}
    at = compare.at_sparsity(steps, list(pairs) + list(pairs.values()), pairs, [0.7])
    expected = at[at["config"] == "alds.rate=0.5"].iloc[0]
    (row,) = compare.endpoint_table(steps, pairs, level=0.7).to_dict("records")
    assert (row["sparsity_low"], row["sparsity_high"]) == (0.7, 0.7)
    assert row["auc_mean"] == pytest.approx(expected["accuracy_mean"])
    assert row["baseline_auc_mean"] == pytest.approx(expected["baseline_accuracy_mean"])
    assert row["difference_mean"] == pytest.approx(expected["difference_mean"])
    assert row["paired_n"] == expected["paired_n"] == 2
    # A level the twin never reaches (its curve stops at 0.75): no row, never extrapolated.
    assert compare.endpoint_table(steps, pairs, level=0.8).empty


def test_at_flops_equals_at_sparsity_where_flops_track_weights() -> None:
    # An all-linear network: every weight costs the same FLOPs, kept FLOPs = kept weights.
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    steps["flops_effective"] = steps["remaining"] * 7e6
    pairs = {"alds.rate=0.5": "alds.rate=0.0"}
    configs = ["alds.rate=0.0", "alds.rate=0.5"]
    by_flops = compare.at_flops(steps, configs, pairs, [0.5, 0.3])
    by_weights = compare.at_sparsity(steps, configs, pairs, [0.5, 0.7])
    assert by_flops["flops_kept"].tolist() == pytest.approx([0.5, 0.5, 0.3, 0.3])
    assert by_flops["speedup"].tolist() == pytest.approx([2, 2, 1 / 0.3, 1 / 0.3])
    for column in ("accuracy_mean", "baseline_accuracy_mean", "difference_mean", "paired_n"):
        pd.testing.assert_series_equal(
            by_flops[column], by_weights[column], check_names=False, check_dtype=False
        )
    # Without FLOPs logged, an empty table with its columns.
    assert compare.at_flops(hand_built({0.0: BASELINE}), configs, pairs).empty

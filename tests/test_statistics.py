"""The report's statistics against hand computations and simulation: one rule (Bonferroni)
for the adjusted p, the simultaneous interval and the verdict; rows that cannot carry a
verdict; equivalence adjusted like differences; the power-based seed planner, checked by
simulating the rule it plans for; the endpoint over the range every configuration reaches."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.curve import mean_between
from orchestrator.report import compare, describe, planner, statistics
from tests.test_report import ALDS, BASELINE, S1, S2, S3, hand_built


def family_of(means: list[float], stds: list[float], counts: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"difference_mean": means, "difference_std": stds, "paired_n": counts})


def test_p_value_is_the_paired_t_test() -> None:
    differences = [0.012, 0.004, 0.009, -0.002]
    mean, std = float(np.mean(differences)), float(np.std(differences, ddof=1))
    expected = stats.ttest_1samp(differences, 0.0).pvalue
    assert statistics.p_value(mean, std, len(differences)) == pytest.approx(expected)
    assert math.isnan(statistics.p_value(0.01, math.nan, 1))
    assert math.isnan(statistics.p_value(0.01, 0.0, 5))  # no spread: no test


def test_judge_is_bonferroni_by_hand_over_the_rows_that_carry_a_verdict() -> None:
    # Rows 0 and 1 are members; row 2 has two seeds, row 3 no spread: outside the family.
    table = family_of([0.02, -0.01, 0.03, -0.028], [0.01, 0.02, 0.01, 0.0], [4, 5, 2, 3])
    found = statistics.judge(table)
    assert list(found["family_size"]) == [2, 2, 2, 2]
    for row, n in ((0, 4), (1, 5)):
        mean, std = table["difference_mean"][row], table["difference_std"][row]
        p = stats.ttest_1samp(
            mean + std * np.array(_unit_sample(n)), 0.0
        ).pvalue  # a sample with this mean and std
        assert found["p_value"][row] == pytest.approx(p)
        assert found["p_adjusted"][row] == pytest.approx(min(1.0, 2 * p))
        half = stats.t.ppf(1 - 0.025 / 2, n - 1) * std / math.sqrt(n)
        assert found["adjusted_ci_low"][row] == pytest.approx(mean - half)
        assert found["adjusted_ci_high"][row] == pytest.approx(mean + half)
    assert found["verdict"][2] == statistics.TOO_FEW
    assert found["verdict"][3] == statistics.NO_SPREAD
    assert found.loc[2:3, ["p_value", "p_adjusted", "adjusted_ci_low"]].isna().all().all()


def _unit_sample(n: int) -> list[float]:
    """n values with mean 0 and standard deviation (ddof 1) exactly 1."""
    values = np.arange(n, dtype=float) - (n - 1) / 2
    return list(values / np.std(values, ddof=1))


def test_the_verdict_the_adjusted_p_and_the_interval_never_disagree() -> None:
    generator = np.random.default_rng(0)
    for margin in (None, 0.005):
        size = 40
        table = family_of(
            list(generator.normal(0, 0.006, size)),
            list(generator.uniform(0.001, 0.01, size)),
            list(generator.integers(1, 12, size)),
        )
        found = statistics.judge(table, margin)
        shown = found["verdict"].isin(["ALDS better", "ALDS worse"])
        excludes = (found["adjusted_ci_low"] > 0) | (found["adjusted_ci_high"] < 0)
        assert shown.any() and (~shown).any()
        assert (shown == (found["p_adjusted"] < statistics.ALPHA)).all()
        assert (shown == excludes).all()
        if margin is not None:
            equivalent = found["verdict"] == statistics.equivalent_words(margin)
            accepted = found["p_equivalence_adjusted"] < statistics.ALPHA
            assert equivalent.any()
            assert (equivalent == (accepted & ~shown)).all()


def test_equivalence_is_tost_at_alpha_over_m() -> None:
    # Three members: TOST at 0.05/3, the 1 − 2·0.05/3 interval inside ±margin.
    table = family_of([0.001, 0.0, -0.002], [0.004, 0.004, 0.004], [8, 8, 8])
    margin = 0.005
    found = statistics.judge(table, margin)
    for row in range(3):
        mean = table["difference_mean"][row]
        half = stats.t.ppf(1 - 0.05 / 3, 7) * 0.004 / math.sqrt(8)
        bound = max(abs(mean - half), abs(mean + half))
        assert found["equivalence_bound"][row] == pytest.approx(bound)
        inside = bound < margin
        assert (found["verdict"][row] == statistics.equivalent_words(margin)) == inside
        # The TOST p-value: the larger one-sided p, adjusted by m.
        lower = stats.t.sf((mean + margin) / (0.004 / math.sqrt(8)), 7)
        upper = stats.t.sf((margin - mean) / (0.004 / math.sqrt(8)), 7)
        assert found["p_equivalence_adjusted"][row] == pytest.approx(min(1, 3 * max(lower, upper)))
    # Unadjusted (m = 1) the same row would pass where the family's does not.
    alone = statistics.judge(table.iloc[[2]], margin)
    assert alone["equivalence_bound"].iloc[0] < found["equivalence_bound"][2]


def test_degenerate_data_get_no_confident_verdict() -> None:
    # A new user's 2-seed sweep on 500 test images: both seeds −2.80 points.
    two = statistics.judge(family_of([-0.028], [0.0], [2]), margin=0.03)
    assert two["verdict"].tolist() == [statistics.TOO_FEW]
    assert two["p_adjusted"].isna().all()
    # Three seeds, no spread: never "worse" with p 0, never "equivalent" beside it.
    flat = statistics.judge(family_of([-0.028], [0.0], [3]), margin=0.03)
    assert flat["verdict"].tolist() == [statistics.NO_SPREAD]
    assert flat[["p_adjusted", "adjusted_ci_low", "adjusted_ci_high"]].isna().all().all()
    # A family of 34 at n = 3: an interval wider than the accuracy scale says nothing.
    wide = statistics.judge(family_of([0.0] * 34, [0.05] * 34, [3] * 34))
    assert (wide["verdict"] == statistics.UNINFORMATIVE).all()
    assert wide["adjusted_ci_low"].isna().all() and (wide["p_adjusted"] == 1).all()


def test_a_difference_and_an_equivalence_never_share_a_row() -> None:
    # −0.2 ± a tight interval: shown different from zero, and inside ±0.5 pt.
    table = family_of([-0.002], [0.0005], [10])
    found = statistics.judge(table, margin=0.005).iloc[0]
    assert found["p_adjusted"] < 0.05 and found["p_equivalence_adjusted"] < 0.05
    assert found["verdict"] == "ALDS worse"


def test_imp_only_rows_get_no_verdict_and_no_equivalence() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    pairs = {"alds.rate=0.5": "alds.rate=0.0"}
    table = compare.at_sparsity(steps, ["alds.rate=0.0", "alds.rate=0.5"], pairs, [0.5], 0.005)
    imp_only = table[table["baseline"].isna()].iloc[0]
    assert imp_only["verdict"] == "" and math.isnan(imp_only["p_equivalence_adjusted"])


def test_the_std_upper_bound_by_its_formula() -> None:
    assert planner.std_upper_bound(1.0, 5) == pytest.approx(math.sqrt(4 / 0.710723), rel=1e-5)
    assert planner.std_upper_bound(1.0, 5) == pytest.approx(2.37, abs=0.01)
    assert planner.std_upper_bound(1.0, 10) == pytest.approx(1.65, abs=0.01)


def test_the_planner_states_its_source_and_plans_nothing_below_three_seeds() -> None:
    assert planner.plan_seeds(0.005, 2, 0.005) is None
    assert planner.plan_seeds(0.0, 5, 0.005) is None
    found = planner.plan_seeds(0.005, 5, 0.005, family_size=6)
    assert found is not None
    text = found.describe()
    assert "estimated from 5 seeds" in text and "family of 6" in text and "80% power" in text
    low, high = found.equivalence
    assert low is not None and high is not None and low < high  # the std's upper bound
    # Textbook check at large n: n ≈ (z(1 − α) + z(0.9))² σ²/δ² for TOST at a true 0.
    normal = (stats.norm.ppf(0.95) + stats.norm.ppf(0.9)) ** 2
    at_one = planner.plan_seeds(0.01, 5, 0.001, family_size=1)
    assert at_one is not None and at_one.equivalence[0] == pytest.approx(normal * 100, rel=0.02)


@pytest.mark.parametrize("family_size", [1, 6])
def test_the_planned_seeds_reach_the_power_in_simulation(family_size: int) -> None:
    """Synthetic paired differences at the planned n, judged by the report's own rule: the
    share that reaches the verdict is the planned power, within a binomial interval."""
    std, margin, power = 0.004, 0.005, 0.8
    plan = planner.plan_seeds(std, 10, margin, family_size=family_size)
    assert plan is not None
    generator = np.random.default_rng(1)
    repeats = 2000
    for truth, planned, words in (
        (0.0, plan.equivalence[0], statistics.equivalent_words(margin)),
        (margin, plan.difference[0], "ALDS better"),
    ):
        assert planned is not None
        samples = generator.normal(truth, std, (repeats, planned))
        table = family_of(
            list(samples.mean(axis=1)), list(samples.std(axis=1, ddof=1)), [planned] * repeats
        )
        verdicts = statistics.judge(table, margin, family_size=family_size)["verdict"]
        reached = float((verdicts == words).mean())
        expected = (
            planner.power_of_equivalence(planned, std, margin, 0.05 / family_size)
            if truth == 0.0
            else planner.power_of_difference(planned, std, margin, 0.05 / family_size)
        )
        slack = 3 * math.sqrt(expected * (1 - expected) / repeats)
        assert expected >= power and abs(reached - expected) < slack
        assert reached > power - slack
        # One seed fewer falls short: the planner's n is the least.
        fewer = (
            planner.power_of_equivalence(planned - 1, std, margin, 0.05 / family_size)
            if truth == 0.0
            else planner.power_of_difference(planned - 1, std, margin, 0.05 / family_size)
        )
        assert fewer < power


def test_verdicts_read_the_family_wise_interval() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    pairs = compare.baseline_pairs(steps, ["alds.rate"], lambda p: {**p, "alds.rate": 0.0})
    table = compare.versus_baseline(steps, pairs, margin=0.5)
    # Two seeds each: no verdict, and no number that would read as one.
    assert (table["verdict"] == statistics.TOO_FEW).all()
    assert table["p_adjusted"].isna().all()
    summary = compare.summary_table(
        describe.curve_table(steps, ["alds.rate"]),
        table,
        compare.tolerance_table(steps),
        pairs,
        ["alds.rate"],
    )
    alds = summary[summary["role"] == compare.ALDS_PLUS_IMP].iloc[0]
    assert alds["verdict"] == statistics.TOO_FEW and math.isnan(alds["equivalence_bound"])


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
    assert row["verdict"] == statistics.TOO_FEW
    # One pair: the range every configuration reaches is the pair's own.
    assert (row["pair_sparsity_low"], row["pair_sparsity_high"]) == pytest.approx((S1, 0.75))
    assert row["pair_difference_mean"] == pytest.approx(row["difference_mean"])


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


def test_the_endpoint_is_read_over_the_range_every_configuration_reaches() -> None:
    # ALDS 0.5 starts at S1; ALDS 0.8 only at S2: the common range is S2 to the twin's 0.75.
    later = {
        0: [(0.0, 0.90), (S2, 0.89), (S3, 0.85)],
        1: [(0.0, 0.92), (S2, 0.91), (S3, 0.90)],
    }
    steps = hand_built({0.0: BASELINE, 0.5: ALDS, 0.8: later})
    pairs = {"alds.rate=0.5": "alds.rate=0.0", "alds.rate=0.8": "alds.rate=0.0"}
    table = compare.endpoint_table(steps, pairs).set_index("config")
    assert list(table["sparsity_low"]) == pytest.approx([S2, S2])
    assert list(table["sparsity_high"]) == pytest.approx([0.75, 0.75])
    # ALDS 0.5's own range is wider, from S1; its difference there stays beside.
    own = table.loc["alds.rate=0.5"]
    assert (own["pair_sparsity_low"], own["pair_sparsity_high"]) == pytest.approx((S1, 0.75))
    curves = compare._seed_curves(steps)
    for config in pairs:
        expected = [
            mean_between(*curves[config][seed], S2, 0.75)
            - mean_between(*curves["alds.rate=0.0"][seed], S2, 0.75)
            for seed in (0, 1)
        ]
        assert table.loc[config, "difference_mean"] == pytest.approx(np.mean(expected))
    wide = [
        mean_between(*curves["alds.rate=0.5"][seed], S1, 0.75)
        - mean_between(*curves["alds.rate=0.0"][seed], S1, 0.75)
        for seed in (0, 1)
    ]
    assert own["pair_difference_mean"] == pytest.approx(np.mean(wide))


def test_collapse_is_the_first_step_at_chance_or_with_an_empty_layer() -> None:
    # IMP only collapses at remaining 1/16 (seeds 0, 1, 2: chance accuracy); ALDS at 1/32,
    # 1/64 and 1/32 (seed 1 by an empty layer first): 1, 2 and 1 halvings later.
    def curve(drop: int) -> list[tuple[float, float]]:
        return [(1 - 2.0**-k, 0.9 if k < drop else 0.1) for k in range(7)]

    steps = hand_built(
        {0.0: {0: curve(4), 1: curve(4), 2: curve(4)}, 0.5: {0: curve(5), 1: curve(7), 2: curve(5)}}
    )
    layer = "remaining/fc1"
    steps[layer] = 0.5
    emptied = (steps["alds.rate"] == 0.5) & (steps["seed"] == 1) & (steps["step"] == 6)
    steps.loc[emptied, layer] = 0.0
    table = describe.collapse_table(steps, {"alds.rate=0.5": "alds.rate=0.0"}, chance=0.1)
    table = table.set_index("config")
    twin, alds = table.loc["alds.rate=0.0"], table.loc["alds.rate=0.5"]
    assert (twin["collapsed"], twin["sparsity_median"]) == (3, pytest.approx(1 - 2**-4))
    assert twin["verdict"] == ""  # IMP only: compared with nothing
    assert alds["collapsed"] == 3 and alds["sparsity_max"] == pytest.approx(1 - 2**-6)
    assert alds["difference_mean"] == pytest.approx(np.mean([1, 2, 1]))
    assert alds["difference_std"] == pytest.approx(np.std([1, 2, 1], ddof=1))
    assert alds["paired_n"] == 3 and alds["verdict"] in ("ALDS later", "no difference shown")
    reasons = describe._collapse_points(steps, 0.1).set_index(["config", "seed"])["reason"]
    assert reasons[("alds.rate=0.5", 1)] == "fc1 empty"
    assert reasons[("alds.rate=0.0", 0)] == "chance accuracy"
    # Nothing collapses above chance without an empty layer: said, not judged.
    calm = describe.collapse_table(steps, {"alds.rate=0.5": "alds.rate=0.0"}, chance=0.01)
    calm = calm.set_index("config")
    assert calm.loc["alds.rate=0.0", "collapsed"] == 0
    assert calm.loc["alds.rate=0.5", "verdict"] == "only ALDS collapsed"


def test_pairs_with_no_range_in_common_are_said_so_not_judged() -> None:
    # ALDS 0.5 covers S1–S3 and its twin 0–0.75; ALDS 0.8 and its own twin only 0.8–0.9.
    high = {seed: [(0.0, 0.9), (0.8, 0.85), (0.9, 0.84)] for seed in (0, 1, 2)}
    later = {seed: [(0.0, 0.9), (0.8, 0.86), (0.9, 0.83)] for seed in (0, 1, 2)}
    steps = hand_built({0.0: BASELINE, 0.5: ALDS, 0.1: high, 0.8: later})
    pairs = {"alds.rate=0.5": "alds.rate=0.0", "alds.rate=0.8": "alds.rate=0.1"}
    table = compare.endpoint_table(steps, pairs, margin=0.005)
    assert (table["verdict"] == compare.NO_COMMON_RANGE).all()
    assert table["sparsity_low"].isna().all() and table["difference_mean"].isna().all()
    # Each pair's own range still stands beside it.
    assert table["pair_difference_mean"].notna().all()

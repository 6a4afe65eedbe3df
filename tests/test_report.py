"""``orchestrate report``: the tables on hand-built curves, then a real small sweep end to end."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner, Result
from matplotlib.image import imread
from mlflow import MlflowClient

from orchestrator import plan, stored_names
from orchestrator.cli import main
from orchestrator.config import ConfigError
from orchestrator.report import (
    compare,
    describe,
    figures,
    notes,
    parse_formats,
    parse_levels,
    render,
    schema,
    sources,
    statistics,
    tables,
)
from orchestrator.study.study import create_or_resume, open_storage
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import orchestrate, run_sweep
from orchestrator.testing.sweeps import sweep_document

RATE = "alds.rate"

# Two seeds of the IMP-only baseline and of ALDS at 0.5, whose compressed steps sit at other
# sparsities than the baseline's (as in factorize mode): (sparsity, accuracy) per step. The
# baseline keeps 100%, 50%, 25% of the weights; ALDS 2^-0.5, 2^-1.5, 2^-2.5: each halfway
# between two of the baseline's on the log(remaining) scale curves are read on.
S1, S2, S3 = (1 - 2**-0.5, 1 - 2**-1.5, 1 - 2**-2.5)
BASELINE = {
    0: [(0.0, 0.90), (0.0, 0.90), (0.5, 0.88), (0.75, 0.80)],
    1: [(0.0, 0.92), (0.0, 0.91), (0.5, 0.89), (0.75, 0.78)],
}
ALDS = {
    0: [(0.0, 0.90), (S1, 0.895), (S2, 0.893), (S3, 0.85)],
    1: [(0.0, 0.92), (S1, 0.915), (S2, 0.912), (S3, 0.911)],
}


def hand_report(computed: dict, **fields: object) -> schema.Report:
    """A report over hand-built tables of the ALDS rate alone, maximising accuracy."""
    defaults: dict = {"study": "hand", "params": [RATE], "objectives": ["accuracy"]}
    defaults |= {"directions": ["maximize"], "counts": {}, "notes": [], "tables": computed}
    return schema.Report(**{**defaults, **fields})


def twin_lookup(params: dict) -> dict:
    """The IMP-only twin of a configuration here: the same parameters at ALDS rate 0."""
    return {**params, RATE: 0.0}


def hand_built(
    arms: dict[float, dict[int, list[tuple[float, float]]]], params: tuple[str, ...] = (RATE,)
) -> pd.DataFrame:
    """A labelled steps frame of complete trials with the given curves."""
    trials, steps = [], []
    for rate, seeds in arms.items():
        for seed, curve in seeds.items():
            number = len(trials)
            trials.append({"number": number, "state": "COMPLETE", "seed": seed, RATE: rate})
            for step, (sparsity, accuracy) in enumerate(curve):
                steps.append(
                    {
                        "trial": number,
                        "step": step,
                        "accuracy": accuracy,
                        "sparsity": sparsity,
                        "remaining": 1 - sparsity,
                        "params_nonzero": round(1000 * (1 - sparsity)),
                    }
                )
    frame = pd.DataFrame(steps)
    for key in schema.METRICS:
        if key not in frame:
            frame[key] = math.nan
    return sources.label_steps(frame, pd.DataFrame(trials), list(params), {})


def test_versus_baseline_interpolates_both_arms_and_pairs_seeds() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    pairs = compare.baseline_pairs(steps, [RATE], twin_lookup)
    assert pairs == {"alds.rate=0.5": "alds.rate=0.0"}
    table = compare.versus_baseline(steps, pairs).set_index("step")

    assert list(table.index) == [1, 2, 3]
    assert list(table["sparsity"]) == pytest.approx([S1, S2, S3])
    # S1 is halfway between the baseline's steps at 0 and 0.5: 0.89 (seed 0), 0.90 (seed 1).
    assert table.loc[1, "baseline_accuracy_mean"] == pytest.approx(0.895)
    assert table.loc[1, "difference_mean"] == pytest.approx(0.01)  # +0.005 and +0.015
    assert table.loc[1, "difference_std"] == pytest.approx(0.01 / math.sqrt(2))
    # S2 is halfway between 0.5 and 0.75: baseline 0.84 and 0.835; ALDS 0.893 and 0.912.
    assert table.loc[2, "baseline_accuracy_mean"] == pytest.approx(0.8375)
    assert table.loc[2, "accuracy_mean"] == pytest.approx(0.9025)
    assert table.loc[2, "difference_mean"] == pytest.approx(0.065)
    assert table.loc[2, "difference_std"] == pytest.approx(0.024 / math.sqrt(2))
    assert table.loc[2, "paired_n"] == 2
    # 95% paired t-interval by hand: t(0.975, 1 degree of freedom) = 12.7062, s = 0.024/√2.
    half = 12.7062047 * (0.024 / math.sqrt(2)) / math.sqrt(2)
    assert table.loc[2, "difference_ci_low"] == pytest.approx(0.065 - half)
    assert table.loc[2, "difference_ci_high"] == pytest.approx(0.065 + half)
    assert (table.loc[[1, 2], "difference_ci_low"] < table.loc[[1, 2], "difference_mean"]).all()
    # S3 is beyond the baseline's last step: no value, never extrapolated.
    assert math.isnan(table.loc[3, "baseline_accuracy_mean"])
    assert math.isnan(table.loc[3, "difference_mean"])
    assert table.loc[3, "paired_n"] == 0 and table.loc[3, "n"] == 2


def test_at_sparsity_reads_every_configuration_at_the_same_levels() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    pairs = {"alds.rate=0.5": "alds.rate=0.0"}
    configs = ["alds.rate=0.0", "alds.rate=0.5"]
    table = compare.at_sparsity(steps, configs, pairs, [0.1, S2, 0.8]).set_index(
        ["sparsity", "config"]
    )
    assert list(table.index) == [(level, c) for level in (0.1, S2, 0.8) for c in configs]
    # The baseline is a row of its own, compared with nothing.
    assert table.loc[(S2, "alds.rate=0.0"), "accuracy_mean"] == pytest.approx(0.8375)
    assert math.isnan(table.loc[(S2, "alds.rate=0.0"), "difference_mean"])
    # The same numbers as the step-by-step table where the levels coincide.
    assert table.loc[(S2, "alds.rate=0.5"), "difference_mean"] == pytest.approx(0.065)
    assert table.loc[(S2, "alds.rate=0.5"), "remaining"] == pytest.approx(2**-1.5)
    # ALDS's first compressed network is at S1 (29%): nothing at 0.1 (never extrapolated), and the
    # baseline's curve ends at 0.75: nothing at 0.8 for it.
    assert table.loc[(0.1, "alds.rate=0.5"), "n"] == 0
    assert math.isnan(table.loc[(0.1, "alds.rate=0.5"), "accuracy_mean"])
    assert table.loc[(0.8, "alds.rate=0.0"), "n"] == 0
    assert table.loc[(0.8, "alds.rate=0.5"), "n"] == 2


@pytest.mark.parametrize("text", ["", "0.5,1.0", "0,0.5", "half", "0.5,,x"])
def test_bad_sparsity_levels_are_named(text: str) -> None:
    with pytest.raises(ConfigError, match="--sparsity-levels"):
        parse_levels(text)
    assert parse_levels("0.5, 0.9") == (0.5, 0.9)


def test_versus_baseline_pairs_only_common_seeds() -> None:
    # ALDS ran seeds 1 and 2, the baseline 0 and 1: one pair; each arm keeps all its seeds.
    steps = hand_built({0.0: BASELINE, 0.5: {1: ALDS[1], 2: ALDS[0]}})
    table = compare.versus_baseline(steps, {"alds.rate=0.5": "alds.rate=0.0"}).set_index("step")
    assert table.loc[2, "n"] == 2 and table.loc[2, "baseline_n"] == 2
    assert table.loc[2, "paired_n"] == 1
    assert table.loc[2, "difference_mean"] == pytest.approx(0.912 - 0.835)
    assert math.isnan(table.loc[2, "difference_std"])  # one pair has no spread


def test_equal_sparsities_match_exactly_at_the_curve_end() -> None:
    # Three seeds at the same levels: their mean may differ from them in the last bit.
    curve = [(0.0, 0.9), (0.0, 0.9), (0.1, 0.85), (0.3, 0.8)]
    other = [(0.0, 0.9), (0.0, 0.88), (0.1, 0.86), (0.3, 0.82)]
    steps = hand_built({0.0: dict.fromkeys(range(3), curve), 0.3: dict.fromkeys(range(3), other)})
    table = compare.versus_baseline(steps, {"alds.rate=0.3": "alds.rate=0.0"})
    assert table["paired_n"].tolist() == [3, 3, 3]
    assert table["difference_mean"].tolist() == pytest.approx([-0.02, 0.01, 0.02])


def test_tolerance_table_walks_each_seed_until_it_drops() -> None:
    within = compare.tolerance_table(hand_built({0.0: BASELINE, 0.5: ALDS})).set_index("config")
    # Baseline: both seeds lose more than a point at their second IMP step (sparsity 0.5).
    assert within.loc["alds.rate=0.0", "max_sparsity_within_mean"] == 0.0
    assert within.loc["alds.rate=0.0", "within_to_end"] == 0
    # ALDS: seed 0 drops at S3 (0.85 < 0.89), seed 1 never drops (0.911 >= 0.91).
    # Seed 0 stays within up to S2, seed 1 to S3.
    assert within.loc["alds.rate=0.5", "max_sparsity_within_mean"] == pytest.approx((S2 + S3) / 2)
    assert within.loc["alds.rate=0.5", "max_sparsity_within_std"] == pytest.approx(
        (S3 - S2) / math.sqrt(2)
    )
    assert within.loc["alds.rate=0.5", "within_to_end"] == 1
    # What the summary shows: the median and the range over the seeds.
    row = within.loc["alds.rate=0.5"]
    assert row["max_sparsity_within_median"] == pytest.approx((S2 + S3) / 2)
    assert (row["max_sparsity_within_min"], row["max_sparsity_within_max"]) == pytest.approx(
        (S2, S3)
    )
    loose = compare.tolerance_table(hand_built({0.0: BASELINE}), tolerance=0.05)
    assert loose["max_sparsity_within_mean"].item() == 0.5


def test_curve_and_summary_tables_aggregate_over_seeds() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    curves = describe.curve_table(steps, [RATE])
    row = curves[(curves[RATE] == 0.5) & (curves["step"] == 2)].iloc[0]
    assert row["n"] == 2 and row["phase"] == "imp"
    assert row["accuracy_mean"] == pytest.approx(0.9025)
    assert row["accuracy_std"] == pytest.approx(0.019 / math.sqrt(2))
    assert row["params_nonzero_mean"] == round(1000 * 2**-1.5)
    # The IMP-only arm's step 1 is its network before IMP: no ALDS ran.
    assert curves["phase"].tolist()[:3] == ["dense", "no alds", "imp"]
    alds_steps = curves[curves[RATE] == 0.5]["phase"].tolist()
    assert alds_steps[:3] == ["dense", "alds", "imp"]

    pairs = compare.baseline_pairs(curves, [RATE], twin_lookup)
    versus = compare.versus_baseline(steps, pairs)
    summary = compare.summary_table(
        curves, versus, compare.tolerance_table(steps), pairs, [RATE]
    ).set_index(RATE)
    assert summary.loc[0.0, "role"] == "IMP only"
    assert math.isnan(summary.loc[0.0, "difference_mean"])
    assert summary.loc[0.5, "role"] == "ALDS + IMP"
    assert summary.loc[0.5, "final_sparsity"] == pytest.approx(S3)
    # The highest sparsity both arms reach is S2 (the baseline stops at 0.75).
    assert summary.loc[0.5, "matched_sparsity"] == pytest.approx(S2)
    assert summary.loc[0.5, "difference_mean"] == pytest.approx(0.065)
    assert not summary["within_lower_bound"].any()  # some seed of each dropped

    # With a 20-point tolerance no curve ever drops: the sparsity reached is only a lower bound.
    loose = compare.summary_table(
        curves, versus, compare.tolerance_table(steps, tolerance=0.2), pairs, [RATE]
    )
    assert loose["within_lower_bound"].all()
    report = hand_report({"summary": loose, "curves": curves}, tolerance=0.2)
    shown = render.present(report, "summary").set_index(RATE)
    assert shown.loc["0.5", "max sparsity within 20 pt of dense (%), median"] == "≥ 82.32"
    assert shown.loc["0.5", "range over seeds (%)"] == "[82.32, 82.32]"
    assert shown.loc["0.5", "Δ vs IMP only there (pt)"] == "+6.50 ± 1.70"
    assert shown.loc["0", "Δ vs IMP only there (pt)"] == "–"


def test_the_layer_table_shows_a_layer_imp_emptied_and_alds_kept() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    # Layer "out" of the baseline nearly vanishes by its last step in seed 0; ALDS keeps it.
    steps["remaining/hidden"] = 1 - steps["sparsity"]
    steps["remaining/out"] = 1.0
    last = steps.groupby("trial")["step"].transform("max") == steps["step"]
    steps.loc[last & (steps[RATE] == 0) & (steps["seed"] == 0), "remaining/out"] = 0.004
    steps.loc[last & (steps[RATE] == 0) & (steps["seed"] == 1), "remaining/out"] = 0.2
    steps.loc[last & (steps[RATE] == 0.5), "remaining/out"] = 0.3
    # After ALDS (step 1) a factorized layer stores a share of its dense weights.
    after_alds = (steps["step"] == 1) & (steps[RATE] == 0.5)
    steps.loc[after_alds & (steps["seed"] == 0), "remaining/hidden"] = 0.4
    steps.loc[after_alds & (steps["seed"] == 1), "remaining/hidden"] = 0.6
    pairs = {"alds.rate=0.5": "alds.rate=0.0"}
    table = describe.layer_table(steps, pairs).set_index(["config", "layer"])
    baseline = table.loc[("alds.rate=0.0", "out")]
    assert baseline["collapsed"] and baseline["remaining_min"] == pytest.approx(0.004)
    assert baseline["remaining_mean"] == pytest.approx(0.102)
    ours = table.loc[("alds.rate=0.5", "out")]
    assert not ours["collapsed"] and ours["baseline_collapsed"]
    assert ours["remaining_mean"] == pytest.approx(0.3)
    assert ours["baseline_remaining_mean"] == pytest.approx(0.102)
    assert ours["step"] == 3 and ours["sparsity"] == pytest.approx(S3)
    assert not table.loc[("alds.rate=0.5", "hidden"), "collapsed"]
    assert table.loc[("alds.rate=0.5", "hidden"), "after_alds_mean"] == pytest.approx(0.5)
    assert table.loc[("alds.rate=0.0", "hidden"), "after_alds_mean"] == pytest.approx(1.0)
    assert notes.collapse_notes(table.reset_index()) == [
        "alds.rate=0.0: IMP emptied out (0.4% left)",
        "alds.rate=0.5 kept layers its IMP-only twin emptied: out",
    ]


def test_the_magnitude_table_compares_alds_with_its_twin_seed_by_seed() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    # Dense (step 0): 2% of the mass in the smallest tenth. After ALDS 1% and 1.2% (seeds 0,
    # 1); the twin's fine-tuning leaves 2.1% and 2.0%: ALDS lower by 1.1 and 0.8 points.
    smallest = {(0.0, 0): 0.021, (0.0, 1): 0.020, (0.5, 0): 0.010, (0.5, 1): 0.012}
    steps["mass_smallest_decile"] = 0.02
    steps["mass_largest_decile"] = 0.30
    for (rate, seed), value in smallest.items():
        at = (steps[RATE] == rate) & (steps["seed"] == seed) & (steps["step"] == 1)
        steps.loc[at, "mass_smallest_decile"] = value
    table = describe.magnitude_table(steps, {"alds.rate=0.5": "alds.rate=0.0"})
    row = table.iloc[0]
    assert row["smallest_dense"] == pytest.approx(0.02)
    assert row["smallest_alds"] == pytest.approx(0.011)
    assert row["smallest_baseline"] == pytest.approx(0.0205)
    assert row["smallest_difference_mean"] == pytest.approx(-0.0095)
    half = 12.7062047 * (0.003 / math.sqrt(2)) / math.sqrt(2)
    assert (row["smallest_ci_low"], row["smallest_ci_high"]) == pytest.approx(
        (-0.0095 - half, -0.0095 + half)
    )
    assert row["smallest_verdict"] == statistics.TOO_FEW  # two seeds carry no verdict
    assert row["largest_difference_mean"] == 0 and row["paired_n"] == 2


def test_the_paired_differences_figure_draws_each_interval() -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    versus = compare.versus_baseline(steps, {"alds.rate=0.5": "alds.rate=0.0"})
    figure = figures.plot_paired_differences(versus, [RATE])
    assert figure is not None
    (axis,) = figure.axes
    # Two matched steps with a difference (the third lies beyond the baseline): their means.
    line = axis.lines[0]
    assert list(line.get_ydata()) == pytest.approx([1.0, 6.5])
    assert figures.plot_paired_differences(versus.iloc[0:0], [RATE]) is None


def test_confidence_intervals_and_the_words_the_report_uses() -> None:
    differences = pd.Series([0.010, 0.020, 0.015, 0.025, 0.030])
    low, high = statistics.paired_interval(differences)
    # By hand: mean 0.02, s = 0.0079057, t(0.975, 4) = 2.7764451.
    half = 2.7764451 * 0.0079056942 / math.sqrt(5)
    assert (low, high) == pytest.approx((0.02 - half, 0.02 + half))
    assert low < differences.mean() < high
    assert all(math.isnan(v) for v in statistics.paired_interval(pd.Series([0.05])))
    # The words the report uses, one family of three rows: above zero, below, and neither.
    table = pd.DataFrame(
        {
            "difference_mean": [0.02, -0.02, 0.001],
            "difference_std": [differences.std()] * 3,
            "paired_n": [5, 5, 5],
        }
    )
    assert list(statistics.judge(table)["verdict"]) == [
        "ALDS better",
        "ALDS worse",
        "no difference shown",
    ]


def test_baseline_pairs_only_equal_schedules() -> None:
    configs = pd.DataFrame(
        [
            {"config": "a", RATE: 0.0, "imp.prune_fraction": 0.2},
            {"config": "b", RATE: 0.0, "imp.prune_fraction": 0.3},
            {"config": "c", RATE: 0.5, "imp.prune_fraction": 0.3},
            {"config": "d", RATE: 0.5, "imp.prune_fraction": 0.25},
        ]
    )
    params = [RATE, "imp.prune_fraction"]
    # d has no twin at 0.25: it is not compared with the baseline of another schedule.
    assert compare.baseline_pairs(configs, params, twin_lookup) == {"c": "b"}
    assert compare.baseline_pairs(configs[plan.is_alds(configs[RATE])], params, twin_lookup) == {}
    curves = configs.assign(step=1)
    said = notes.report_notes(pd.DataFrame(columns=["state"]), curves, {"c": "b"}, {})
    assert said == [
        "1 ALDS configuration(s) without a complete IMP-only twin (same schedule and seed), "
        "not compared: d"
    ]


def test_metrics_are_the_numeric_fields_a_step_logs() -> None:
    # Imported here: procedure imports torch, which the report itself never needs.
    from orchestrator.trial.procedure import Step

    # Every field set, so that metrics() leaves out none (it skips a None or NaN value).
    values = {f.name: 1 for f in dataclasses.fields(Step)}
    step = Step(**(values | {"phase": "imp", "layers": {"fc1": 0.5}}))
    logged = {k for k in step.metrics() if not k.startswith(stored_names.layer_remaining(""))}
    assert set(schema.METRICS) == logged
    assert len(schema.METRICS) == len(set(schema.METRICS))


def hand_inputs(levels: tuple[float, ...] = schema.LEVELS) -> tables.Inputs:
    """The report's inputs for the hand-built baseline and ALDS curves, every trial complete."""
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    trials = steps.groupby("trial").first().reset_index()[["trial", "state", "seed", RATE]]
    trials = trials.rename(columns={"trial": "number"}).assign(
        **{
            "value:accuracy": [0.8, 0.78, 0.85, 0.911],
            "duration_s": 60.0,
            stored_names.TRIAL_RUN_ID: [f"run{n}" for n in range(4)],
            stored_names.TRIAL_KEY: [f"key{n}" for n in range(4)],
            stored_names.TRIAL_REUSED_FROM: [None, None, None, "run0"],
            "missing": None,
        }
    )
    return tables.Inputs(
        trials=trials,
        steps=steps,
        params=[RATE],
        twin_lookup=twin_lookup,
        label=functools.partial(sources.config_label, params=[RATE]),
        objectives=["accuracy"],
        directions=["maximize"],
        levels=levels,
    )


def test_the_registry_computes_every_table_from_the_inputs() -> None:
    inputs = hand_inputs(levels=(0.5,))
    computed = {spec.name: inputs.table(spec.name) for spec in tables.TABLES}
    assert list(computed) == [spec.name for spec in tables.TABLES]
    assert len(computed) == len({spec.name for spec in tables.TABLES})
    # The same numbers as the pure functions, and each table computed once.
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    pairs = {"alds.rate=0.5": "alds.rate=0.0"}
    assert inputs.pairs == pairs
    versus = compare.versus_baseline(steps, pairs)
    pd.testing.assert_frame_equal(computed["versus_baseline"], versus)
    summary = compare.summary_table(
        describe.curve_table(steps, [RATE]), versus, compare.tolerance_table(steps), pairs, [RATE]
    )
    pd.testing.assert_frame_equal(computed["summary"], summary)
    assert computed["at_sparsity"]["sparsity"].tolist() == [0.5, 0.5]
    assert inputs.table("curves") is computed["curves"]
    assert computed["trials"]["config"].tolist() == ["alds.rate=0.0"] * 2 + ["alds.rate=0.5"] * 2
    assert computed["best"]["best_trial"].tolist() == [3, 0]
    assert "config" not in computed["steps"]
    # Every presented table's columns name columns the table has.
    report = hand_report(computed)
    for spec in tables.TABLES:
        if spec.presented and not computed[spec.name].empty:
            shown = {c.source for c in spec.shown(report)}
            assert shown <= set(computed[spec.name].columns), spec.name
    with pytest.raises(KeyError, match="no table 'nope'"):
        inputs.table("nope")


def test_the_worked_example_of_a_table_is_the_code() -> None:
    # docs/report.md, "Adding a table": its function, as in compare.py, and its registry entry,
    # as in tables.py.
    document = (Path(__file__).parents[1] / "docs" / "report.md").read_text()
    section = document.split("### Adding a table", 1)[1].split("\n## ", 1)[0]
    function, entry = re.findall(r"```python\n(.*?)```", section, re.S)
    assert function in Path(compare.__file__).read_text()
    code = Path(tables.__file__).read_text()
    # The entry stands alone in the document (no trailing comma: ruff would make it a tuple).
    indented = "".join(f"    {line}" if line else line for line in entry.splitlines(True))
    assert indented.rstrip("\n") + ",\n" in code


def test_markdown_and_latex_tables_are_well_formed() -> None:
    table = pd.DataFrame({"a_b": ["x|y", "50%"], "acc (%)": ["87.31 ± 0.42", "–"]})
    markdown = render.markdown_table(table, [False, True]).splitlines()
    assert markdown[1] == "|---|---:|"
    assert all(line.count("|") - line.count("\\|") == 3 for line in markdown)
    latex = render.latex_table(table, [False, True])
    assert latex.count(r"\begin{tabular}{lr}") == 1 and latex.count(r"\end{tabular}") == 1
    assert all(rule in latex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert r"a\_b" in latex and r"50\%" in latex and r"$\pm$" in latex and "±" not in latex


def test_unknown_format_is_named() -> None:
    assert parse_formats("csv, MD") == ["csv", "md"]
    with pytest.raises(ConfigError, match="pdf"):
        parse_formats("csv,pdf")


# --------------------------------------------------------------------------- a real sweep


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real sweep: synthetic data, 2 seeds, the IMP-only baseline and ALDS at 0.3 and 0.6,
    and both lottery-ticket controls of the baseline."""
    tmp_path = tmp_path_factory.mktemp("report")
    document = sweep_document(
        tmp_path,
        "reported",
        seeds=[0, 1],
        imp={"controls": ["random_mask", "reinit"]},
        search={"sampler": "grid", "space": {RATE: {"choices": [0.0, 0.3, 0.6]}}},
    )
    path, workspace = run_sweep(tmp_path, document)
    output = tmp_path / "out"
    result = orchestrate(
        "report", str(path), "--output", str(output), "--margin", "0.5", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        "document": document,
        "path": path,
        "tmp": tmp_path,
        "output": output,
        "stdout": result.stdout,
        "storage": f"sqlite:///{workspace / 'study.db'}",
        "client": MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}"),
    }


@pytest.mark.slow
def test_the_yamls_report_section_sets_the_margin_and_the_primary_endpoint(swept: dict) -> None:
    from orchestrator import report as reports
    from orchestrator.trial.identity import experiment_hash

    plain = parse_config(swept["document"])
    declared = parse_config({**swept["document"], "report": {"margin": 0.5, "primary": 0.5}})
    # The same study: how the report judges is not what the study is keyed by.
    assert experiment_hash(declared) == experiment_hash(plain)
    study = optuna.load_study(study_name="reported", storage=swept["storage"])
    endpoint = reports.build(study, declared).tables["endpoint"]
    # Two seeds: the equivalence test's column, and no verdict.
    assert len(endpoint) == 2 and "p_equivalence_adjusted" in endpoint
    assert (endpoint["verdict"] == statistics.TOO_FEW).all()
    assert (endpoint[["sparsity_low", "sparsity_high"]] == 0.5).all().all()
    # Without the section: the mean over the range, and no TOST column.
    endpoint = reports.build(study, plain).tables["endpoint"]
    assert "p_equivalence" not in endpoint and (endpoint["sparsity_high"] > 0.5).all()
    # From the file given to `orchestrate report`, though the study was created without it.
    path = swept["tmp"] / "declared.yaml"
    path.write_text(yaml.safe_dump({**swept["document"], "report": {"margin": 0.5}}))
    output = swept["tmp"] / "declared"
    result = CliRunner().invoke(main, ["report", str(path), "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "p_equivalence_adjusted" in pd.read_csv(output / "endpoint.csv")


@pytest.mark.slow
def test_every_format_is_written_and_parses(swept: dict) -> None:
    output = swept["output"]
    presented = (
        "endpoint",
        "summary",
        "at_sparsity",
        "at_flops",
        "versus_baseline",
        "controls",
        "magnitudes",
        "layers",
        "collapse",
        "curves",
        "best",
        "trials",
    )
    for name in presented:
        csv = pd.read_csv(output / f"{name}.csv")
        records = pd.read_json(output / f"{name}.json", orient="records")
        assert len(csv) == len(records) > 0, name
        assert list(csv.columns) == list(records.columns)
    # A row per step of every trial: written once, as CSV, whatever data format is asked.
    assert len(pd.read_csv(output / "steps.csv")) > 0
    assert not (output / "steps.json").exists() and not (output / "steps.tex").exists()
    for name in presented:
        latex = (output / f"{name}.tex").read_text()
        environments = re.findall(r"\\(begin|end)\{(\w+)\}", latex)
        assert environments == [("begin", "tabular"), ("end", "tabular")], name
        body = latex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
        header = latex.split(r"\toprule")[1].split(r"\midrule")[0]
        # Every row has the header's number of cells (unescaped & only as separators).
        cells = header.count("&") - header.count(r"\&")
        assert all(row.count("&") - row.count(r"\&") == cells for row in body), name
    markdown = (output / "report.md").read_text()
    tables = [block for block in markdown.split("\n\n") if block.startswith("| ")]
    assert len(tables) == len(presented)
    for block in tables:
        lines = block.splitlines()
        assert re.fullmatch(r"\|(-{3}:?\|)+", lines[1])
        assert len({line.count(" | ") for line in lines if not line.startswith("|-")}) == 1
    assert "![Accuracy against remaining weights](accuracy_vs_remaining.png)" in markdown
    # The family-wise columns, and with --margin the equivalence test, in every format.
    judged = ("endpoint", "summary", "at_sparsity", "at_flops", "versus_baseline", "controls")
    for name in judged:
        csv = pd.read_csv(output / f"{name}.csv")
        assert {"p_value", "p_adjusted", "adjusted_ci_low", "adjusted_ci_high"} <= set(csv.columns)
        assert {"verdict", "p_equivalence_adjusted"} <= set(csv.columns)
        assert "p equivalence (Bonferroni)" in (output / f"{name}.tex").read_text()
    assert markdown.count("| p equivalence (Bonferroni) |") == len(judged)
    assert "family-wise CI" in markdown
    assert "![Accuracy against effective FLOPs kept](accuracy_vs_flops.png)" in markdown
    # The controls: each against the IMP-only twin at every cycle, both seeds paired, and
    # nowhere else but in the trials and steps.
    controls = pd.read_csv(output / "controls.csv")
    assert sorted(controls["control"].unique()) == ["random_mask", "reinit"]
    assert set(controls["baseline"]) == {"alds.rate=0.0"} and (controls["paired_n"] == 2).all()
    assert set(controls["step"]) == {2, 3}
    assert "![The IMP-only ticket against its lottery-ticket controls](controls.png)" in markdown
    assert (output / "controls.png").stat().st_size > 0
    trials = pd.read_csv(output / "trials.csv")
    assert len(trials) == 10 and trials["imp.control"].notna().sum() == 4
    for name in ("curves", "at_sparsity", "summary", "best", "versus_baseline"):
        assert not pd.read_csv(output / f"{name}.csv")["config"].str.contains("control").any()
    # Two seeds: the planner plans from three seeds up, and says so.
    assert "no seed plan for 2 configuration(s) with fewer than 3 paired seeds" in swept["stdout"]
    page = HtmlTables()
    page.feed((output / "report.html").read_text())
    assert len(page.tables) == len(presented) and page.images >= 2
    for rows in page.tables:
        assert len(rows) > 1 and len({len(row) for row in rows}) == 1


class HtmlTables(HTMLParser):
    """The cells of every table of a page, and the number of embedded images."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
        elif tag == "img" and (dict(attrs).get("src") or "").startswith("data:image/png;base64,"):
            self.images += 1

    def handle_data(self, data: str) -> None:
        if self.tables and self.tables[-1] and self.tables[-1][-1]:
            self.tables[-1][-1][-1] += data


@pytest.mark.slow
def test_tables_equal_the_values_in_mlflow(swept: dict) -> None:
    client, output = swept["client"], swept["output"]
    trials = pd.read_csv(output / "trials.csv")
    study = optuna.load_study(study_name="reported", storage=swept["storage"])
    assert sorted(trials["number"]) == [t.number for t in study.get_trials()]
    assert set(trials["state"]) == {"COMPLETE"}
    curve: dict[tuple[float, int], dict[str, dict[int, float]]] = {}  # (rate, seed) → key → step
    for _, row in trials.iterrows():
        trial = study.trials[row["number"]]
        assert row[RATE] == trial.params[RATE] and row["seed"] == trial.user_attrs["seed"]
        assert row["value:accuracy"] == trial.value
        history = {
            key: {m.step: m.value for m in client.get_metric_history(row["mlflow_run_id"], key)}
            for key in ("accuracy", "sparsity", "params_nonzero", "compression_ratio")
        }
        if not isinstance(row["imp.control"], str):  # a control is compared in its own table
            curve[(row[RATE], row["seed"])] = history
        last = swept["document"]["imp"]["cycles"] + 1
        assert row["last_step"] == max(history["accuracy"]) == last
        for key in history:
            assert row[key] == history[key][last], key

    curves = pd.read_csv(output / "curves.csv")
    assert len(curves) == 3 * 4 and set(curves["n"]) == {2}
    for _, row in curves.iterrows():
        values = [curve[(row[RATE], seed)]["accuracy"][row["step"]] for seed in (0, 1)]
        assert row["accuracy_mean"] == pytest.approx(sum(values) / 2, abs=1e-12)
        assert row["accuracy_std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
        nonzero = [curve[(row[RATE], seed)]["params_nonzero"][row["step"]] for seed in (0, 1)]
        assert row["params_nonzero_mean"] == pytest.approx(sum(nonzero) / 2)

    # Project mode keeps every weight, so both arms are measured at the same sparsities: the
    # difference at a step is the plain per-seed difference of the two curves there.
    versus = pd.read_csv(output / "versus_baseline.csv")
    assert sorted(versus["config"].unique()) == ["alds.rate=0.3", "alds.rate=0.6"]
    assert set(versus["baseline"]) == {"alds.rate=0.0"} and set(versus["paired_n"]) == {2}
    for _, row in versus.iterrows():
        rate = float(row["config"].split("=")[1])
        differences = [
            curve[(rate, seed)]["accuracy"][row["step"]]
            - curve[(0.0, seed)]["accuracy"][row["step"]]
            for seed in (0, 1)
        ]
        assert row["difference_mean"] == pytest.approx(sum(differences) / 2, abs=1e-12)
        assert row["sparsity"] == curve[(rate, 0)]["sparsity"][row["step"]]

    steps = pd.read_csv(output / "steps.csv")
    assert len(steps) == 6 * 4 + 4 * 3  # a control has no step 1: it runs no ALDS
    plain = steps[steps["imp.control"].isna()]
    for _, row in plain.iterrows():
        assert row["accuracy"] == curve[(row[RATE], row["seed"])]["accuracy"][row["step"]]


@pytest.mark.slow
def test_plots_exist_and_are_logged_to_the_parent_run(swept: dict) -> None:
    output = swept["output"]
    for name in ("accuracy_vs_remaining", "accuracy_vs_alds_rate"):
        image = imread(output / f"{name}.png")
        assert image.shape[0] > 300 and image.shape[1] > 400
        assert image.std() > 0.05  # drawn, not blank
    # One-dimensional sweep: no heat map.
    assert not (output / "heatmap_rate_fraction.png").exists()
    client = swept["client"]
    study = optuna.load_study(study_name="reported", storage=swept["storage"])
    parent = study.user_attrs["mlflow_parent_run_id"]
    latest = client.get_run(parent).data.tags[stored_names.TAG_REPORT_LATEST]
    logged = {a.path.removeprefix(f"{latest}/") for a in client.list_artifacts(parent, latest)}
    assert {"accuracy_vs_remaining.png", "report.md", "curves.csv"} <= logged


@pytest.mark.slow
def test_running_queued_and_failed_trials_are_shown(swept: dict) -> None:
    # A copy of the finished study plus a failed trial, one trial claimed by a worker that has
    # not logged a step yet, and one still queued.
    from orchestrator.study import queue as queues

    tmp = swept["tmp"]
    storage_url = copied_study(swept, "partial")
    study = optuna.load_study(study_name="reported", storage=storage_url)
    failed = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL,
        params={RATE: 0.3},
        distributions={RATE: optuna.distributions.CategoricalDistribution([0.0, 0.3, 0.6])},
        user_attrs={"seed": 0, "fail_reason": "NonFiniteLossError: loss is nan at iteration 3"},
    )
    study.add_trial(failed)
    study.enqueue_trial({RATE: 0.6}, user_attrs={"seed": 0})
    study.enqueue_trial({RATE: 0.6}, user_attrs={"seed": 1})
    assert queues.claim_trial(study) is not None  # a worker elsewhere has just started it
    output = tmp / "partial"
    result = report_in_process(
        "--study", "reported", "--storage", storage_url, "--output", str(output),
        "--format", "md,csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 trial(s) still running" in result.output
    trials = pd.read_csv(output / "trials.csv").set_index("number")
    assert trials["state"].value_counts().to_dict() == {
        "COMPLETE": 10,  # the 4 controls among them
        "FAIL": 1,
        "RUNNING": 1,
        "WAITING": 1,
    }
    assert "NonFiniteLossError" in trials.loc[10, "note"]
    assert trials.loc[11, "note"].startswith("running, no step yet")
    assert trials.loc[12, "note"] == "queued"
    # Queued and just-claimed trials show the parameters they were enqueued with.
    assert trials.loc[[11, 12], RATE].tolist() == [0.6, 0.6]
    markdown = (output / "report.md").read_text()
    counted = "11 of 13 trials finished: 10 complete, 0 pruned, 1 failed; 1 running, 1 queued"
    assert counted in markdown
    assert "1 trial(s) failed, not in the aggregates: 10 (NonFiniteLossError" in markdown
    # The aggregates are the complete trials' only.
    assert pd.read_csv(output / "curves.csv")["n"].eq(2).all()
    assert not (output / "report.html").exists() and not (output / "curves.json").exists()


def copied_study(swept: dict, name: str) -> str:
    """The URL of a copy of the swept sweep's study, to change without touching the original."""
    storage_url = f"sqlite:///{swept['tmp'] / f'{name}.db'}"
    optuna.copy_study(
        from_study_name="reported",
        from_storage=swept["storage"],
        to_storage=storage_url,
        to_study_name="reported",
    )
    return storage_url


def report_in_process(*args: str) -> Result:
    """The report command in this process (no interpreter start-up): exit code and messages."""
    return CliRunner().invoke(main, ["report", *args])


@pytest.mark.slow
def test_missing_study_empty_study_and_unreachable_store_exit_2(swept: dict) -> None:
    tmp = swept["tmp"]
    missing = report_in_process("--study", "nope", "--storage", swept["storage"])
    assert missing.exit_code == 2 and "no study 'nope'" in missing.stderr
    assert "reported" in missing.stderr  # the studies that do exist are named

    storage_url = f"sqlite:///{tmp / 'empty.db'}"
    config = parse_config(swept["document"], "empty")
    create_or_resume(config, open_storage(storage_url))
    empty = report_in_process("--study", "reported", "--storage", storage_url)
    assert empty.exit_code == 2 and "has no trials yet" in empty.stderr

    offline = report_in_process(str(swept["path"]), "--tracking-uri", "http://127.0.0.1:9")
    assert offline.exit_code == 2
    assert "cannot reach the MLflow tracking server http://127.0.0.1:9" in offline.stderr
    gone = report_in_process(str(swept["path"]), "--tracking-uri", f"sqlite:///{tmp / 'no.db'}")
    assert gone.exit_code == 2 and "no MLflow tracking store" in gone.stderr
    assert not (tmp / "no.db").exists()  # not created empty on the way
    bad = report_in_process(str(swept["path"]), "--format", "csv,docx")
    assert bad.exit_code == 2 and "docx" in bad.stderr
    for result in (missing, empty, offline, gone, bad):
        assert isinstance(result.exception, SystemExit), result.exception  # no traceback


def test_bad_sparsity_levels_exit_2_and_write_nothing(swept: dict) -> None:
    output = swept["tmp"] / "levels-out"
    bad = report_in_process(
        str(swept["path"]), "--sparsity-levels", "0.5,1.5", "--output", str(output)
    )
    assert bad.exit_code == 2 and "--sparsity-levels '0.5,1.5'" in bad.stderr
    assert isinstance(bad.exception, SystemExit) and not output.exists()


def test_two_dimensional_sweep_gets_pairs_per_fraction_and_a_heat_map() -> None:
    fraction = "imp.prune_fraction"
    arms = {(0.0, 0.2): BASELINE, (0.5, 0.2): ALDS, (0.0, 0.4): ALDS, (0.5, 0.4): BASELINE}
    trials, frames = [], []
    for (rate, prune), seeds in arms.items():
        steps = hand_built({rate: seeds})
        steps["trial"] += len(trials)
        trials += [
            {"number": n, "state": "COMPLETE", "seed": s, RATE: rate, fraction: prune}
            for n, s in steps[["trial", "seed"]].drop_duplicates().to_numpy()
        ]
        frames.append(steps[["trial", "step", *schema.METRICS]])
    steps = sources.label_steps(pd.concat(frames), pd.DataFrame(trials), [RATE, fraction], {})
    curves = describe.curve_table(steps, [RATE, fraction])
    pairs = compare.baseline_pairs(curves, [RATE, fraction], twin_lookup)
    assert pairs == {
        "alds.rate=0.5,imp.prune_fraction=0.2": "alds.rate=0.0,imp.prune_fraction=0.2",
        "alds.rate=0.5,imp.prune_fraction=0.4": "alds.rate=0.0,imp.prune_fraction=0.4",
    }
    figure = figures.plot_heatmap(curves, [RATE, fraction])
    assert figure is not None
    image = figure.axes[0].images[0].get_array()
    # Rows: prune fraction 0.2, 0.4; columns: ALDS rate 0, 0.5; final accuracy in percent.
    assert image.ravel().tolist() == pytest.approx([79.0, 88.05, 88.05, 79.0])
    assert figures.plot_heatmap(curves[curves[fraction] == 0.2], [RATE, fraction]) is None
    assert figures.plot_accuracy_vs_rate(curves, [RATE, fraction]) is not None


def test_best_table_ranks_configurations_or_lists_the_front() -> None:
    trials = pd.DataFrame(
        {
            "number": [0, 1, 2, 3, 4],
            "state": ["COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"],
            "seed": [0, 1, 0, 1, 0],
            RATE: [0.0, 0.0, 0.5, 0.5, 0.9],
            "config": ["a", "a", "b", "b", "c"],
            "value:accuracy": [0.8, 0.7, 0.9, 0.6, 0.99],
            "value:params_nonzero": [10, 10, 5, 5, 1],
            "accuracy": [0.8, 0.7, 0.9, 0.6, 0.99],
            "sparsity": [0.5, 0.5, 0.7, 0.7, 0.9],
            "params_nonzero": [10, 10, 5, 5, 1],
            "compression_ratio": [2.0, 2.0, 4.0, 4.0, 10.0],
        }
    )
    best = describe.best_table(trials, ["accuracy"], ["maximize"], [RATE])
    # The pruned trial's high value does not count; a tie in means keeps both, ranked.
    assert best["config"].tolist() == ["a", "b"]
    assert best["value_mean"].tolist() == pytest.approx([0.75, 0.75])
    assert best["best_trial"].tolist() == [0, 2]
    lowest = describe.best_table(trials, ["accuracy"], ["minimize"], [RATE])
    assert lowest["best_trial"].tolist() == [1, 3]
    front = describe.best_table(
        trials, ["accuracy", "params_nonzero"], ["maximize", "minimize"], [RATE], front=[2, 0, 4]
    )
    assert front["number"].tolist() == [0, 2]  # complete front trials, by the first objective


def test_json_output_is_unrounded(tmp_path: Path) -> None:
    steps = hand_built({0.0: BASELINE, 0.5: ALDS})
    curves = describe.curve_table(steps, [RATE])
    report = hand_report({"curves": curves}, counts={s.name: 0 for s in optuna.trial.TrialState})
    render.write(report, tmp_path, ["json", "latex"])
    loaded = json.loads((tmp_path / "curves.json").read_text())
    assert [r["accuracy_mean"] for r in loaded] == curves["accuracy_mean"].tolist()
    assert "90.25 $\\pm$ 1.34" in (tmp_path / "curves.tex").read_text()


# --------------------------------------------------------------------------- reading at scale


def copied_store(swept: dict, name: str) -> str:
    """A copy of the swept sweep's MLflow store, to change without touching the original."""
    import shutil

    source = Path(swept["client"].tracking_uri.removeprefix("sqlite:///"))
    target = swept["tmp"] / f"{name}.db"
    shutil.copy(source, target)
    return f"sqlite:///{target}"


@pytest.mark.slow
def test_bulk_reads_equal_the_run_by_run_reads(swept: dict) -> None:
    from mlflow.entities import Metric

    from orchestrator.report import histories
    from orchestrator.testing.servers import ThrowawayMlflow

    uri = copied_store(swept, "bulk")
    client = MlflowClient(uri)
    study = optuna.load_study(study_name="reported", storage=swept["storage"])
    runs = {t.number: t.user_attrs[stored_names.TRIAL_RUN_ID] for t in study.trials}
    first, second = runs[0], runs[1]
    # A retried step (a batch logged again, later, with another value), a trial whose run
    # logged a layer no other has, and a trial whose run the store does not hold.
    later = max(m.timestamp for m in client.get_metric_history(first, "accuracy")) + 1000
    client.log_batch(first, metrics=[Metric("accuracy", 0.123, later, 1)])
    extra = stored_names.layer_remaining("extra.weight")
    client.log_batch(second, metrics=[Metric(extra, 0.5 / (s + 1), later, s) for s in range(4)])
    runs[99] = "f" * 32
    with ThrowawayMlflow(swept["tmp"], backend=uri) as server:
        for store in (uri, server.uri):
            reader = MlflowClient(store)
            bulk, bulk_missing = histories.read_steps(reader, runs)
            each, each_missing = histories.read_steps(reader, runs, bulk=False)
            pd.testing.assert_frame_equal(bulk, each)
            assert bulk_missing == each_missing and list(bulk_missing) == [99], store
            step = bulk.set_index(["trial", "step"])
            assert step.loc[(0, 1), "accuracy"] == 0.123  # the latest value of the step
            assert step.loc[(1, 3), extra] == 0.125 and step[extra].drop(1, level=0).isna().all()
            assert len(bulk) == 6 * 4 + 4 * 3 and set(bulk["trial"]) == set(range(10))


@pytest.mark.slow
def test_kept_curves_equal_the_curves_in_mlflow_and_a_held_read_equals_a_new_one(
    swept: dict,
) -> None:
    from orchestrator import curve, tracking
    from orchestrator.report import histories
    from orchestrator.study import queue as queues

    client = swept["client"]
    study = optuna.load_study(study_name="reported", storage=swept["storage"])
    trials = study.get_trials()
    runs = {t.number: t.user_attrs[stored_names.TRIAL_RUN_ID] for t in trials}
    # Every trial of the swept sweep ended and kept its curve: none is read from MLflow.
    kept, missing = sources.Curves().read(trials, runs, "no client: nothing to read there")
    logged, _ = histories.read_steps(client, runs)
    pd.testing.assert_frame_equal(kept, logged)
    assert not missing

    # A held read, then a trial that runs (read from its run) and completes (read from the
    # study), as the sweep's parent refreshes its figures: each read equals a new reader's.
    storage_url = copied_study(swept, "held")
    copy = optuna.load_study(study_name="reported", storage=storage_url)
    uri = copied_store(swept, "held-mlflow")
    writer = MlflowClient(uri)
    held = sources.Curves()

    def both() -> tuple[pd.DataFrame, pd.DataFrame]:
        now = copy.get_trials(deepcopy=False)
        numbers = {
            t.number: t.user_attrs[stored_names.TRIAL_RUN_ID]
            for t in now
            if stored_names.TRIAL_RUN_ID in t.user_attrs
        }
        return held.read(now, numbers, writer)[0], sources.Curves().read(now, numbers, writer)[0]

    pd.testing.assert_frame_equal(*both())
    copy.enqueue_trial({RATE: 0.6}, user_attrs={"seed": 2})
    live, _ = queues.claim_trial(copy)
    experiment = writer.get_run(runs[0]).info.experiment_id
    run = writer.create_run(experiment).info.run_id
    live.set_user_attr(stored_names.TRIAL_RUN_ID, run)
    rows = [
        {"step": s, "phase": "imp", "cycle": s, "accuracy": 0.9 - s / 10, "sparsity": s / 4}
        for s in range(3)
    ]
    outbox = tracking.Outbox(writer)
    for row in rows[:2]:
        tracking.TrialRun(outbox, run).log_step(
            row["step"], {"accuracy": row["accuracy"], "sparsity": row["sparsity"]}
        )
    running, reference = both()
    pd.testing.assert_frame_equal(running, reference)
    assert running[running["trial"] == live.number]["step"].tolist() == [0, 1]
    tracking.TrialRun(outbox, run).log_step(2, {"accuracy": 0.7, "sparsity": 0.5})
    queues.set_system_attr(live, stored_names.TRIAL_CURVE, curve.encode_curve(rows))
    copy.tell(live, 0.7)
    ended, reference = both()
    pd.testing.assert_frame_equal(ended, reference)
    assert ended[ended["trial"] == live.number]["accuracy"].tolist() == [0.9, 0.8, 0.7]


@pytest.mark.slow
def test_a_snapshot_of_the_trials_is_what_optuna_reads_without_intermediate_values(
    swept: dict,
) -> None:
    from orchestrator import curve
    from orchestrator.study import queue as queues, snapshot

    # The swept study, and a copy with a failed, a queued and a running trial (no values).
    storage_url = copied_study(swept, "snapshot")
    study = optuna.load_study(study_name="reported", storage=open_storage(storage_url))
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params={RATE: 0.3},
            distributions={RATE: optuna.distributions.CategoricalDistribution([0.0, 0.3, 0.6])},
            user_attrs={"seed": 0, "fail_reason": "why"},
        )
    )
    study.enqueue_trial({RATE: 0.6}, user_attrs={"seed": 0})
    study.enqueue_trial({RATE: 0.6}, user_attrs={"seed": 1})
    assert queues.claim_trial(study) is not None
    read = optuna.load_study(study_name="reported", storage=open_storage(storage_url))
    expected = read.get_trials(deepcopy=False)
    assert any(t.intermediate_values for t in expected)
    for curves in (False, True):
        taken = snapshot.trials(read, curves=curves)
        assert [t.number for t in taken] == [t.number for t in expected]
        for mine, theirs in zip(taken, expected, strict=True):
            system = dict(theirs.system_attrs)
            kept = system.pop(stored_names.TRIAL_CURVE, None)
            if curves and kept is not None:
                assert curve.curve_record(mine.system_attrs.pop(stored_names.TRIAL_CURVE)) == kept
            assert mine.intermediate_values == {}
            assert mine.system_attrs == system and mine.user_attrs == theirs.user_attrs
            assert (mine.state, mine.values, mine.params) == (
                theirs.state,
                theirs.values,
                theirs.params,
            )
            assert list(mine.params) == list(theirs.params)
            assert mine.distributions == theirs.distributions
            assert (mine.datetime_start, mine.datetime_complete) == (
                theirs.datetime_start,
                theirs.datetime_complete,
            )
    assert any(
        stored_names.TRIAL_CURVE in t.system_attrs for t in snapshot.trials(read, curves=True)
    )
    # Any other storage is read as Optuna reads it.
    memory = optuna.create_study()
    memory.add_trial(optuna.trial.create_trial(value=1.0))
    assert snapshot.trials(memory) == memory.get_trials(deepcopy=False)


@pytest.mark.slow
def test_a_controls_run_names_its_imp_only_twin(swept: dict) -> None:
    study = optuna.load_study(study_name="reported", storage=swept["storage"])
    by_run = {t.user_attrs[stored_names.TRIAL_RUN_ID]: t for t in study.trials}
    twin_runs = {
        t.user_attrs[stored_names.TRIAL_SEED]: t.user_attrs[stored_names.TRIAL_RUN_ID]
        for t in study.trials
        if t.params[RATE] == 0.0 and "imp.control" not in t.params
    }
    controls = [t for t in study.trials if "imp.control" in t.params]
    assert len(controls) == 4
    for trial in controls:
        run = swept["client"].get_run(trial.user_attrs[stored_names.TRIAL_RUN_ID])
        expected = twin_runs[trial.user_attrs[stored_names.TRIAL_SEED]]
        assert run.data.tags[stored_names.TAG_TWIN_RUN_ID] == expected
        assert trial.user_attrs[stored_names.TRIAL_TWIN_RUN_ID] == expected
        assert run.data.tags[stored_names.TAG_ARM] == stored_names.ARM_CONTROL
        assert run.info.run_name.startswith(f"control {trial.params['imp.control']} · ")
        assert "imp.control" not in by_run[expected].params


@pytest.mark.slow
def test_a_report_recomputed_from_its_export_equals_the_one_from_the_stores(swept: dict) -> None:
    from orchestrator import report as reports

    config = parse_config(swept["document"])
    study = optuna.load_study(study_name="reported", storage=swept["storage"])
    stored = reports.build(study, config, margin=0.005)
    exported = reports.rebuild(swept["output"], config, margin=0.005)
    assert set(stored.tables) == set(exported.tables)
    for name, table in stored.tables.items():
        if name in ("trials", "best"):  # the bookkeeping a CSV holds as text is compared below
            continue
        pd.testing.assert_frame_equal(
            table.reset_index(drop=True),
            exported.tables[name].reset_index(drop=True),
            check_dtype=False,
            obj=name,
        )
    assert list(stored.tables["trials"]["number"]) == list(exported.tables["trials"]["number"])
    assert stored.notes == exported.notes


@pytest.mark.slow
def test_several_sweeps_are_judged_as_one_family(swept: dict) -> None:
    # Two copies of the sweep's export under two names: one family of both endpoint tables.
    family = swept["tmp"] / "family-of-two"
    paths = []
    for name in ("first", "second"):
        shutil.copytree(swept["output"], family / name)
        path = swept["tmp"] / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**swept["document"], "name": name}))
        paths.append(str(path))
    arguments = ["report", *paths, "--output", str(family), "--from-export", "--margin", "50"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(family / "family" / "family.csv")
    single = pd.read_csv(family / "first" / "endpoint.csv")
    assert list(table["sweep"]) == ["first"] * len(single) + ["second"] * len(single)
    assert (table["difference_mean"].to_numpy() == np.tile(single["difference_mean"], 2)).all()
    assert set(table["verdict"]) == {statistics.TOO_FEW}  # two seeds each
    sensitivity = pd.read_csv(family / "family" / "sensitivity.csv")
    assert {"verdict ±0.25 pt", "verdict ±0.5 pt", "verdict ±1 pt"} <= set(sensitivity.columns)
    assert "as one family" in (family / "family" / "family.md").read_text()
    # Different declared margins cannot make one family; a missing export is named.
    Path(paths[1]).write_text(
        yaml.safe_dump({**swept["document"], "name": "second", "report": {"margin": 1.0}})
    )
    result = CliRunner().invoke(main, arguments[:-2])
    assert result.exit_code == 2 and "different report.margin" in result.output
    (family / "first" / "steps.csv").unlink()
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2 and "no steps.csv in" in result.output
    assert "first" in result.output

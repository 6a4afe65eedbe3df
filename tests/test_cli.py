"""The CLI skeleton: help, version, validate, and exit code 2 without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import __version__
from orchestrator.cli import main
from orchestrator.testing.cli import imports_of, orchestrate

ROOT = Path(__file__).resolve().parent.parent


def test_help_and_version() -> None:
    runner = CliRunner()
    assert "validate" in runner.invoke(main, ["--help"]).output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_validate_prints_config_and_space() -> None:
    result = CliRunner().invoke(main, ["validate", str(ROOT / "sweeps" / "alds_rate.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid sweep 'alds_rate'" in result.output
    assert "alds.rate" in result.output and "lr: 0.0003" in result.output
    # The plan and the pruner's sparsity grid.
    assert "15 trials" in result.output and "29.29%, 50%," in result.output
    # The primary endpoint, declared before any data.
    text = " ".join(result.output.split())
    assert "primary endpoint (report.primary: auc; report table endpoint)" in text
    assert "equivalence margin (report.margin): none" in text


def test_validate_bad_file_exits_2_with_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nimp: {prune_fraction: 1.5}\n")
    result = orchestrate("validate", str(path))
    assert result.returncode == 2
    assert "imp.prune_fraction" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.parametrize(
    ("args", "imported"),
    [
        (["--help"], "-"),
        # validate builds the network to count it (torch), and reads no study or store.
        (["validate", str(ROOT / "sweeps" / "quickstart.yaml")], "torch"),
    ],
    ids=["help", "validate"],
)
def test_help_and_validate_import_neither_mlflow_nor_optuna(
    args: list[str], imported: str, tmp_path: Path
) -> None:
    # A new sweep: run where no workspace holds its study (the README's quickstart leaves one
    # in the checkout, and validate then reads what the study has done, through Optuna).
    result = imports_of(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == imported


def test_validate_prints_the_scaled_networks_counts(tmp_path: Path) -> None:
    path = tmp_path / "conv.yaml"
    path.write_text(
        "name: conv\nmodel: {name: conv6, width: 0.25}\ndataset: {name: fashion-mnist}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    # Channels 16/32/64 on 1x28x28: 71,568 conv weights (3x3 kernels), FC 576-256-256-10.
    conv = 9 * (1 * 16 + 16 * 16 + 16 * 32 + 32 * 32 + 32 * 64 + 64 * 64)
    fc = 576 * 256 + 256 * 256 + 256 * 10
    biases = 2 * (16 + 32 + 64) + 256 + 256 + 10
    assert "network conv6 (width 0.25) on fashion-mnist" in text
    assert f"{conv + fc + biases:,} parameters ({conv + fc:,} prunable weights" in text
    # A conv's multiply-accumulates: its weights times the output positions (28², 14², 7²).
    macs = (
        9 * (16 + 16 * 16) * 28 * 28
        + 9 * (16 * 32 + 32 * 32) * 14 * 14
        + 9 * (32 * 64 + 64 * 64) * 7 * 7
        + fc
    )
    assert f"{macs:,} FLOPs (multiply-accumulates) per image" in text


def test_status_lists_the_latest_trials_of_a_large_study_and_all_with_a_flag(
    tmp_path: Path,
) -> None:
    import optuna

    from orchestrator import stored_names
    from orchestrator.study.study import create_or_resume, open_storage
    from orchestrator.sweep_file import parse_config
    from orchestrator.testing.sweeps import sweep_document

    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = parse_config(sweep_document(tmp_path, "large"))
    study = create_or_resume(config, open_storage(url))
    rate = optuna.distributions.CategoricalDistribution([0.0, 0.5])
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"alds.rate": 0.5},
                distributions={"alds.rate": rate},
                value=0.5 + n / 1000,
                user_attrs={stored_names.TRIAL_SEED: 0},
            )
            for n in range(60)
        ]
    )
    shown = CliRunner().invoke(main, ["status", "--study", "large", "--storage", url])
    assert shown.exit_code == 0, shown.output
    assert "the latest 50 of 60 trials" in " ".join(shown.output.split())
    assert "0.5590" in shown.output and "0.5090" not in shown.output
    every = CliRunner().invoke(main, ["status", "--study", "large", "--storage", url, "--all"])
    assert every.exit_code == 0 and "0.5000" in every.output and "latest" not in every.output


def test_a_sweep_on_a_missing_dataset_exits_2_before_any_trial(tmp_path: Path) -> None:
    from orchestrator.testing.sweeps import sweep_document, write_sweep

    document = sweep_document(tmp_path, "nodata")
    (tmp_path / "empty").mkdir()
    document["dataset"] = {"name": "mnist", "root": str(tmp_path / "empty"), "download": False}
    result = CliRunner().invoke(main, ["sweep", str(write_sweep(tmp_path, document))])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "mnist not found" in result.stderr and "docs/data.md" in result.stderr
    assert str(tmp_path / "empty" / "mnist") in result.stderr
    # Nothing was created: no study, no tracking store, no trial.
    assert not Path(document["execution"]["workspace"]).exists()


def test_validate_prints_the_declared_endpoint_and_margin(tmp_path: Path) -> None:
    path = tmp_path / "declared.yaml"
    path.write_text("name: declared\nreport: {primary: 0.9, margin: 0.5}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "primary endpoint (report.primary: 0.9; report table endpoint)" in text
    assert "per seed, the accuracy at 90% sparsity" in text
    assert "equivalence margin (report.margin): ±0.5 pt" in text


def test_validate_plans_the_seeds_for_the_declared_margin(tmp_path: Path) -> None:
    path = tmp_path / "planned.yaml"
    path.write_text(
        "name: planned\nseeds: [0, 1, 2]\n"
        "search: {sampler: grid, space: {alds.rate: {choices: [0.0, 0.3, 0.6]}}}\n"
        "report: {margin: 0.5, power: 0.9}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "with probability 0.9 (report.power) over 2 ALDS configuration(s)" in text
    from orchestrator.report import planner

    # The plan printed is the planner's, for a paired std of half, one and two margins.
    for spread in (0.25, 0.5, 1.0):
        equivalence, difference = planner.seeds_for(spread / 100, 0.005, 2, 0.9)
        assert f"paired std {spread:g} pt: {equivalence} and {difference}" in text
    assert "the sweep runs 3" in text


def test_report_refuses_several_sweeps_without_an_output_and_an_export_without_a_sweep(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("name: a\n")
    second.write_text("name: b\n")
    result = CliRunner().invoke(main, ["report", str(first), str(second)])
    assert result.exit_code == 2 and "several sweeps need --output" in result.output
    result = CliRunner().invoke(main, ["report", "--from-export", "--output", str(tmp_path)])
    assert result.exit_code == 2 and "give its SWEEP.yaml" in result.output
    # An export of another sweep is named, column and file.
    (tmp_path / "trials.csv").write_text("number,state,seed\n0,COMPLETE,0\n")
    (tmp_path / "steps.csv").write_text("trial,step\n0,0\n")
    third = tmp_path / "c.yaml"
    third.write_text("name: c\nsearch: {space: {alds.rate: {choices: [0.0, 0.5]}}}\n")
    result = CliRunner().invoke(
        main, ["report", str(third), "--from-export", "--output", str(tmp_path)]
    )
    assert result.exit_code == 2 and "has no column alds.rate" in result.output

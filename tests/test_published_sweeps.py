"""The published sweeps of docs/results.md keep working: each runs end to end in miniature.

The YAML files are used as published; only the budget shrinks (one seed, a few hundred real
Fashion-MNIST images, short training, fewer cycles), so a change to the tool that breaks
the published path fails here, not weeks later on a GPU host.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from orchestrator import plan
from orchestrator.sweep_file import load_config
from orchestrator.testing.cli import orchestrate
from orchestrator.testing.sweeps import write_sweep

ROOT = Path(__file__).resolve().parents[1]
# The rewind control differs from fashion_mnist_alds_imp.yaml only in its rewind settings,
# whose paths tests/test_procedure.py covers; tests/test_config.py validates it.
PUBLISHED = (
    "fashion_mnist_alds_imp.yaml",
    "fashion_mnist_global.yaml",
    "fashion_mnist_conv.yaml",
)

pytestmark = pytest.mark.slow


def miniature(name: str, tmp_path: Path) -> dict:
    """The published sweep with one seed, 400 training images and IMP stopping at 40%."""
    document = copy.deepcopy(yaml.safe_load((ROOT / "sweeps" / name).read_text()))
    document["seeds"] = [0]
    document["dataset"].update(train_subset=400, test_subset=300, validation=100)
    document["train"]["epochs"] = 1
    document["alds"]["finetune_epochs"] = 0.5
    document["imp"]["until_remaining"] = 0.4
    document["search"]["objective"]["at"] = 0.6
    if document["search"].get("n_trials"):
        document["search"]["n_trials"] = 3
    document["execution"] = {
        **document["execution"],
        "workers_per_device": 2,
        "workspace": str(tmp_path / "ws" / document["name"]),
        "cache_dir": str(tmp_path / "checkpoints"),
    }
    return document


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_sweep_runs_and_reports_in_miniature(name: str, tmp_path: Path) -> None:
    published = load_config(ROOT / "sweeps" / name)
    assert published.dataset.name == "fashion-mnist" and len(published.seeds) >= 5
    document = miniature(name, tmp_path)
    path = write_sweep(tmp_path, document)

    result = orchestrate("sweep", str(path), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    output = tmp_path / "report"
    result = orchestrate("report", str(path), "--output", str(output), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    trials = pd.read_csv(output / "trials.csv")
    config = load_config(path)
    # A sampled sweep runs the IMP-only twins of its sampled configurations on top.
    assert (
        plan.total_trials(config)
        <= len(trials)
        <= plan.total_trials(config) + plan.most_sampled_twins(config)
    )
    assert set(trials["state"]) == {"COMPLETE"}
    # Every trial pruned until the target and stopped at the first step that reached it.
    steps = pd.read_csv(output / "steps.csv").sort_values(["trial", "step"])
    for _, curve in steps.groupby("trial"):
        assert curve["remaining"].iloc[-1] <= 0.4 < curve["remaining"].iloc[-2]
    versus = pd.read_csv(output / "versus_baseline.csv")
    assert versus["baseline_accuracy_mean"].notna().any()
    # Every ALDS configuration is compared with its twin: the same prune fraction, at rate 0.
    fraction = "imp.prune_fraction"
    if fraction in trials:
        by_config = trials.drop_duplicates("config").set_index("config")
        for config_label, baseline in versus[["config", "baseline"]].drop_duplicates().values:
            assert by_config.loc[baseline, "alds.rate"] == 0
            assert by_config.loc[baseline, fraction] == by_config.loc[config_label, fraction]
    levelled = pd.read_csv(output / "at_sparsity.csv")
    plain = trials[trials["imp.control"].isna()]
    assert set(levelled["config"]) == set(plain["config"])
    # The controls a sweep asks for, each against its twin at every cycle it ran.
    assert len(trials) - len(plain) == len(config.imp.controls)
    # Written where controls are asked for, and only there.
    assert (output / "controls.csv").is_file() == bool(config.imp.controls)
    if config.imp.controls:
        controls = pd.read_csv(output / "controls.csv")
        assert sorted(controls["control"].unique()) == sorted(config.imp.controls)
        assert controls["baseline_accuracy_mean"].notna().all()
    assert (output / "accuracy_vs_remaining.png").stat().st_size > 0
    # Equal cost beside equal sparsity: on Conv-6 FLOPs and weights part ways.
    assert set(pd.read_csv(output / "at_flops.csv")["config"]) <= set(plain["config"])
    assert (output / "accuracy_vs_flops.png").stat().st_size > 0

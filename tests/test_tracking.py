"""What a sweep writes to MLflow, read back from a real store: the experiment opens in the
training views with a description, runs are named for what they are, the baseline is marked,
the parent holds the fixed config and the sweep's progress, every trial records its dataset."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from orchestrator import keys
from orchestrator.config import parse_config
from orchestrator.tracking import SweepTracker, sweep_description, trial_run_name
from tests.conftest import run_sweep, tiny_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp_path = tmp_path_factory.mktemp("tracked")
    document = tiny_sweep(
        tmp_path,
        "tracked",
        search={
            "sampler": "grid",
            "space": {
                "alds.rate": {"choices": [0.0, 0.5]},
                "alds.mode": {"choices": ["project", "factorize"]},
            },
        },
    )
    _, workspace = run_sweep(tmp_path, document)
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    study = optuna.load_study(study_name="tracked", storage=f"sqlite:///{workspace / 'study.db'}")
    return {
        "client": client,
        "experiment": experiment,
        "parent": next(r for r in runs if r.data.tags[keys.TAG_ROLE] == keys.ROLE_SWEEP),
        "trials": [r for r in runs if r.data.tags[keys.TAG_ROLE] == keys.ROLE_TRIAL],
        "study": study,
    }


def test_experiment_opens_in_the_training_views_with_a_description(tracked: dict) -> None:
    tags = tracked["experiment"].tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert "`alds.rate`: choice 0.0, 0.5" in tags["mlflow.note.content"]
    assert "orchestrate report" in tags["mlflow.note.content"]


def test_runs_are_named_for_what_they_are_and_the_baseline_is_marked(tracked: dict) -> None:
    names = sorted(run.info.run_name for run in tracked["trials"])
    assert names == [
        "ALDS 0.5 · prune 0.5 · mode factorize · seed 0",
        "ALDS 0.5 · prune 0.5 · mode project · seed 0",
        "IMP only · prune 0.5 · mode factorize · seed 0",
        "IMP only · prune 0.5 · mode project · seed 0",
    ]
    for run in tracked["trials"]:
        tags = run.data.tags
        baseline = run.info.run_name.startswith("IMP only")
        assert tags["arm"] == ("baseline" if baseline else "alds")
        assert tags["config"] == f"alds.mode={run.data.params['alds.mode']},alds.rate=" + (
            "0.0" if baseline else "0.5"
        )
        assert tags["mlflow.source.name"] == "orchestrate · tracked"
    # optuna-dashboard shows the same label on each trial.
    arms = sorted(t.user_attrs["arm"] for t in tracked["study"].trials)
    assert arms == ["alds", "alds", "baseline", "baseline"]


def test_parent_run_holds_the_fixed_config_and_the_sweeps_progress(tracked: dict) -> None:
    parent = tracked["parent"]
    params = parent.data.params
    # A searched field has no value of its own: only its range is logged.
    assert "alds.rate" not in params and "alds.mode" not in params
    assert params["model"] == "lenet300100" and params["imp.cycles"] == "2"
    assert json.loads(params["search.space.alds.rate.choices"].replace("'", '"')) == [0.0, 0.5]
    assert parent.data.metrics["trials_complete"] == 4
    assert parent.data.metrics["trials_fail"] == 0
    best = max(t.value for t in tracked["study"].trials)
    assert parent.data.metrics["best_value"] == pytest.approx(best)
    history = tracked["client"].get_metric_history(parent.info.run_id, "trials_complete")
    assert [m.value for m in sorted(history, key=lambda m: m.step)][-1] == 4
    assert len(history) >= 2  # logged while the sweep ran, not only at its end


def test_every_trial_records_the_data_it_trained_on(tracked: dict) -> None:
    digests = set()
    for run in tracked["trials"]:
        (record,) = run.inputs.dataset_inputs
        assert record.dataset.name == "synthetic"
        assert {tag.key: tag.value for tag in record.tags} == {"mlflow.data.context": "train"}
        profile = json.loads(record.dataset.profile)
        assert profile == {
            "train": 256,
            "validation": 0,
            "test": 128,
            "classes": 4,
            "shape": "1x8x8",
        }
        digests.add(record.dataset.digest)
    assert len(digests) == 1 and len(digests.pop()) == 16  # one seed: the same data


def test_run_names_and_description_of_a_sampled_sweep() -> None:
    config = parse_config(
        {
            "name": "named",
            "search": {
                "space": {
                    "alds.rate": {"low": 0.0, "high": 0.8, "step": 0.1},
                    "imp.prune_fraction": {"low": 0.1, "high": 0.3, "log": True},
                }
            },
        }
    )
    params = {"alds.rate": 0.3, "imp.prune_fraction": 0.15}
    assert trial_run_name(config.with_params(params), params, 2) == "ALDS 0.3 · prune 0.15 · seed 2"
    baseline = {"alds.rate": 0.0, "imp.prune_fraction": 0.2}
    assert (
        trial_run_name(config.with_params(baseline), baseline, 0) == "IMP only · prune 0.2 · seed 0"
    )
    text = sweep_description(config)
    assert "`alds.rate`: range [0.0, 0.8], step 0.1" in text
    assert "`imp.prune_fraction`: range (log) [0.1, 0.3]" in text


def test_optuna_dashboard_links_a_trial_to_its_run_only_on_an_http_server(tmp_path: Path) -> None:
    config = parse_config({"name": "linked"})
    served = SweepTracker("http://mlflow:5000/", config, experiment_id="7")
    assert served.run_url("abc") == "http://mlflow:5000/#/experiments/7/runs/abc"
    assert served.run_url("pending-1f") is None  # created during an outage: no real id yet
    local = SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", config, experiment_id="7")
    assert local.run_url("abc") is None

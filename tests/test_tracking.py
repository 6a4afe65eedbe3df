"""What a sweep writes to MLflow, read back from a real store: the experiment opens in the
training views with a description, runs are named for what they are, the baseline is marked,
the parent holds the fixed config and the sweep's progress, every trial records its dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator import stored_names
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import run_sweep
from orchestrator.testing.results import load_study, tracking_uri
from orchestrator.testing.sweeps import sweep_document
from orchestrator.tracking.runs import (
    SweepTracker,
    close_left_running,
    sweep_description,
    trial_run_name,
)
from orchestrator.trial.spec import TrialSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp_path = tmp_path_factory.mktemp("tracked")
    document = sweep_document(
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
    run_sweep(tmp_path, document)
    client = MlflowClient(tracking_uri(document))
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    study = load_study(document)
    return {
        "client": client,
        "experiment": experiment,
        "parent": next(
            r for r in runs if r.data.tags[stored_names.TAG_ROLE] == stored_names.ROLE_SWEEP
        ),
        "trials": [
            r for r in runs if r.data.tags[stored_names.TAG_ROLE] == stored_names.ROLE_TRIAL
        ],
        "study": study,
    }


def test_experiment_opens_in_the_training_views_with_a_description(tracked: dict) -> None:
    tags = tracked["experiment"].tags
    assert tags[stored_names.TAG_EXPERIMENT_KIND] == stored_names.EXPERIMENT_KIND_TRAINING
    assert "`alds.rate`: choice 0.0, 0.5" in tags[stored_names.TAG_NOTE]
    assert "orchestrate report" in tags[stored_names.TAG_NOTE]


def test_the_description_links_a_view_of_accuracy_against_weights_remaining(
    tracked: dict,
) -> None:
    experiment = tracked["experiment"]
    link = (
        f"#/experiments/{experiment.experiment_id}/runs?viewStateShareKey=orchestrate"
        "&workflowType=machine_learning&compareRunsMode=CHART"
    )
    assert f"]({link})" in experiment.tags[stored_names.TAG_NOTE]
    view = json.loads(experiment.tags[f"{stored_names.TAG_SHARED_VIEW_PREFIX}orchestrate"])
    assert view["searchFilter"] == f"tags.`{stored_names.TAG_ROLE}` = '{stored_names.ROLE_TRIAL}'"
    assert view["selectedColumns"][:2] == ["params.`alds.rate`", "params.`alds.mode`"]
    lines = {
        (chart["metricSectionId"], chart["metricKey"], chart["selectedXAxisMetricKey"])
        for chart in view["compareRunCharts"]
        if chart["type"] == "LINE"
    }
    # Once a trial had finished, the sweep added a chart per layer it logged.
    layers = "Weights remaining per layer"
    assert lines == {
        ("orchestrate", "accuracy", "remaining"),
        ("orchestrate", "params_effective", "remaining"),
        *((layers, f"remaining/classifier.{i}", "remaining") for i in (1, 3, 5)),
    }
    assert [section["name"] for section in view["compareRunSections"]] == [
        "ALDS rate vs accuracy",
        layers,
    ]
    # Every metric the view charts is one the trials log.
    logged = set(tracked["trials"][0].data.metrics)
    assert {metric for _, *pair in lines for metric in pair} <= logged


def test_runs_are_named_for_what_they_are_and_the_baseline_is_marked(tracked: dict) -> None:
    names = sorted(run.info.run_name for run in tracked["trials"])
    # The grid's IMP-only point runs once: the ALDS mode means nothing without ALDS.
    assert names == [
        "ALDS 0.5 · prune 0.5 · mode factorize · seed 0",
        "ALDS 0.5 · prune 0.5 · mode project · seed 0",
        "IMP only · prune 0.5 · mode project · seed 0",
    ]
    for run in tracked["trials"]:
        tags = run.data.tags
        baseline = run.info.run_name.startswith("IMP only")
        assert tags[stored_names.TAG_ARM] == (
            stored_names.ARM_BASELINE if baseline else stored_names.ARM_ALDS
        )
        assert tags[
            stored_names.TAG_CONFIG
        ] == f"alds.mode={run.data.params['alds.mode']},alds.rate=" + ("0.0" if baseline else "0.5")
        assert tags[stored_names.TAG_SOURCE_NAME] == "orchestrate · tracked"
    # optuna-dashboard shows the same label on each trial.
    arms = sorted(t.user_attrs[stored_names.TRIAL_ARM] for t in tracked["study"].trials)
    assert arms == [stored_names.ARM_ALDS, stored_names.ARM_ALDS, stored_names.ARM_BASELINE]


def test_parent_run_holds_the_fixed_config_and_the_sweeps_progress(tracked: dict) -> None:
    parent = tracked["parent"]
    params = parent.data.params
    # A searched field has no value of its own: only its range is logged.
    assert "alds.rate" not in params and "alds.mode" not in params
    assert params["model"] == "lenet300100" and params["imp.cycles"] == "2"
    assert json.loads(params["search.space.alds.rate.choices"].replace("'", '"')) == [0.0, 0.5]
    assert parent.data.metrics["trials_complete"] == 3
    assert parent.data.metrics["trials_fail"] == 0
    best = max(t.value for t in tracked["study"].trials)
    assert parent.data.metrics[stored_names.SWEEP_METRIC_BEST] == pytest.approx(best)
    history = tracked["client"].get_metric_history(parent.info.run_id, "trials_complete")
    assert [m.value for m in sorted(history, key=lambda m: m.step)][-1] == 3
    assert len(history) >= 2  # logged while the sweep ran, not only at its end


def test_every_trial_records_the_data_it_trained_on(tracked: dict) -> None:
    digests = set()
    for run in tracked["trials"]:
        (record,) = run.inputs.dataset_inputs
        assert record.dataset.name == "synthetic"
        tags = {tag.key: tag.value for tag in record.tags}
        assert tags == {stored_names.INPUT_TAG_CONTEXT: stored_names.INPUT_CONTEXT_TRAIN}
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


def _history(client: MlflowClient, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_no_metric_is_constant_across_the_steps_of_a_run(tracked: dict) -> None:
    client = tracked["client"]
    for run in tracked["trials"]:
        logged = set(run.data.metrics)
        assert {"accuracy", "remaining", "params_effective", "flops_effective"} <= logged
        # One fraction per layer IMP prunes (every layer of LeNet-300-100 here).
        assert {k for k in logged if k.startswith("remaining/")} == {
            "remaining/classifier.1",
            "remaining/classifier.3",
            "remaining/classifier.5",
        }
        assert "params_total" not in logged and "flops" not in logged
        for key in logged:
            values = _history(client, run.info.run_id, key)
            assert len(values) == 4, key  # dense, ALDS, 2 IMP cycles
            assert len(set(values)) > 1, f"{run.info.run_name}: {key} is constant"


def test_the_curves_show_what_alds_changes_in_either_mode(tracked: dict) -> None:
    client = tracked["client"]
    for run in tracked["trials"]:
        nonzero = _history(client, run.info.run_id, "params_nonzero")
        effective = _history(client, run.info.run_id, "params_effective")
        layer = _history(client, run.info.run_id, "remaining/classifier.1")
        assert effective[0] == nonzero[0] and layer[0] == 1.0  # dense: no zeros, full rank
        if run.data.tags[stored_names.TAG_ARM] == stored_names.ARM_BASELINE:
            assert effective[1] == nonzero[1] == nonzero[0]
        elif run.data.params["alds.mode"] == "project":
            # Same shapes and no zeros, but each projected layer has a low rank per block.
            assert nonzero[1] == nonzero[0] and layer[1] == 1.0
            assert effective[1] < 0.6 * nonzero[0]
        else:
            # Factorized: the layer holds its factors, fewer weights than it had.
            assert effective[1] == nonzero[1] < 0.6 * nonzero[0] and layer[1] < 0.6
        assert effective[3] < effective[1]  # IMP removes weights from there on


def test_each_run_says_which_phase_each_step_is(tracked: dict) -> None:
    for run in tracked["trials"]:
        note = run.data.tags[stored_names.TAG_NOTE]
        assert "step 0: the dense-trained network" in note
        assert "steps 2–3: IMP cycles 1–2" in note
        mode = run.data.params["alds.mode"]
        baseline = run.data.tags[stored_names.TAG_ARM] == stored_names.ARM_BASELINE
        compressed = "no ALDS" if baseline else f"ALDS at rate 0.5 ({mode} mode)"
        assert f"step 1: {compressed}" in note
        curve = tracked["client"].download_artifacts(run.info.run_id, "curve.csv")
        phases = Path(curve).read_text().splitlines()
        assert [line.split(",")[1] for line in phases] == ["phase", "dense", "alds", "imp", "imp"]


def test_alds_runs_name_their_imp_only_twin(tracked: dict) -> None:
    runs = {run.info.run_id: run for run in tracked["trials"]}
    twins = {
        run.info.run_name: runs[run.data.tags[stored_names.TAG_TWIN_RUN_ID]].info.run_name
        for run in tracked["trials"]
        if stored_names.TAG_TWIN_RUN_ID in run.data.tags
    }
    # optuna-dashboard shows the same pairs.
    study_pairs = {
        t.user_attrs[stored_names.TRIAL_RUN_ID]: t.user_attrs[stored_names.TRIAL_TWIN_RUN_ID]
        for t in tracked["study"].trials
        if stored_names.TRIAL_TWIN_RUN_ID in t.user_attrs
    }
    assert study_pairs == {
        run.info.run_id: run.data.tags[stored_names.TAG_TWIN_RUN_ID]
        for run in tracked["trials"]
        if stored_names.TAG_TWIN_RUN_ID in run.data.tags
    }
    # The ALDS mode means nothing at rate 0: both modes share the one twin.
    twin = "IMP only · prune 0.5 · mode project · seed 0"
    assert twins == {
        f"ALDS 0.5 · prune 0.5 · mode {mode} · seed 0": twin for mode in ("project", "factorize")
    }


def test_parent_run_holds_the_sweeps_comparison_figure(tracked: dict) -> None:
    client = tracked["client"]
    listed = {a.path for a in client.list_artifacts(tracked["parent"].info.run_id)}
    assert "accuracy_vs_remaining.png" in listed
    path = client.download_artifacts(tracked["parent"].info.run_id, "accuracy_vs_remaining.png")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_existing_experiment_is_opened_in_the_training_views(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    made = client.create_experiment("older", tags={stored_names.TAG_NOTE: "kept"})
    SweepTracker(uri, parse_config({"name": "older"}))
    tags = client.get_experiment(made).tags
    assert tags[stored_names.TAG_EXPERIMENT_KIND] == stored_names.EXPERIMENT_KIND_TRAINING
    assert tags[stored_names.TAG_NOTE] == "kept"  # a description someone wrote stays


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
    assert trial_run_name(TrialSpec(config, params, 2)) == "ALDS 0.3 · prune 0.15 · seed 2"
    baseline = {"alds.rate": 0.0, "imp.prune_fraction": 0.2}
    assert trial_run_name(TrialSpec(config, baseline, 0)) == "IMP only · prune 0.2 · seed 0"
    control = {**baseline, "imp.control": "reinit"}
    assert trial_run_name(TrialSpec(config, control, 0)) == "control reinit · prune 0.2 · seed 0"
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


def test_runs_left_running_by_stopped_workers_are_ended_killed(tmp_path: Path) -> None:
    # What the sweep's parent does once its workers have exited after a signal.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("stopped")
    parent = client.create_run(experiment).info.run_id

    def child(worker: str) -> str:
        tags = {stored_names.TAG_PARENT_RUN_ID: parent, stored_names.TAG_WORKER: worker}
        return client.create_run(experiment, tags=tags).info.run_id

    stopped, finished, elsewhere = child("here:1"), child("here:2"), child("there:3")
    client.set_terminated(finished, "FINISHED")
    closed = close_left_running(uri, parent, {"here:1", "here:2"}, "interrupted")
    assert closed == [stopped]
    run = client.get_run(stopped)
    assert run.info.status == "KILLED"
    assert run.data.tags[stored_names.TAG_STATE] == "FAIL"
    assert run.data.tags[stored_names.TAG_FAIL_REASON] == "interrupted"
    # A finished run, and a run of a worker that may still be running elsewhere, are left.
    assert client.get_run(finished).info.status == "FINISHED"
    assert client.get_run(elsewhere).info.status == "RUNNING"
    assert close_left_running(uri, parent, set(), "interrupted") == []

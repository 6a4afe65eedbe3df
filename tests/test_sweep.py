"""The sweep end to end: real Optuna storage, real MLflow stores, real worker processes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from orchestrator import stored_names
from orchestrator.curve import PRUNING_GRID, curve_of, value_at_sparsity
from orchestrator.testing.cli import imports_of, orchestrate
from orchestrator.testing.results import curve, load_study, runs_of, study_storage, tracking_uri
from orchestrator.testing.sweeps import sweep_document, write_sweep

pytestmark = pytest.mark.slow

CURVE_METRICS = (
    "accuracy",
    "loss",
    "sparsity",
    "params_nonzero",
    "compression_ratio",
    "params_effective",
    "flops_effective",
)


def trial_runs(document: dict, uri: str | None = None) -> tuple[MlflowClient, list]:
    """A client of the sweep's tracking store (its own, unless ``uri``) and its trial runs."""
    client = MlflowClient(uri or tracking_uri(document))
    return client, runs_of(client, document["name"])


def test_two_workers_finish_exactly_the_study(tmp_path: Path) -> None:
    document = sweep_document(
        tmp_path,
        "two",
        seeds=[0, 1],
        search={
            "sampler": "random",
            "n_trials": 6,
            "space": {"alds.rate": {"low": 0.0, "high": 0.6}},
        },
    )
    result = orchestrate(
        "sweep", str(write_sweep(tmp_path, document)), "--workers-per-device", "2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]

    trials = load_study(document).get_trials()
    assert len(trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [
        t.user_attrs for t in trials
    ]
    # Two workers shared the work.
    assert len({t.user_attrs[stored_names.TRIAL_WORKER] for t in trials}) == 2
    # The IMP-only baseline ran exactly once per seed; every configuration once per seed.
    baseline = [t for t in trials if t.params["alds.rate"] == 0.0]
    assert sorted(t.user_attrs[stored_names.TRIAL_SEED] for t in baseline) == [0, 1]
    by_config: dict[float, list[int]] = {}
    for t in trials:
        by_config.setdefault(t.params["alds.rate"], []).append(
            t.user_attrs[stored_names.TRIAL_SEED]
        )
    assert all(sorted(seeds) == [0, 1] for seeds in by_config.values())

    client, runs = trial_runs(document)
    assert len(runs) == 6
    parents = {run.data.tags[stored_names.TAG_PARENT_RUN_ID] for run in runs}
    assert len(parents) == 1
    steps = document["imp"]["cycles"] + 2
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in CURVE_METRICS:
            assert [s for s, _ in curve(client, run.info.run_id, key)] == list(range(steps))
        number = int(run.data.tags[stored_names.TAG_TRIAL_NUMBER])
        trial = next(t for t in trials if t.number == number)
        assert run.data.params["alds.rate"] == str(trial.params["alds.rate"])
    # The dense network was trained once per seed; every other trial loaded it.
    tags = sorted(run.data.tags[stored_names.TAG_DENSE_CHECKPOINT] for run in runs)
    assert tags == ["cached"] * 4 + ["trained"] * 2


def test_second_sweep_reuses_dense_checkpoint_and_curves_repeat(tmp_path: Path) -> None:
    first = sweep_document(tmp_path, "first")
    second = sweep_document(tmp_path, "second")
    for document in (first, second):
        result = orchestrate("sweep", str(write_sweep(tmp_path, document)), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    client1, runs1 = trial_runs(first)
    client2, runs2 = trial_runs(second)
    assert sorted(r.data.tags[stored_names.TAG_DENSE_CHECKPOINT] for r in runs1) == [
        "cached",
        "trained",
    ]
    assert [r.data.tags[stored_names.TAG_DENSE_CHECKPOINT] for r in runs2] == ["cached", "cached"]
    # Same seed and config give identical curves.
    curves1 = {r.data.params["alds.rate"]: curve(client1, r.info.run_id) for r in runs1}
    curves2 = {r.data.params["alds.rate"]: curve(client2, r.info.run_id) for r in runs2}
    assert curves1 == curves2
    # ALDS at rate 0.5 changed the network after step 0; the baseline did not compress.
    baseline = next(r for r in runs1 if r.data.params["alds.rate"] == "0.0")
    assert curve(client1, baseline.info.run_id, "sparsity")[1][1] == 0.0


def test_nan_trial_fails_with_reason_and_the_others_complete(tmp_path: Path) -> None:
    document = sweep_document(
        tmp_path,
        "nan",
        # SGD with momentum at the largest learning rate the schema takes diverges at once.
        train={"optimizer": "sgd", "momentum": 0.9},
        search={"sampler": "grid", "space": {"train.lr": {"choices": [0.003, 10.0]}}},
    )
    result = orchestrate("sweep", str(write_sweep(tmp_path, document)), cwd=tmp_path)
    # The failed trial is no reason to stop the others, but the sweep's exit code says it.
    assert result.returncode == 1, result.stderr[-3000:]
    assert "NonFiniteLossError" in result.stderr
    states = {t.params["train.lr"]: t for t in load_study(document).get_trials()}
    assert states[0.003].state == optuna.trial.TrialState.COMPLETE
    failed = states[10.0]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert "NonFiniteLossError" in failed.user_attrs[stored_names.TRIAL_FAIL_REASON]
    _, runs = trial_runs(document)
    statuses = {r.data.params["train.lr"]: r for r in runs}
    assert statuses["10.0"].info.status == "FAILED"
    assert "NonFiniteLossError" in statuses["10.0"].data.tags[stored_names.TAG_FAIL_REASON]


def test_pruner_stops_a_hopeless_trial(tmp_path: Path) -> None:
    # Two good trials first (grid order), then one that cannot learn: lr so small nothing moves.
    # ALDS trials: an IMP-only one is never pruned (tests/test_plan.py).
    document = sweep_document(
        tmp_path,
        "pruned",
        imp={"cycles": 3},
        alds={"rate": 0.3},
        search={
            "sampler": "grid",
            "pruner": "median",
            "enqueue_baseline": False,
            "space": {"train.lr": {"choices": [0.003, 0.002, 1.0e-9]}},
        },
    )
    result = orchestrate("sweep", str(write_sweep(tmp_path, document)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = {t.params["train.lr"]: t for t in load_study(document).get_trials()}
    assert trials[0.003].state == optuna.trial.TrialState.COMPLETE
    hopeless = trials[1.0e-9]
    assert hopeless.state == optuna.trial.TrialState.PRUNED
    # Three cycles of 50% reach 12.5% remaining: grid levels 0-5 (29% ... 82% sparsity).
    assert set(trials[0.003].intermediate_values) == set(range(6))
    assert max(hopeless.intermediate_values) < 5
    client, runs = trial_runs(document)
    run = next(r for r in runs if r.data.params["train.lr"] == "1e-09")
    assert run.info.status == "KILLED"
    # The pruned trial keeps the part of its curve it ran, as its run logged it.
    kept = curve_of(hopeless)
    logged = curve(client, run.info.run_id)
    assert [(row["step"], row["accuracy"]) for row in kept] == logged


def test_trials_with_other_prune_fractions_report_on_one_sparsity_grid(tmp_path: Path) -> None:
    document = sweep_document(
        tmp_path,
        "grid",
        search={
            "sampler": "grid",
            "enqueue_baseline": False,
            "space": {"imp.prune_fraction": {"choices": [0.3, 0.5]}},
        },
    )
    result = orchestrate("sweep", str(write_sweep(tmp_path, document)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = {t.params["imp.prune_fraction"]: t for t in load_study(document).get_trials()}
    # Two cycles keep 49% (30% per cycle) or 25% (50%): the grid's first 2 or 4 levels.
    assert set(trials[0.3].intermediate_values) == {0, 1}
    assert set(trials[0.5].intermediate_values) == {0, 1, 2, 3}
    client, runs = trial_runs(document)
    for run in runs:
        trial = trials[float(run.data.params["imp.prune_fraction"])]
        steps, accuracy = zip(*curve(client, run.info.run_id), strict=True)
        sparsity = [v for _, v in curve(client, run.info.run_id, "sparsity")]
        for level, value in trial.intermediate_values.items():
            # Level k is the same sparsity for both: the curve read there by the one rule.
            expected = value_at_sparsity(
                steps, sparsity, accuracy, PRUNING_GRID[level], first_step=0
            )
            assert value == pytest.approx(expected)
    assert PRUNING_GRID[1] == 0.5


def test_enqueue_only_then_worker_finishes(tmp_path: Path) -> None:
    document = sweep_document(tmp_path, "queued")
    path = write_sweep(tmp_path, document)
    result = orchestrate("sweep", str(path), "--enqueue-only", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(document)
    assert [t.state.name for t in study.get_trials()] == ["WAITING", "WAITING"]
    storage = study_storage(document)
    result = orchestrate("worker", "--study", "queued", "--storage", storage, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 trial(s)" in result.stdout
    assert [t.state.name for t in load_study(document).get_trials()] == ["COMPLETE", "COMPLETE"]
    status = orchestrate("status", str(path), cwd=tmp_path)
    assert status.returncode == 0 and "complete 2" in status.stdout


def test_unreachable_tracking_uri_fails_fast(tmp_path: Path) -> None:
    document = sweep_document(tmp_path, "offline")
    result = orchestrate(
        "sweep",
        str(write_sweep(tmp_path, document)),
        "--tracking-uri",
        "http://127.0.0.1:9",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "cannot reach the MLflow tracking server http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was trained or created before the check.
    assert not (tmp_path / "checkpoints").exists()


def test_resumed_sweep_keeps_its_trials_and_plans_a_changed_config(tmp_path: Path) -> None:
    document = sweep_document(tmp_path, "again")
    path = write_sweep(tmp_path, document)
    assert orchestrate("sweep", str(path), cwd=tmp_path).returncode == 0
    rerun = orchestrate("sweep", str(path), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 trials: 2 done, 0 to train" in " ".join(rerun.stdout.split())
    assert len(load_study(document).get_trials()) == 2
    # A field every trial depends on: nothing reused, and the plan says why.
    changed = sweep_document(tmp_path, "again", imp={"cycles": 3})
    dry = orchestrate("sweep", str(write_sweep(tmp_path, changed)), "--dry-run", cwd=tmp_path)
    said = " ".join(dry.stdout.split())
    assert dry.returncode == 0 and "2 trials: 0 done, 2 to train" in said
    assert "none of the study's 2 finished trials has this YAML's key" in said
    assert len(load_study(document).get_trials()) == 2


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_finished_sweep_started_again_does_nothing(tmp_path: Path) -> None:
    document = sweep_document(tmp_path, "idle")
    path = write_sweep(tmp_path, document)
    first = orchestrate("sweep", str(path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1 worker(s): cpu" in first.stdout
    # A first sweep creates its MLflow store without MLflow's notices on the console.
    assert " INFO mlflow" not in first.stderr and " INFO mlflow" not in first.stdout
    workspace = Path(document["execution"]["workspace"])
    tracked = {name: content for name, content in _files(workspace).items() if "mlflow" in name}
    assert "mlflow.db" in tracked

    again = imports_of("sweep", str(path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    # No worker started, no data read (torch), no tracking store opened (MLflow) ...
    assert "worker(s)" not in again.stdout
    assert again.stdout.splitlines()[-1] == "optuna"
    assert "2 trials: 2 done, 0 to train (0 enqueued now)" in " ".join(again.stdout.split())
    # ... and nothing written to it; the study holds its two trials, the summary is printed.
    after = {name: content for name, content in _files(workspace).items() if "mlflow" in name}
    assert after == tracked
    trials = load_study(document).get_trials()
    assert len(trials) == 2
    assert again.stdout.count("COMPLETE") == 2
    # Each trial recorded what its compression and training took: its duration less that is
    # its overhead (benchmarks/bench_cli.py).
    for trial in trials:
        ran = trial.user_attrs[stored_names.TRIAL_RUN_SECONDS]
        assert 0 < ran < (trial.datetime_complete - trial.datetime_start).total_seconds()
    # validate, too, reads no data and builds no network: the counts were kept.
    validated = imports_of("validate", str(path), cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr[-3000:]
    assert validated.stdout.splitlines()[-1] == "optuna"

    # A report with nothing new rewrites nothing; a file gone, it writes the report again.
    report = orchestrate("report", str(path), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    folder = workspace / "report"
    written = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    unchanged = orchestrate("report", str(path), cwd=tmp_path)
    assert unchanged.returncode == 0, unchanged.stderr[-3000:]
    assert "nothing changed since the report" in " ".join(unchanged.stdout.split())
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == written
    (folder / "endpoint.csv").unlink()
    redrawn = orchestrate("report", str(path), cwd=tmp_path)
    assert redrawn.returncode == 0 and (folder / "endpoint.csv").is_file()
    assert "nothing changed" not in redrawn.stdout
    # Another option is another report.
    other = orchestrate("report", str(path), "--sparsity-levels", "0.3", cwd=tmp_path)
    assert other.returncode == 0 and "nothing changed" not in other.stdout
    assert pd.read_csv(folder / "at_sparsity.csv")["sparsity"].round(6).unique().tolist() == [0.3]


def test_a_real_mlflow_server_receives_the_sweep(tmp_path: Path, mlflow_server: str) -> None:
    document = sweep_document(tmp_path, "served")
    result = orchestrate(
        "sweep", str(write_sweep(tmp_path, document)), "--tracking-uri", mlflow_server, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = trial_runs(document, mlflow_server)
    assert len(runs) == 2
    for run in runs:
        assert len(curve(client, run.info.run_id)) == document["imp"]["cycles"] + 2
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"curve.csv", "layers.csv", "accuracy_vs_sparsity.png", "final.pt"} <= artifacts
    compressed = next(r for r in runs if r.data.params["alds.rate"] == "0.5")
    assert "alds_plan.csv" in {a.path for a in client.list_artifacts(compressed.info.run_id)}


def test_imp_stops_once_the_remaining_weights_reach_the_target(tmp_path: Path) -> None:
    # Halving per cycle leaves 50%, 25%, 12.5%: the third cycle reaches 20%, the fourth never runs.
    document = sweep_document(
        tmp_path,
        "until",
        imp={"cycles": 10, "prune_fraction": 0.5, "until_remaining": 0.2},
        search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0]}}},
    )
    result = orchestrate("sweep", str(write_sweep(tmp_path, document)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = trial_runs(document)
    remaining = curve(client, runs[0].info.run_id, "remaining")
    assert [step for step, _ in remaining] == [0, 1, 2, 3, 4]
    assert remaining[-2][1] > 0.2 >= remaining[-1][1]


def test_retry_failed_runs_the_failed_trials_again_once_the_cause_is_fixed(
    tmp_path: Path,
) -> None:
    # Every trial fails (a time limit no trial meets, no retries); with the limit lifted,
    # --retry-failed runs each configuration and seed again, and the failures stay on record.
    document = sweep_document(
        tmp_path, "retried", execution={"trial_timeout": 0.01, "max_retries": 0}
    )
    failing = orchestrate("sweep", str(write_sweep(tmp_path, document)), cwd=tmp_path)
    assert failing.returncode == 1, failing.stderr[-3000:]
    assert "--retry-failed" in failing.stderr
    document["execution"]["trial_timeout"] = None
    path = write_sweep(tmp_path, document)
    again = orchestrate("sweep", str(path), cwd=tmp_path)
    assert again.returncode == 1  # a plain resume runs nothing: the failures are final
    # A worker started with the flag queues the failures again and runs them; a sweep with the
    # flag afterwards finds nothing failed for good.
    storage = study_storage(document)
    worker = orchestrate(
        "worker", "--study", "retried", "--storage", storage, "--retry-failed", cwd=tmp_path
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "2 trial(s) trained here" in worker.stdout
    fixed = orchestrate("sweep", str(path), "--retry-failed", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    trials = load_study(document).get_trials()
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 2
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["alds.rate"] for t in complete) == [0.0, 0.5]
    assert all(stored_names.TRIAL_FAIL_REASON not in t.user_attrs for t in complete)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert all("trial_timeout" in t.user_attrs[stored_names.TRIAL_FAIL_REASON] for t in failed)

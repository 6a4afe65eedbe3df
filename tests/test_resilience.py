"""Scale-out and failure handling for real: PostgreSQL studies, several worker processes,
SIGKILL and SIGINT. (A tracking server that goes away mid-sweep is the chaos check's:
tests/test_chaos.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import stored_names
from orchestrator.testing.cli import finish, orchestrate
from orchestrator.testing.results import (
    completed_once,
    curve,
    running_at_step,
    study_storage,
    tracking_uri,
    wait_for,
)
from orchestrator.testing.sweeps import slow_sweep, sweep_document, write_sweep

pytestmark = pytest.mark.slow


def test_workers_on_many_hosts_share_a_postgres_study(
    tmp_path: Path, postgres_database, mlflow_server: str
) -> None:
    storage = postgres_database()
    document = sweep_document(
        tmp_path,
        "pg",
        seeds=[0, 1],
        search={
            "sampler": "random",
            "n_trials": 8,
            # Continuous, so two sampled configurations never coincide by chance.
            "space": {"alds.rate": {"low": 0.0, "high": 0.6}},
        },
    )
    path = write_sweep(tmp_path, document)
    common = ("--storage", storage, "--tracking-uri", mlflow_server)
    queued = orchestrate("sweep", str(path), "--enqueue-only", *common, cwd=tmp_path)
    assert queued.returncode == 0, queued.stderr[-3000:]
    # Two "remote" workers and the local sweep's own worker, all at once.
    remote = [
        orchestrate("worker", "--study", "pg", *common, cwd=tmp_path, background=True)
        for _ in range(2)
    ]
    local = orchestrate("sweep", str(path), *common, cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]
    for process in remote:
        code, _, err = finish(process)
        assert code == 0, err[-3000:]
    trials = optuna.load_study(study_name="pg", storage=storage).get_trials()
    assert len(trials) == 8
    assert all(t.state == TrialState.COMPLETE for t in trials)
    counts = completed_once(trials)
    assert all(count == 1 for count in counts.values()), counts
    baseline = [t for t in trials if t.params["alds.rate"] == 0.0]
    assert sorted(t.user_attrs[stored_names.TRIAL_SEED] for t in baseline) == [0, 1]
    assert len({t.user_attrs[stored_names.TRIAL_WORKER] for t in trials}) >= 2


def test_killed_worker_trial_is_retried_and_its_run_closed(tmp_path: Path) -> None:
    document = slow_sweep(
        tmp_path, "killed", search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0]}}}
    )
    path = write_sweep(tmp_path, document)
    storage = study_storage(document)
    assert orchestrate("sweep", str(path), "--enqueue-only", cwd=tmp_path).returncode == 0
    worker = ("worker", "--study", "killed", "--storage", storage)
    victim = orchestrate(*worker, cwd=tmp_path, background=True)
    wait_for(lambda: running_at_step("killed", storage, 2), what="the trial to reach step 2")
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    # A worker on another host notices the missing heartbeat, fails and retries the trial.
    code, _, err = finish(orchestrate(*worker, cwd=tmp_path, background=True))
    assert code == 0, err[-3000:]
    trials = optuna.load_study(study_name="killed", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs[stored_names.TRIAL_FAILED_TRIAL] == 0
    client = MlflowClient(tracking_uri(document))
    killed_run = client.get_run(trials[0].user_attrs[stored_names.TRIAL_RUN_ID])
    retry_run = client.get_run(trials[1].user_attrs[stored_names.TRIAL_RUN_ID])
    assert killed_run.info.status == "FAILED"
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags[stored_names.TAG_RETRY_OF] == "0"
    # The retry resumed after the last finished cycle and still logged the whole curve.
    assert retry_run.data.tags[stored_names.TAG_RESUMED] == "true"
    steps = [step for step, _ in curve(client, retry_run.info.run_id)]
    assert steps == list(range(document["imp"]["cycles"] + 2))


def test_supervisor_restarts_a_killed_local_worker(tmp_path: Path) -> None:
    document = slow_sweep(
        tmp_path, "restart", search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0]}}}
    )
    workspace = Path(document["execution"]["workspace"])
    storage = study_storage(document)
    path = write_sweep(tmp_path, document)
    sweep = orchestrate("sweep", str(path), cwd=tmp_path, background=True)
    wait_for(lambda: (workspace / "study.db").exists(), what="the study")
    running = wait_for(
        lambda: running_at_step("restart", storage, 1), what="the trial to reach step 1"
    )
    os.kill(int(running.user_attrs[stored_names.TRIAL_WORKER].split(":")[1]), signal.SIGKILL)
    code, _, err = finish(sweep)
    assert code == 0, err[-3000:]
    trials = optuna.load_study(study_name="restart", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "exited with code -9" in trials[0].user_attrs[stored_names.TRIAL_FAIL_REASON]
    run = MlflowClient(tracking_uri(document)).get_run(
        trials[0].user_attrs[stored_names.TRIAL_RUN_ID]
    )
    assert run.info.status == "FAILED"


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path: Path) -> None:
    document = slow_sweep(tmp_path, "ctrlc")
    path = write_sweep(tmp_path, document)
    workspace = Path(document["execution"]["workspace"])
    storage = study_storage(document)
    sweep = orchestrate("sweep", str(path), cwd=tmp_path, background=True)
    wait_for(lambda: (workspace / "study.db").exists(), what="the study")
    wait_for(lambda: running_at_step("ctrlc", storage, 1), what="a trial at step 1")
    sweep.send_signal(signal.SIGINT)
    code, _, err = finish(sweep)
    assert code == 130, err[-3000:]
    assert "run the same command again to resume" in err
    interrupted = [
        t
        for t in optuna.load_study(study_name="ctrlc", storage=storage).get_trials()
        if t.state == TrialState.FAIL
    ]
    assert interrupted
    assert all(t.user_attrs[stored_names.TRIAL_FAIL_REASON] == "interrupted" for t in interrupted)
    rerun = orchestrate("sweep", str(path), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = optuna.load_study(study_name="ctrlc", storage=storage).get_trials()
    counts = completed_once(trials)
    assert sum(counts.values()) == 2 and set(counts.values()) == {1}
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)


def test_trial_timeout_fails_and_retries(tmp_path: Path) -> None:
    document = slow_sweep(
        tmp_path,
        "timeout",
        search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0]}}},
        execution={"trial_timeout": 1.0, "max_retries": 1},
    )
    result = orchestrate("sweep", str(write_sweep(tmp_path, document)), cwd=tmp_path)
    # Every try failed: the sweep says so with exit code 1.
    assert result.returncode == 1, result.stderr[-3000:]
    assert "trial 1 (IMP only · prune 0.5, seed 0) failed: trial ran longer than" in result.stderr
    trials = optuna.load_study(study_name="timeout", storage=study_storage(document)).get_trials()
    # The first try and its one retry both ran out of time; no third try.
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(
        "execution.trial_timeout" in t.user_attrs[stored_names.TRIAL_FAIL_REASON] for t in trials
    )


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_many_workers_on_one_study(tmp_path: Path, backend: str, postgres_database) -> None:
    workers = 8 if backend == "postgresql" else 4
    storage = (
        postgres_database()
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'ws' / 'load' / 'study.db'}"
    )
    document = sweep_document(
        tmp_path,
        "load",
        imp={"cycles": 1},
        search={
            "sampler": "random",
            # One trial a worker and some to spare: every claim races the others.
            "n_trials": workers + 2,
            "space": {"alds.rate": {"low": 0.0, "high": 0.6, "step": 0.05}},
        },
        execution={"storage": storage},
    )
    path = write_sweep(tmp_path, document)
    assert orchestrate("sweep", str(path), "--enqueue-only", cwd=tmp_path).returncode == 0
    worker = ("worker", "--study", "load", "--storage", storage, "--threads", "1")
    processes = [orchestrate(*worker, cwd=tmp_path, background=True) for _ in range(workers)]
    outputs = [finish(process, timeout=900) for process in processes]
    for code, _, err in outputs:
        assert code == 0, err[-3000:]
        assert "database is locked" not in err
    trials = optuna.load_study(study_name="load", storage=storage).get_trials()
    assert len(trials) == workers + 2
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sum(completed_once(trials).values()) == workers + 2
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)

"""Scale-out and failure handling for real: PostgreSQL studies, several worker processes,
SIGKILL, SIGINT and a tracking server that goes away mid-sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import study as studies
from tests.conftest import (
    free_port,
    orchestrate,
    start_mlflow_server,
    stop_process_group,
    tiny_sweep,
    write_sweep,
)

pytestmark = pytest.mark.slow

ENV = {**os.environ, "ORCHESTRATE_HEARTBEAT_SECONDS": "2"}
ENV.pop("MLFLOW_TRACKING_URI", None)


def launch(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(predicate, timeout: float = 300, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def running_at_step(study_name: str, storage: str, step: int):
    """A RUNNING trial that has logged at least ``step``, or None."""
    try:
        study = optuna.load_study(study_name=study_name, storage=studies.open_storage(storage))
    except KeyError:  # the sweep has not created it yet
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("step", -1) >= step:
            return trial
    return None


def completed_once(trials: list[optuna.trial.FrozenTrial]) -> Counter:
    return Counter(
        (tuple(sorted(t.params.items())), t.user_attrs["seed"])
        for t in trials
        if t.state == TrialState.COMPLETE
    )


def slow_sweep(tmp_path: Path, name: str, **sections: object) -> dict:
    """Trials whose steps take seconds (Conv-2, several IMP cycles), so a signal, a kill or
    a time limit lands in the middle of a trial, however fast the machine."""
    sections.setdefault("imp", {"cycles": 4, "epochs_per_cycle": 2})
    sections.setdefault("model", "conv2")
    sections.setdefault(
        "dataset",
        {
            "name": "synthetic",
            "synthetic": {
                "image_size": 16,
                "channels": 3,
                "num_classes": 4,
                "train_size": 1024,
                "test_size": 128,
            },
        },
    )
    return tiny_sweep(tmp_path, name, **sections)


def test_workers_on_many_hosts_share_a_postgres_study(
    tmp_path: Path, postgres_database, mlflow_server: str
) -> None:
    storage = postgres_database()
    document = tiny_sweep(
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
    remote = [launch("worker", "--study", "pg", *common, cwd=tmp_path) for _ in range(2)]
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
    assert sorted(t.user_attrs["seed"] for t in trials if t.params["alds.rate"] == 0.0) == [0, 1]
    assert len({t.user_attrs["worker"] for t in trials}) >= 2


def test_killed_worker_trial_is_retried_and_its_run_closed(tmp_path: Path) -> None:
    document = slow_sweep(
        tmp_path, "killed", search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0]}}}
    )
    path = write_sweep(tmp_path, document)
    workspace = Path(document["execution"]["workspace"])
    storage = f"sqlite:///{workspace / 'study.db'}"
    assert orchestrate("sweep", str(path), "--enqueue-only", cwd=tmp_path).returncode == 0
    victim = launch("worker", "--study", "killed", "--storage", storage, cwd=tmp_path)
    wait_for(lambda: running_at_step("killed", storage, 2), what="the trial to reach step 2")
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    # A worker on another host notices the missing heartbeat, fails and retries the trial.
    code, _, err = finish(launch("worker", "--study", "killed", "--storage", storage, cwd=tmp_path))
    assert code == 0, err[-3000:]
    trials = optuna.load_study(study_name="killed", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == 0
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    killed_run = client.get_run(trials[0].user_attrs["mlflow_run_id"])
    retry_run = client.get_run(trials[1].user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED"
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["retry_of_trial"] == "0"
    # The retry resumed after the last finished cycle and still logged the whole curve.
    assert retry_run.data.tags["resumed"] == "true"
    steps = [m.step for m in client.get_metric_history(retry_run.info.run_id, "accuracy")]
    assert sorted(steps) == list(range(document["imp"]["cycles"] + 2))


def test_supervisor_restarts_a_killed_local_worker(tmp_path: Path) -> None:
    document = slow_sweep(
        tmp_path, "restart", search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0]}}}
    )
    workspace = Path(document["execution"]["workspace"])
    storage = f"sqlite:///{workspace / 'study.db'}"
    sweep = launch("sweep", str(write_sweep(tmp_path, document)), cwd=tmp_path)
    wait_for(lambda: (workspace / "study.db").exists(), what="the study")
    wait_for(lambda: running_at_step("restart", storage, 1), what="the trial to reach step 1")
    pid = int(running_at_step("restart", storage, 1).user_attrs["worker"].split(":")[1])
    os.kill(pid, signal.SIGKILL)
    code, _, err = finish(sweep)
    assert code == 0, err[-3000:]
    trials = optuna.load_study(study_name="restart", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "exited with code -9" in trials[0].user_attrs["fail_reason"]
    run = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}").get_run(
        trials[0].user_attrs["mlflow_run_id"]
    )
    assert run.info.status == "FAILED"


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path: Path) -> None:
    document = slow_sweep(tmp_path, "ctrlc")
    path = write_sweep(tmp_path, document)
    workspace = Path(document["execution"]["workspace"])
    storage = f"sqlite:///{workspace / 'study.db'}"
    sweep = launch("sweep", str(path), cwd=tmp_path)
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
    assert interrupted and all(t.user_attrs["fail_reason"] == "interrupted" for t in interrupted)
    rerun = orchestrate("sweep", str(path), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = optuna.load_study(study_name="ctrlc", storage=storage).get_trials()
    counts = completed_once(trials)
    assert sum(counts.values()) == 2 and set(counts.values()) == {1}
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)


def test_tracking_server_outage_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    server = start_mlflow_server(tmp_path, port)
    uri = f"http://127.0.0.1:{port}"
    document = slow_sweep(tmp_path, "outage")
    workspace = Path(document["execution"]["workspace"])
    storage = f"sqlite:///{workspace / 'study.db'}"
    try:
        sweep = launch(
            "sweep", str(write_sweep(tmp_path, document)), "--tracking-uri", uri, cwd=tmp_path
        )
        wait_for(lambda: (workspace / "study.db").exists(), what="the study")
        wait_for(lambda: running_at_step("outage", storage, 1), what="a trial at step 1")
        stop_process_group(server)
        time.sleep(8)
        server = start_mlflow_server(tmp_path, port)
        code, _, err = finish(sweep)
        assert code == 0, err[-3000:]
        trials = optuna.load_study(study_name="outage", storage=storage).get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("outage")
        runs = client.search_runs([experiment.experiment_id], "tags.`orchestrate.role` = 'trial'")
        assert len(runs) == 2
        for run in runs:
            assert run.info.status == "FINISHED"
            history = client.get_metric_history(run.info.run_id, "accuracy")
            assert sorted(m.step for m in history) == list(range(document["imp"]["cycles"] + 2))
    finally:
        stop_process_group(server)


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
    assert "trial 1 (alds.rate=0.0, seed 0) failed: trial ran longer than" in result.stderr
    storage = f"sqlite:///{Path(document['execution']['workspace']) / 'study.db'}"
    trials = optuna.load_study(study_name="timeout", storage=storage).get_trials()
    # The first try and its one retry both ran out of time; no third try.
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all("execution.trial_timeout" in t.user_attrs["fail_reason"] for t in trials)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_many_workers_on_one_study(tmp_path: Path, backend: str, postgres_database) -> None:
    workers = 8 if backend == "postgresql" else 4
    storage = (
        postgres_database()
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'ws' / 'load' / 'study.db'}"
    )
    document = tiny_sweep(
        tmp_path,
        "load",
        imp={"cycles": 1},
        search={
            "sampler": "random",
            "n_trials": 16,
            "space": {"alds.rate": {"low": 0.0, "high": 0.6, "step": 0.05}},
        },
        execution={"storage": storage},
    )
    path = write_sweep(tmp_path, document)
    assert orchestrate("sweep", str(path), "--enqueue-only", cwd=tmp_path).returncode == 0
    processes = [
        launch("worker", "--study", "load", "--storage", storage, "--threads", "1", cwd=tmp_path)
        for _ in range(workers)
    ]
    outputs = [finish(process, timeout=900) for process in processes]
    for code, _, err in outputs:
        assert code == 0, err[-3000:]
        assert "database is locked" not in err
    trials = optuna.load_study(study_name="load", storage=storage).get_trials()
    assert len(trials) == 16
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sum(completed_once(trials).values()) == 16
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)

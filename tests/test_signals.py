"""Signals act at once: every wait of a worker ends on a real signal (a lock another process
holds, a storage in an outage, the tracking outbox), and Ctrl-C stops a sweep's workers,
training or waiting, with their trials requeued and no MLflow run left RUNNING."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import locks, stopping, stored_names, tracking, workspace
from orchestrator.study.retrying_storage import RetryingStorage, StorageUnavailable
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import finish, orchestrate
from orchestrator.testing.results import runs_of, study_storage, tracking_uri, wait_for
from orchestrator.testing.servers import free_port
from orchestrator.testing.sweeps import slow_sweep, write_sweep
from orchestrator.tracking.outbox import Outbox

# Far longer than any wait below may last once its signal has come.
WAIT_SECONDS = 300.0


@contextlib.contextmanager
def signal_after(seconds: float) -> Iterator[None]:
    """Within the block, this process gets SIGUSR2 after ``seconds``, handled as a worker
    handles its signals: by requesting a stop."""
    previous = signal.signal(signal.SIGUSR2, lambda signum, _: stopping.request("SIGUSR2"))
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGUSR2))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR2, previous)
        stopping.clear()


def test_a_signal_ends_the_wait_for_a_lock_another_process_holds(tmp_path: Path) -> None:
    lock_file = tmp_path / "dense.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"handle = open({str(lock_file)!r}, 'a')\n"
            "fcntl.flock(handle, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            f"time.sleep({WAIT_SECONDS})\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            signal_after(1.0),
            pytest.raises(stopping.Interrupted, match=r"dense\.lock"),
            locks.exclusive(lock_file),
        ):
            pytest.fail("the lock was taken while another process held it")
        assert holder.poll() is None  # the wait ended, not the lock
    finally:
        holder.kill()
        holder.wait()
    with locks.exclusive(lock_file):  # free again: taken at once, no stop requested
        pass


def test_a_signal_ends_the_wait_for_a_storage_in_an_outage() -> None:
    # A real connection error: nothing listens on the port.
    engine = sqlalchemy.create_engine(f"postgresql://127.0.0.1:{free_port()}/test")
    storage = RetryingStorage(optuna.storages.InMemoryStorage(), limit_seconds=WAIT_SECONDS)
    try:
        with signal_after(1.0), pytest.raises(StorageUnavailable, match="asked to stop"):
            storage.ride_out(lambda: engine.connect().close())
    finally:
        engine.dispose()


def test_a_signal_ends_the_wait_for_the_tracking_store(tmp_path: Path) -> None:
    tracking.fail_fast_http()
    client = MlflowClient(f"http://127.0.0.1:{free_port()}")
    spool = tmp_path / "spool.jsonl"
    outbox = Outbox(client, spool, attempts=1, backoff=0.1)
    outbox.log_batch("some-run", tags={"state": "FAIL"})
    outbox.set_terminated("some-run", "KILLED")
    assert len(outbox.pending) == 2  # the server is away: both kept
    with signal_after(1.0):
        assert outbox.flush(deadline=time.monotonic() + WAIT_SECONDS) is False
    # After Slurm's warning the worker gives MLflow a bounded time, signal or not.
    with signal_after(0.0):
        started = time.monotonic()
        assert outbox.flush(deadline=started + 1.5, stoppable=False) is False
        assert time.monotonic() - started >= 1.5
    # Nothing lost: the calls wait in the spool for the sweep's parent to send.
    assert [call["op"] for call in Outbox(client, spool).pending] == [
        "log_batch",
        "set_terminated",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("signals", [1, 2])
def test_ctrl_c_stops_a_training_and_a_waiting_worker_at_once(tmp_path: Path, signals: int) -> None:
    # One ALDS trial and its IMP-only twin share seed 0's dense network: one worker trains it
    # (far longer than this test waits), the other waits on its lock.
    document = slow_sweep(
        tmp_path,
        f"ctrlc{signals}",
        search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0, 0.3]}}},
        train={"epochs": 500},
        execution={"workers_per_device": 2},
    )
    name = document["name"]
    storage = study_storage(document)
    cache = workspace.cache_folder(parse_config(document))
    path = write_sweep(tmp_path, document)
    sweep = orchestrate("sweep", str(path), cwd=tmp_path, background=True)

    def both_running() -> bool:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except Exception:  # not created yet
            return False
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return len(running) == 2 and all(stored_names.TRIAL_KEY in t.user_attrs for t in running)

    # The lock first: the study's schema exists by then (reading earlier would create it).
    wait_for(lambda: list(cache.glob("dense-*.flock")), what="the dense lock", process=sweep)
    wait_for(both_running, what="both trials running", process=sweep)
    time.sleep(2.0)  # the second worker is in its wait for the lock
    for _ in range(signals):
        sweep.send_signal(signal.SIGINT)
        time.sleep(0.3)
    code, _, err = finish(sweep, timeout=120)
    assert code == 130, err[-3000:]
    # The dense network was never finished: training stopped in the middle of its step.
    assert not list(cache.glob("dense-*.pt"))
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2
    # Both queued again, as new attempts that do not count as retries.
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs[stored_names.TRIAL_FAILED_TRIAL] for t in waiting) == sorted(
        t.number for t in stopped
    )
    client = MlflowClient(tracking_uri(document))
    runs = runs_of(client, name)
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "KILLED", run.data.tags
        assert run.data.tags[stored_names.TAG_STATE] == "FAIL"
        assert "interrupted" in run.data.tags[stored_names.TAG_FAIL_REASON]
    # What a user reads after the stop: nothing failed, two trials stopped and queued again;
    # the parent run is ended as KILLED, and RUNNING again once a start resumes the sweep.
    study = optuna.load_study(study_name=name, storage=storage)
    parent = client.get_run(study.user_attrs[stored_names.STUDY_PARENT_RUN_ID])
    assert parent.info.status == "KILLED"
    status = orchestrate("status", str(path), cwd=tmp_path)
    said = " ".join(status.stdout.split())
    assert "done 0/2 · complete 0 · running 0 · pruned 0 · failed 0 · queued 2" in said
    assert "rerun 2 (interrupted, or failed and retried)" in said
    assert "interrupted; run again as trial" in said
    resumed = orchestrate("sweep", str(path), "--enqueue-only", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"

"""Faults of the database and the disk, for real: a PostgreSQL server of the test's own that
stays away past the outage limit, a corrupted shared checkpoint, trials that all fail, and
several first starts of one sweep at once. (A restart mid-sweep that loses nothing is the
chaos check's: tests/test_chaos.py.)"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import stored_names
from orchestrator.study import study as studies
from orchestrator.study.retrying_storage import StorageUnavailable
from orchestrator.testing.cli import finish, orchestrate
from orchestrator.testing.results import (
    completed_once,
    curve,
    running_at_step,
    study_storage,
    tracking_uri,
    wait_for,
)
from orchestrator.testing.servers import ThrowawayPostgres
from orchestrator.testing.sweeps import slow_sweep, sweep_document, write_sweep
from orchestrator.trial.cache import CheckpointCache, CorruptCheckpoint, load, save_atomically

pytestmark = pytest.mark.slow


@pytest.fixture
def own_postgres() -> ThrowawayPostgres:
    with ThrowawayPostgres() as server:
        yield server


def curves_complete(client: MlflowClient, trials: list, steps: int) -> None:
    for trial in trials:
        logged = [step for step, _ in curve(client, trial.user_attrs[stored_names.TRIAL_RUN_ID])]
        assert logged == list(range(steps)), trial.number


def test_a_sweep_whose_database_stays_away_past_the_limit_exits_1_and_says_so(
    tmp_path: Path, own_postgres: ThrowawayPostgres
) -> None:
    document = slow_sweep(tmp_path, "lost", search={"space": {"alds.rate": {"choices": [0.0]}}})
    path = write_sweep(tmp_path, document)
    url = own_postgres.url
    sweep = orchestrate(
        "sweep",
        str(path),
        "--storage",
        url,
        cwd=tmp_path,
        env={"ORCHESTRATE_STORAGE_OUTAGE_LIMIT": "5"},
        background=True,
    )
    wait_for(lambda: running_at_step("lost", url, 1), what="a trial at step 1", process=sweep)
    own_postgres.stop()
    try:
        _, err = sweep.communicate(timeout=120)
    finally:
        own_postgres.start()
    assert sweep.returncode == 1, err[-3000:]
    assert "study storage unreachable for" in err and "limit 5 s" in err
    assert "Run the same command again once the storage is back" in err


def test_storage_calls_wait_out_an_outage_and_give_up_after_the_limit(
    own_postgres: ThrowawayPostgres,
) -> None:
    storage = studies.open_storage(own_postgres.url, outage_limit=30)
    study = optuna.create_study(study_name="outage", storage=storage)
    own_postgres.stop()
    # A worker's report does not wait: it hears at once that the storage is away.
    with storage.patience(0), pytest.raises(StorageUnavailable, match="unreachable for 0 s"):
        study.set_user_attr("during", 1)
    # Other calls wait; the server is back within their limit.
    coming_back = threading.Event()

    def restart() -> None:
        coming_back.set()  # before the server can answer: the call cannot return before it
        own_postgres.start()

    threading.Timer(5, restart).start()
    study.set_user_attr("after", 2)
    assert coming_back.is_set()  # it waited out the outage instead of failing
    assert study.user_attrs == {"after": 2}
    own_postgres.stop()
    with storage.patience(3), pytest.raises(StorageUnavailable, match=r"limit 3 s"):
        study.set_user_attr("never", 3)
    own_postgres.start()
    assert study.user_attrs == {"after": 2}


def test_a_corrupt_checkpoint_is_moved_aside_and_made_again(tmp_path: Path) -> None:
    cache = CheckpointCache(tmp_path)
    made = []

    def make() -> dict:
        made.append(1)
        return {"state": {"w": torch.arange(1000.0)}}

    payload, computed = cache.get_or_make("dense", {"k": 1}, make)
    assert computed and len(made) == 1
    path = cache.path("dense", {"k": 1})
    assert cache.get_or_make("dense", {"k": 1}, make)[1] is False
    path.write_bytes(path.read_bytes()[:-100])  # truncated, as a full disk leaves it
    with pytest.raises(CorruptCheckpoint, match=str(path)):
        load(path)
    payload, computed = cache.get_or_make("dense", {"k": 1}, make)
    assert computed and len(made) == 2
    assert torch.equal(payload["state"]["w"], torch.arange(1000.0))
    assert torch.equal(load(path)["state"]["w"], torch.arange(1000.0))
    (kept,) = tmp_path.glob("dense-*.pt.corrupt-*")
    assert kept.stat().st_size == path.stat().st_size - 100
    # A flipped byte that still loads is caught by the digest written with the file.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpoint, match="differs"):
        load(path)
    save_atomically({"x": torch.ones(2)}, path)
    assert torch.equal(load(path)["x"], torch.ones(2))


def test_a_sweep_over_a_truncated_dense_checkpoint_recomputes_it(tmp_path: Path) -> None:
    first = sweep_document(tmp_path, "first", search={"space": {"alds.rate": {"choices": [0.0]}}})
    assert orchestrate("sweep", str(write_sweep(tmp_path, first)), cwd=tmp_path).returncode == 0
    (dense,) = (tmp_path / "checkpoints").glob("dense-*.pt")
    dense.write_bytes(dense.read_bytes()[: dense.stat().st_size // 2])
    # Another sweep with the same dense network (same model, data, training and seed).
    second = sweep_document(tmp_path, "second")
    result = orchestrate("sweep", str(write_sweep(tmp_path, second)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"corrupt checkpoint {dense}" in result.stderr
    trials = optuna.load_study(study_name="second", storage=study_storage(second)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert len(list((tmp_path / "checkpoints").glob("dense-*.pt.corrupt-*"))) == 1
    load(dense)  # whole again


def test_a_sweep_whose_trials_fail_exits_1_and_says_why(tmp_path: Path) -> None:
    # More training images than the generated set holds: each trial fails on its data (the
    # parent reads no generated data to check it).
    document = sweep_document(tmp_path, "failing", dataset={"train_subset": 10_000})
    path = write_sweep(tmp_path, document)
    result = orchestrate("sweep", str(path), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert (
        "trial 0 (IMP only · prune 0.5, seed 0) failed: DatasetError: dataset.train_subset=10000"
        in (result.stderr)
    )
    assert "2 trial(s) failed after their retries (--allow-failures to exit 0)" in result.stderr
    # Said once, by the sweep: not by its worker too, nor as if the flag had been given.
    assert result.stderr.count("trial 0 (IMP only · prune 0.5, seed 0) failed") == 1
    assert "--allow-failures: exit 0" not in result.stderr
    assert "worker done: 2 trial(s) trained here" in result.stdout
    assert "could not log" not in result.stderr  # nothing finished: no figures to draw
    allowed = orchestrate("sweep", str(path), "--allow-failures", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "2 trial(s) failed (--allow-failures: exit 0)" in allowed.stderr
    # A worker started by hand says the same when the queue is done.
    storage = study_storage(document)
    worker = orchestrate("worker", "--study", "failing", "--storage", storage, cwd=tmp_path)
    assert (
        worker.returncode == 1 and "trial 1 (ALDS 0.5 · prune 0.5, seed 0) failed" in worker.stderr
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_four_first_starts_at_once_run_each_configuration_once(
    tmp_path: Path, backend: str, own_postgres: ThrowawayPostgres
) -> None:
    document = sweep_document(
        tmp_path,
        "together",
        seeds=[0, 1],
        search={"space": {"alds.rate": {"choices": [0.0, 0.3, 0.6]}}},
    )
    path = write_sweep(tmp_path, document)
    extra = ["--storage", own_postgres.url] if backend == "postgresql" else []
    starts = [
        orchestrate("sweep", str(path), *extra, cwd=tmp_path, background=True) for _ in range(4)
    ]
    results = [finish(start) for start in starts]
    for code, _, err in results:
        assert code == 0, err[-3000:]
        assert "already exists" not in err
    url = own_postgres.url if backend == "postgresql" else study_storage(document)
    trials = optuna.load_study(study_name="together", storage=url).get_trials()
    assert len(trials) == 6
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 6}
    assert sorted(completed_once(trials).values()) == [1] * 6
    client = MlflowClient(tracking_uri(document))
    runs = client.search_runs([client.get_experiment_by_name("together").experiment_id])
    roles = Counter(r.data.tags[stored_names.TAG_ROLE] for r in runs)
    assert roles == {stored_names.ROLE_SWEEP: 1, stored_names.ROLE_TRIAL: 6}

"""MLflow calls made while the tracking server is down are kept, then replayed in order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator import stored_names
from orchestrator.stored_names import PENDING_RUN_ID as PENDING
from orchestrator.testing.servers import ThrowawayMlflow
from orchestrator.tracking.outbox import Outbox, replay_spool
from orchestrator.tracking.runs import trial_runs

pytestmark = pytest.mark.slow


def test_calls_during_an_outage_reach_the_server_after_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    server = ThrowawayMlflow(tmp_path)
    client = MlflowClient(server.uri)
    with server:
        experiment = client.create_experiment("outbox")
        parent = client.create_run(experiment).info.run_id

    spool = tmp_path / "spool" / "worker.jsonl"
    outbox = Outbox(client, spool, attempts=2, backoff=0.05)
    run_id = outbox.create_run(
        experiment,
        {stored_names.TAG_PARENT_RUN_ID: parent, stored_names.TAG_TRIAL_NUMBER: "0"},
        "trial-0",
    )
    assert run_id.startswith(PENDING)
    for step in range(3):
        outbox.log_batch(run_id, metrics=[("accuracy", 0.5 + step / 10, 1000 + step, step)])
    artifact = tmp_path / "curve.csv"
    artifact.write_text("step,accuracy\n0,0.5\n")
    outbox.log_file(run_id, artifact)
    artifact.unlink()  # the caller's temporary file is gone; the outbox kept a copy
    outbox.log_batch(run_id, tags={stored_names.TAG_STATE: "COMPLETE"})
    outbox.set_terminated(run_id, "FINISHED")
    kept = [json.loads(line) for line in spool.read_text().splitlines()]
    assert [call["op"] for call in kept] == [
        "create_run",
        "log_batch",
        "log_batch",
        "log_batch",
        "log_file",
        "log_batch",
        "set_terminated",
    ]

    # The worker is gone; the sweep's parent replays its spool once the server is back.
    with server:
        assert replay_spool(client, spool, deadline=0.0)
        assert not spool.exists()
        real = trial_runs(client, parent)[0]
        run = client.get_run(real)
        assert run.info.status == "FINISHED"
        assert run.data.tags[stored_names.TAG_STATE] == "COMPLETE"
        history = client.get_metric_history(real, "accuracy")
        assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.6), (2, 0.7)]
        assert [a.path for a in client.list_artifacts(real)] == ["curve.csv"]


def test_calls_go_straight_through_while_the_server_answers(tmp_path: Path, mlflow_server: str):
    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment("direct")
    spool = tmp_path / "spool.jsonl"
    outbox = Outbox(client, spool)
    run_id = outbox.create_run(experiment, {stored_names.TAG_TRIAL_NUMBER: "3"}, "trial-3")
    assert not run_id.startswith(PENDING)
    outbox.log_batch(run_id, metrics=[("loss", 1.0, 1, 0)], params={"alds.rate": "0.5"})
    outbox.set_terminated(run_id, "KILLED")
    assert not spool.exists()
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.params["alds.rate"] == "0.5"


WRITER = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient
from orchestrator.tracking.outbox import Outbox

uri, experiment, spool, index, steps = sys.argv[1:]
outbox = Outbox(MlflowClient(uri), Path(spool), backoff=0.05)
run = outbox.create_run(experiment, {"writer": index}, f"writer-{index}")
for step in range(int(steps)):
    outbox.log_batch(run, metrics=[("accuracy", step / 1000, int(time.time() * 1000), step)])
outbox.set_terminated(run, "FINISHED")
sys.exit(0 if outbox.flush(deadline=time.monotonic() + 300) else 3)
"""


def test_many_writers_on_one_sqlite_tracking_file_lose_nothing(tmp_path: Path) -> None:
    # What a Slurm sweep with a SQLite tracking file does: many processes write one file at
    # once. A call that finds the database locked waits (SQLite's busy timeout) or is kept by
    # the outbox and sent again.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = MlflowClient(uri).create_experiment("writers")  # the schema, made once
    writers, steps = 8, 150
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                uri,
                experiment,
                str(tmp_path / f"{i}.jsonl"),
                str(i),
                str(steps),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([experiment], max_results=100)
    assert sorted(run.data.tags["writer"] for run in runs) == sorted(map(str, range(writers)))
    for run in runs:
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "accuracy")
        assert sorted(m.step for m in history) == list(range(steps))
    assert not list(tmp_path.glob("*.jsonl"))  # nothing left unsent

"""MLflow calls made while the tracking server is down are kept, then replayed in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator import keys
from orchestrator.outbox import PENDING, Outbox, replay_spool
from orchestrator.testing.servers import ThrowawayMlflow
from orchestrator.tracking import trial_runs

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
        experiment, {keys.TAG_PARENT_RUN_ID: parent, keys.TAG_TRIAL_NUMBER: "0"}, "trial-0"
    )
    assert run_id.startswith(PENDING)
    for step in range(3):
        outbox.log_batch(run_id, metrics=[("accuracy", 0.5 + step / 10, 1000 + step, step)])
    artifact = tmp_path / "curve.csv"
    artifact.write_text("step,accuracy\n0,0.5\n")
    outbox.log_file(run_id, artifact)
    artifact.unlink()  # the caller's temporary file is gone; the outbox kept a copy
    outbox.log_batch(run_id, tags={keys.TAG_STATE: "COMPLETE"})
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
        assert run.data.tags[keys.TAG_STATE] == "COMPLETE"
        history = client.get_metric_history(real, "accuracy")
        assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.6), (2, 0.7)]
        assert [a.path for a in client.list_artifacts(real)] == ["curve.csv"]


def test_calls_go_straight_through_while_the_server_answers(tmp_path: Path, mlflow_server: str):
    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment("direct")
    spool = tmp_path / "spool.jsonl"
    outbox = Outbox(client, spool)
    run_id = outbox.create_run(experiment, {keys.TAG_TRIAL_NUMBER: "3"}, "trial-3")
    assert not run_id.startswith(PENDING)
    outbox.log_batch(run_id, metrics=[("loss", 1.0, 1, 0)], params={"alds.rate": "0.5"})
    outbox.set_terminated(run_id, "KILLED")
    assert not spool.exists()
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.params["alds.rate"] == "0.5"

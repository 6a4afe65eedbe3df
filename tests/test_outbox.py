"""MLflow calls made while the tracking server is down are kept, then replayed in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.outbox import PENDING, Outbox, replay_spool
from orchestrator.tracking import trial_runs
from tests.conftest import free_port, start_mlflow_server, stop_process_group

pytestmark = pytest.mark.slow


def test_calls_during_an_outage_reach_the_server_after_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port)
    client = MlflowClient(uri)
    try:
        experiment = client.create_experiment("outbox")
        parent = client.create_run(experiment).info.run_id
    finally:
        stop_process_group(server)

    spool = tmp_path / "spool" / "worker.jsonl"
    outbox = Outbox(client, spool, attempts=2, backoff=0.05)
    run_id = outbox.create_run(
        experiment, {"mlflow.parentRunId": parent, "trial_number": "0"}, "trial-0"
    )
    assert run_id.startswith(PENDING)
    for step in range(3):
        outbox.log_batch(run_id, metrics=[("accuracy", 0.5 + step / 10, 1000 + step, step)])
    artifact = tmp_path / "curve.csv"
    artifact.write_text("step,accuracy\n0,0.5\n")
    outbox.log_file(run_id, artifact)
    artifact.unlink()  # the caller's temporary file is gone; the outbox kept a copy
    outbox.log_batch(run_id, tags={"state": "COMPLETE"})
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
    server = start_mlflow_server(tmp_path, port)
    try:
        assert replay_spool(client, spool, deadline=0.0)
        assert not spool.exists()
        real = trial_runs(client, parent)[0]
        run = client.get_run(real)
        assert run.info.status == "FINISHED"
        assert run.data.tags["state"] == "COMPLETE"
        history = client.get_metric_history(real, "accuracy")
        assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.6), (2, 0.7)]
        assert [a.path for a in client.list_artifacts(real)] == ["curve.csv"]
    finally:
        stop_process_group(server)


def test_calls_go_straight_through_while_the_server_answers(tmp_path: Path, mlflow_server: str):
    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment("direct")
    spool = tmp_path / "spool.jsonl"
    outbox = Outbox(client, spool)
    run_id = outbox.create_run(experiment, {"trial_number": "3"}, "trial-3")
    assert not run_id.startswith(PENDING)
    outbox.log_batch(run_id, metrics=[("loss", 1.0, 1, 0)], params={"alds.rate": "0.5"})
    outbox.set_terminated(run_id, "KILLED")
    assert not spool.exists()
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.params["alds.rate"] == "0.5"

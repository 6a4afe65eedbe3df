"""The compose stack's topology without Docker.

The PostgreSQL on 127.0.0.1:5432 holds the study and MLflow's backend store; `mlflow server`,
optuna-dashboard and the Optuna schema step run with the compose file's own commands and
healthchecks (listening on 127.0.0.1 instead of 0.0.0.0 in a container). Then a sweep is
enqueued, two `orchestrate worker` processes finish it, and its runs are read back through the
MLflow server's REST API, as a user of the stack would see them.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator import plan, stored_names
from orchestrator.sweep_file import load_config
from orchestrator.testing.cli import orchestrate
from orchestrator.testing.servers import free_port, stop_process_group
from orchestrator.testing.sweeps import sweep_document, write_sweep
from tests.conftest import ROOT
from tests.test_compose import MLFLOW_PASSWORD, argv, load_compose

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _local_command(args: list[str], port: int, replace: Mapping[str, str] = {}) -> list[str]:
    """A service's compose command as run here: on 127.0.0.1:port, with local paths and URLs."""
    local = [replace.get(arg, arg) for arg in args]
    local[local.index("--host") + 1] = "127.0.0.1"
    local[local.index("--port") + 1] = str(port)
    return local


@dataclass(frozen=True)
class _Server:
    process: subprocess.Popen
    log: Path


@contextlib.contextmanager
def _started(command: list[str], log: Path, env: Mapping[str, str]) -> Iterator[_Server]:
    """A server process in its own process group, stopped with all its children."""
    with open(log, "w") as out:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield _Server(process, log)
        finally:
            stop_process_group(process)


def _healthcheck(
    service: Mapping[str, Any], ports: Mapping[str, str], env: Mapping[str, str]
) -> int:
    """Run the service's compose healthcheck here; its exit code (0: healthy)."""
    kind, *args = service["healthcheck"]["test"]
    for container, local in ports.items():
        args = [arg.replace(container, local) for arg in args]
    if kind == "CMD-SHELL":
        command = ["sh", "-c", args[0]]
    else:
        assert kind == "CMD"
        command = [sys.executable if args[0] == "python" else args[0], *args[1:]]
    env = {**os.environ, **env}
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def _wait_healthy(
    service: Mapping[str, Any],
    *,
    server: _Server | None = None,
    ports: Mapping[str, str] = {},
    env: Mapping[str, str] = {},
    timeout: float = 240,
) -> None:
    """Poll the service's healthcheck as Docker does, until it passes or the server dies."""
    deadline = time.monotonic() + timeout
    while _healthcheck(service, ports, env) != 0:
        died = server is not None and server.process.poll() is not None
        if died or time.monotonic() > deadline:
            tail = server.log.read_text()[-3000:] if server is not None else ""
            raise AssertionError(f"{service['healthcheck']['test']} never passed:\n{tail}")
        time.sleep(1.0)


def _request(
    url: str, body: Any = None, host: str | None = None, login: tuple[str, str] | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if host is not None:
        headers["Host"] = host
    if login is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(login).encode()).decode()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def _json(url: str, body: Any = None, login: tuple[str, str] | None = None) -> Any:
    status, payload = _request(url, body, login=login)
    assert status == 200, (url, status)
    return payload


def test_stack_topology_runs_a_sweep_on_postgres_and_an_mlflow_server(
    tmp_path: Path, postgres_database: Callable[[], str]
) -> None:
    services = load_compose()["services"]
    compose_storage = services["storage-init"]["environment"]["ORCHESTRATE_STORAGE"]
    # The local databases, reached with the driver the stack's URLs name.
    scheme = urllib.parse.urlsplit(compose_storage).scheme
    storage, backend = (
        urllib.parse.urlsplit(postgres_database())._replace(scheme=scheme).geturl()
        for _ in range(2)
    )
    admin = urllib.parse.urlsplit(storage)
    artifacts = tmp_path / "mlflow-artifacts"

    # PostgreSQL answers the postgres service's own healthcheck.
    _wait_healthy(
        services["postgres"],
        env={"POSTGRES_USER": admin.username or "postgres", "POSTGRES_DB": "test"},
        timeout=30,
    )

    # The storage-init step creates Optuna's tables, which optuna-dashboard needs to start.
    init = argv(services["storage-init"])
    assert init[0] == "python"
    created = subprocess.run(
        [sys.executable, *init[1:]],
        env={**os.environ, "ORCHESTRATE_STORAGE": storage},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr

    mlflow_port, dashboard_port = free_port(), free_port()
    uri = f"http://127.0.0.1:{mlflow_port}"
    dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    with contextlib.ExitStack() as stack:
        # The stack's login: its settings file with the accounts' database moved here.
        compose_mlflow = services["mlflow"]["environment"]
        settings = configparser.ConfigParser()
        settings.read(ROOT / "docker" / "mlflow-auth.ini")
        settings["mlflow"]["database_uri"] = f"sqlite:///{tmp_path / 'basic_auth.db'}"
        with open(tmp_path / "basic_auth.ini", "w") as handle:
            settings.write(handle)
        login = (compose_mlflow["MLFLOW_AUTH_ADMIN_USERNAME"], MLFLOW_PASSWORD)
        mlflow_env = {
            "MLFLOW_BACKEND_STORE_URI": backend,
            "MLFLOW_ARTIFACTS_DESTINATION": str(artifacts),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_USERNAME": login[0],
            "MLFLOW_AUTH_ADMIN_PASSWORD": compose_mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": compose_mlflow["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        }
        assert set(compose_mlflow) == set(mlflow_env)
        # What the tool services log in with (MLflow's own variables).
        worker_env = services["worker"]["environment"]
        credentials = {
            "MLFLOW_TRACKING_USERNAME": worker_env["MLFLOW_TRACKING_USERNAME"],
            "MLFLOW_TRACKING_PASSWORD": worker_env["MLFLOW_TRACKING_PASSWORD"],
        }
        mlflow_args = _local_command(argv(services["mlflow"]), mlflow_port)
        mlflow_args[mlflow_args.index("--workers") + 1] = "1"  # a shared 2-core machine
        mlflow = stack.enter_context(
            _started([sys.executable, "-m", *mlflow_args], tmp_path / "mlflow.log", mlflow_env)
        )
        dashboard_args = _local_command(
            argv(services["dashboard"]), dashboard_port, {compose_storage: storage}
        )
        assert storage in dashboard_args
        dashboard = stack.enter_context(
            _started([str(BIN / dashboard_args[0]), *dashboard_args[1:]], tmp_path / "dash.log", {})
        )
        _wait_healthy(
            services["mlflow"],
            server=mlflow,
            ports={"127.0.0.1:5000": f"127.0.0.1:{mlflow_port}"},
        )
        _wait_healthy(
            services["dashboard"],
            server=dashboard,
            ports={"127.0.0.1:8080": f"127.0.0.1:{dashboard_port}"},
        )

        # The compose file's --allowed-hosts lets the workers in by service name, not others.
        probe = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _request(probe, host="mlflow:5000", login=login)[0] == 200
        assert _request(probe, host="attacker.example", login=login)[0] == 403
        # Without the login, or with a wrong one, the API is refused.
        assert _request(probe)[0] == 401
        assert _request(probe, login=(login[0], "not-the-password"))[0] == 401

        name = f"topology_{uuid.uuid4().hex[:8]}"
        sweep = write_sweep(
            tmp_path,
            sweep_document(
                tmp_path,
                name=name,
                search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0, 0.25, 0.5]}}},
            ),
        )
        config = load_config(sweep)
        worker_command = ("worker", "--study", name, "--storage", storage, "--tracking-uri", uri)
        # A worker without the login stops before it runs anything, naming the variables.
        refused = orchestrate(*worker_command, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in refused.stderr
        enqueued = orchestrate(
            "sweep",
            str(sweep),
            "--enqueue-only",
            "--storage",
            storage,
            "--tracking-uri",
            uri,
            cwd=tmp_path,
            env=credentials,
        )
        assert enqueued.returncode == 0, enqueued.stderr
        summaries = _json(f"{dashboard_url}/api/studies")["study_summaries"]
        assert name in [summary["study_name"] for summary in summaries]

        def worker(_: int) -> subprocess.CompletedProcess:
            return orchestrate(*worker_command, "--threads", "1", cwd=tmp_path, env=credentials)

        with ThreadPoolExecutor(2) as pool:
            finished = list(pool.map(worker, range(2)))
        for result in finished:
            assert result.returncode == 0, result.stderr[-3000:]
        ran = [int(re.search(r"worker done: (\d+) trial", r.stdout)[1]) for r in finished]
        assert sum(ran) == plan.total_trials(config) == 3

        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * plan.total_trials(config)
        assert sorted(t.params["alds.rate"] for t in trials) == [0.0, 0.25, 0.5]

        # What the MLflow UI shows, read through the server's REST API.
        experiment = _json(
            f"{uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}", login=login
        )
        runs = _json(
            f"{uri}/api/2.0/mlflow/runs/search",
            {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100},
            login=login,
        )["runs"]

        def tags(run: Mapping[str, Any]) -> dict[str, str]:
            return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}

        by_trial = {
            int(tags(run)[stored_names.TAG_TRIAL_NUMBER]): run
            for run in runs
            if tags(run).get(stored_names.TAG_ROLE) == stored_names.ROLE_TRIAL
        }
        assert sorted(by_trial) == sorted(t.number for t in trials)
        steps = list(range(config.imp.cycles + 2))  # dense, alds, one per IMP cycle
        for trial in trials:
            run = by_trial[trial.number]
            run_id = run["info"]["run_id"]
            assert run_id == trial.user_attrs[stored_names.TRIAL_RUN_ID]
            assert run["info"]["status"] == "FINISHED"
            parent = study.user_attrs[stored_names.STUDY_PARENT_RUN_ID]
            assert tags(run)[stored_names.TAG_PARENT_RUN_ID] == parent
            history = {
                key: sorted(
                    _json(
                        f"{uri}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}",
                        login=login,
                    )["metrics"],
                    key=lambda metric: metric["step"],
                )
                for key in ("accuracy", "sparsity")
            }
            assert [m["step"] for m in history["accuracy"]] == steps
            assert history["accuracy"][-1]["value"] == pytest.approx(trial.value)
            sparsity = [m["value"] for m in history["sparsity"]]
            assert sparsity[2:] == sorted(sparsity[2:]) and sparsity[-1] > 0.5
            listed = _json(f"{uri}/api/2.0/mlflow/artifacts/list?run_id={run_id}", login=login)[
                "files"
            ]
            assert "curve.csv" in {entry["path"] for entry in listed}
        # Artifacts went through the server into its destination (a volume in the stack).
        assert len(list(artifacts.rglob("curve.csv"))) == plan.total_trials(config)

"""Fault injection on a real sweep: does it lose, repeat or change anything?

Usage::

    .venv/bin/python scripts/chaos.py [--outage SECONDS] [--workdir DIR]

It starts servers of its own (a throwaway PostgreSQL from the ``postgresql`` package's
binaries and an MLflow tracking server, on free ports of 127.0.0.1), so nothing else on the
machine is disturbed, and runs the same small sweep twice (4 trials: the IMP-only baseline and
ALDS 0.5, two seeds each, two local workers; Conv-2 on synthetic images):

1. **reference**: without faults; study in the PostgreSQL database ``reference``, MLflow in a
   local SQLite store;
2. **faulty**: study in the database ``faulty``, MLflow on the server; while it runs, once a
   trial has reported a step each time, it
   - kills the worker running a trial (SIGKILL),
   - stops PostgreSQL for ``--outage`` seconds (a fast shutdown: connections are cut),
   - stops the MLflow server for as long, and starts it again on the same port and store.

Then it checks, printing one line per check:

- the faulty sweep exited 0, and every fault was injected while trials were running;
- every configuration x seed is COMPLETE exactly once, no trial is RUNNING or WAITING;
- every complete trial's MLflow run holds every curve with each step exactly once;
- ``orchestrate report``'s tables (curves, versus_baseline, summary, at_sparsity) are
  identical for the two sweeps, to the last digit: the runs are deterministic, so the faults
  changed nothing.

Exit codes: 0 every check passed; 1 a check failed; 2 a problem with the set-up (no
PostgreSQL binaries, a server that does not start).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import pandas as pd
import psycopg
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import keys
from orchestrator import report as reports
from orchestrator import study as studies
from orchestrator.config import ConfigError, load_config
from orchestrator.report.schema import METRICS
from orchestrator.throwaway import (
    ThrowawayPostgres,
    free_port,
    start_mlflow_server,
    stop_process_group,
)
from orchestrator.tracking import resolve_pending

# Heartbeats are an experimental Optuna feature, used knowingly (as the CLI does).
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

NAME = "chaos"
CYCLES = 4
COMPARED_TABLES = ("curves", "versus_baseline", "summary", "at_sparsity")


def sweep_document(workspace: Path, cache: Path) -> dict:
    """Four trials whose IMP cycles take seconds each, so faults land mid-trial."""
    return {
        "name": NAME,
        "seeds": [0, 1],
        "model": "conv2",
        "dataset": {
            "name": "synthetic",
            "synthetic": {
                "image_size": 16,
                "channels": 3,
                "num_classes": 4,
                "train_size": 1024,
                "test_size": 128,
            },
        },
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 32, "epochs": 1},
        "alds": {"mode": "project"},
        "imp": {"cycles": CYCLES, "prune_fraction": 0.5, "epochs_per_cycle": 2},
        "search": {"sampler": "grid", "space": {"alds.rate": {"choices": [0.0, 0.5]}}},
        "execution": {
            "devices": "cpu",
            "workers_per_device": 2,
            "workspace": str(workspace),
            "cache_dir": str(cache),
        },
    }


class Checks:
    """Collects PASS/FAIL lines."""

    def __init__(self) -> None:
        self.failed = 0

    def __call__(self, passed: bool, what: str) -> bool:
        print(f"{'PASS' if passed else 'FAIL'}  {what}", flush=True)
        self.failed += not passed
        return passed


def orchestrate(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "ORCHESTRATE_HEARTBEAT_SECONDS": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def running_trial(url: str, exclude_worker: str | None = None) -> optuna.trial.FrozenTrial | None:
    """A RUNNING trial that has reported step 1 or later (of another worker than given)."""
    try:
        study = optuna.load_study(study_name=NAME, storage=studies.open_storage(url))
    except KeyError:
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(keys.TRIAL_WORKER)
        if trial.user_attrs.get(keys.TRIAL_STEP, -1) >= 1 and worker != exclude_worker:
            return trial
    return None


def wait_running(
    sweep: subprocess.Popen, url: str, exclude_worker: str | None = None
) -> optuna.trial.FrozenTrial | None:
    """Wait for :func:`running_trial`; ``None`` when the sweep ended first."""
    while sweep.poll() is None:
        trial = running_trial(url, exclude_worker)
        if trial is not None:
            return trial
        time.sleep(0.5)
    return None


def inject_faults(
    sweep: subprocess.Popen,
    url: str,
    postgres: ThrowawayPostgres,
    restart_mlflow: Callable[[], None],
    stop_mlflow: Callable[[], None],
    outage: float,
    check: Checks,
) -> None:
    trial = wait_running(sweep, url)
    if check(trial is not None, "a trial was running to kill its worker"):
        label = trial.user_attrs[keys.TRIAL_WORKER]
        os.kill(int(label.rsplit(":", 1)[1]), signal.SIGKILL)
        print(f"      killed worker {label} running trial {trial.number}", flush=True)
        trial = wait_running(sweep, url, exclude_worker=label)
    if check(trial is not None, "a trial was running when PostgreSQL stopped"):
        postgres.stop()
        print(f"      PostgreSQL stopped for {outage:g} s", flush=True)
        time.sleep(outage)
        postgres.start()
        trial = wait_running(sweep, url)
    if check(trial is not None, "a trial was running when the MLflow server stopped"):
        stop_mlflow()
        print(f"      MLflow server stopped for {outage:g} s", flush=True)
        time.sleep(outage)
        restart_mlflow()


def verify_study(url: str, check: Checks) -> optuna.Study:
    study = optuna.load_study(study_name=NAME, storage=studies.open_storage(url))
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    check(
        not states["RUNNING"] and not states["WAITING"],
        f"no trial left running or queued ({dict(states)})",
    )
    complete = Counter(
        (tuple(sorted(t.params.items())), t.user_attrs.get(keys.TRIAL_SEED))
        for t in trials
        if t.state == TrialState.COMPLETE
    )
    check(
        len(complete) == 4 and set(complete.values()) == {1},
        f"each configuration x seed COMPLETE exactly once ({len(complete)} of 4)",
    )
    return study


def verify_curves(study: optuna.Study, tracking_uri: str, check: Checks) -> None:
    client = MlflowClient(tracking_uri)
    runs = resolve_pending(
        client,
        study.user_attrs[keys.STUDY_PARENT_RUN_ID],
        {t.number: t.user_attrs.get(keys.TRIAL_RUN_ID) for t in study.get_trials()},
    )
    problems = []
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        run_id = runs[trial.number]
        logged = client.get_run(run_id).data.metrics
        for key in (k for k in METRICS if k in logged):
            steps = sorted(m.step for m in client.get_metric_history(run_id, key))
            if steps != list(range(CYCLES + 2)):
                problems.append(f"trial {trial.number} {key}: steps {steps}")
    check(
        not problems,
        "every complete trial's curves hold each step exactly once"
        + (f": {'; '.join(problems[:5])}" if problems else ""),
    )


def compare_reports(reference: reports.Report, faulty: reports.Report, check: Checks) -> None:
    for name in COMPARED_TABLES:
        left = reference.tables[name].reset_index(drop=True)
        right = faulty.tables[name].reset_index(drop=True)
        try:
            pd.testing.assert_frame_equal(left, right, check_exact=True)
            same, detail = True, f"{len(left)} rows"
        except AssertionError as exc:
            same, detail = False, str(exc).splitlines()[0]
        check(same, f"report table {name} identical to the fault-free sweep's ({detail})")


def create_databases(postgres: ThrowawayPostgres, *names: str) -> dict[str, str]:
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        for name in names:
            connection.execute(f"CREATE DATABASE {name}")
    base = postgres.url.rsplit("/", 1)[0]
    return {name: f"{base}/{name}" for name in names}


def run(workdir: Path, outage: float) -> int:
    check = Checks()
    config_paths = {}
    for label in ("reference", "faulty"):
        folder = workdir / label
        folder.mkdir(parents=True)
        path = folder / f"{NAME}.yaml"
        document = sweep_document(folder / "ws", workdir / "checkpoints")
        path.write_text(yaml.safe_dump(document))
        config_paths[label] = path
    with ThrowawayPostgres() as postgres:
        urls = create_databases(postgres, "reference", "faulty")
        print(f"PostgreSQL {postgres.url} (its own, in {postgres.folder})", flush=True)
        reference_dir = config_paths["reference"].parent
        print("reference sweep, without faults...", flush=True)
        clean = orchestrate(
            "sweep", str(config_paths["reference"]), "--storage", urls["reference"], cwd=workdir
        )
        _, err = clean.communicate(timeout=1800)
        if not check(clean.returncode == 0, "the reference sweep exited 0"):
            print(err[-3000:])
            return 1
        port = free_port()
        server_folder = workdir / "mlflow-server"
        server_folder.mkdir()
        server = [start_mlflow_server(server_folder, port)]
        tracking_uri = f"http://127.0.0.1:{port}"
        print(f"MLflow server {tracking_uri}; faulty sweep...", flush=True)
        try:
            faulty = orchestrate(
                "sweep",
                str(config_paths["faulty"]),
                "--storage",
                urls["faulty"],
                "--tracking-uri",
                tracking_uri,
                cwd=workdir,
            )
            inject_faults(
                faulty,
                urls["faulty"],
                postgres,
                restart_mlflow=lambda: server.append(start_mlflow_server(server_folder, port)),
                stop_mlflow=lambda: stop_process_group(server[-1]),
                outage=outage,
                check=check,
            )
            _, err = faulty.communicate(timeout=1800)
            (workdir / "faulty-sweep.log").write_text(err)
            check(faulty.returncode == 0, f"the faulty sweep exited 0 (got {faulty.returncode})")
            check(
                "study storage unreachable since" in err,
                "the sweep said on its console that the study storage was unreachable",
            )
            study = verify_study(urls["faulty"], check)
            verify_curves(study, tracking_uri, check)
            reference_study = optuna.load_study(
                study_name=NAME, storage=studies.open_storage(urls["reference"])
            )
            reference = reports.build(
                reference_study,
                load_config(config_paths["reference"]),
                tracking_uri=f"sqlite:///{reference_dir / 'ws' / 'mlflow.db'}",
            )
            faulty_report = reports.build(
                study, load_config(config_paths["faulty"]), tracking_uri=tracking_uri
            )
            compare_reports(reference, faulty_report, check)
        finally:
            stop_process_group(server[-1])
    print(f"{'all checks passed' if not check.failed else f'{check.failed} check(s) failed'}")
    return 1 if check.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=10.0, help="seconds of each outage")
    parser.add_argument("--workdir", type=Path, help="folder for the run (default: a temp one)")
    args = parser.parse_args(argv)
    try:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=False)
            return run(args.workdir, args.outage)
        with tempfile.TemporaryDirectory(prefix="orchestrate-chaos-") as folder:
            return run(Path(folder), args.outage)
    except (ConfigError, RuntimeError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

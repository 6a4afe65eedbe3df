"""Fault injection on a real sweep: does it lose, repeat or change anything?

Usage::

    .venv/bin/python scripts/chaos.py [--outage SECONDS] [--workdir DIR] [--sequential]

It starts servers of its own (a PostgreSQL from the ``postgresql`` package's binaries and an
MLflow tracking server, on free ports of 127.0.0.1; see :mod:`orchestrator.testing.servers`),
so nothing else on the machine is disturbed, and runs the same small sweep twice (4 trials:
the IMP-only baseline and ALDS 0.5, two seeds each, two local workers; Conv-2 on synthetic
images):

1. **reference**: without faults; study in the PostgreSQL database ``reference``, MLflow in a
   local SQLite store;
2. **faulty**: study in the database ``faulty``, MLflow on the server; while it runs, once a
   trial has reported a step each time, it
   - kills the worker running a trial (SIGKILL),
   - stops PostgreSQL for ``--outage`` seconds (a fast shutdown: connections are cut),
   - stops the MLflow server for as long, and starts it again on the same port and store.

With ``--sequential`` the sweep decides (docs/report.md, "A sweep that decides": three seeds
first, up to four, a margin of 2 points) and PostgreSQL stops right after a trial finishes,
while its worker looks and enqueues the next round; the checks add that every
(configuration, seed) the fault-free sweep ran, and no other, is COMPLETE exactly once, with
the same decisions.

Then it checks, printing one line per check:

- the faulty sweep exited 0, and every fault was injected while trials were running;
- every configuration x seed is COMPLETE exactly once, no trial is RUNNING or WAITING;
- every complete trial's MLflow run holds every curve with each step exactly once;
- ``orchestrate report``'s tables (curves, versus_baseline, summary, at_sparsity) are
  identical for the two sweeps, to the last digit: the runs are deterministic, so the faults
  changed nothing (with ``--sequential`` to 1e-12: the faults change the order the looks
  number the trials in, and a sum's last bits with it).

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
from pathlib import Path

import optuna
import pandas as pd
import psycopg
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import report as reports, stored_names
from orchestrator.config import ConfigError
from orchestrator.report.schema import METRICS
from orchestrator.study import study as studies
from orchestrator.sweep_file import load_config
from orchestrator.testing.cli import finish, orchestrate
from orchestrator.testing.results import completed_once, running_at_step, tracking_uri
from orchestrator.testing.servers import ThrowawayMlflow, ThrowawayPostgres
from orchestrator.testing.sweeps import slow_sweep, write_sweep
from orchestrator.tracking.runs import resolve_pending

# Heartbeats are an experimental Optuna feature, used knowingly (as the CLI does).
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

NAME = "chaos"
CYCLES = 4
COMPARED_TABLES = ("curves", "versus_baseline", "summary", "at_sparsity")


def sweep_document(workspace: Path, cache: Path, *, sequential: bool = False) -> dict:
    """Four trials (baseline and ALDS 0.5, two seeds) whose IMP cycles take seconds each, so
    faults land mid-trial; two local workers. ``sequential``: three seeds first, up to four."""
    decides = (
        {"seeds": [0, 1, 2], "sequential": {"max_seeds": 4}, "report": {"margin": 2.0}}
        if sequential
        else {"seeds": [0, 1]}
    )
    return slow_sweep(
        workspace.parent,
        NAME,
        imp={"cycles": CYCLES, "epochs_per_cycle": 2},
        execution={"workers_per_device": 2, "workspace": str(workspace), "cache_dir": str(cache)},
        **decides,
    )


class Checks:
    """Collects PASS/FAIL lines."""

    def __init__(self) -> None:
        self.failed = 0

    def __call__(self, passed: bool, what: str) -> bool:
        print(f"{'PASS' if passed else 'FAIL'}  {what}", flush=True)
        self.failed += not passed
        return passed


def wait_running(
    sweep: subprocess.Popen, url: str, exclude_worker: str | None = None
) -> optuna.trial.FrozenTrial | None:
    """Wait for a RUNNING trial that has reported step 1 or later (of another worker than
    given); ``None`` when the sweep ended first."""
    while sweep.poll() is None:
        trial = running_at_step(NAME, url, 1, exclude_worker=exclude_worker)
        if trial is not None:
            return trial
        time.sleep(0.5)
    return None


def inject_faults(
    sweep: subprocess.Popen,
    url: str,
    postgres: ThrowawayPostgres,
    mlflow: ThrowawayMlflow,
    outage: float,
    check: Checks,
    *,
    during_look: bool = False,
) -> None:
    trial = wait_running(sweep, url)
    if check(trial is not None, "a trial was running to kill its worker"):
        label = trial.user_attrs[stored_names.TRIAL_WORKER]
        os.kill(int(label.rsplit(":", 1)[1]), signal.SIGKILL)
        print(f"      killed worker {label} running trial {trial.number}", flush=True)
        trial = wait_running(sweep, url, exclude_worker=label)
    if during_look and trial is not None:
        # Right after a trial finishes: its worker looks and enqueues the next round.
        finished = complete_count(url)
        while sweep.poll() is None and complete_count(url) == finished:
            time.sleep(0.1)
    if check(trial is not None, "a trial was running when PostgreSQL stopped"):
        postgres.stop()
        print(f"      PostgreSQL stopped for {outage:g} s", flush=True)
        time.sleep(outage)
        postgres.start()
        trial = wait_running(sweep, url)
    if check(trial is not None, "a trial was running when the MLflow server stopped"):
        mlflow.stop()
        print(f"      MLflow server stopped for {outage:g} s", flush=True)
        time.sleep(outage)
        mlflow.start()


def complete_count(url: str) -> int:
    study = optuna.load_study(study_name=NAME, storage=url)
    return sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def verify_study(url: str, check: Checks, expected: Counter | None = None) -> optuna.Study:
    study = optuna.load_study(study_name=NAME, storage=studies.open_storage(url))
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    check(
        not states["RUNNING"] and not states["WAITING"],
        f"no trial left running or queued ({dict(states)})",
    )
    complete = completed_once(trials)
    wanted = expected if expected is not None else Counter({key: 1 for key in complete})
    check(
        complete == wanted and (expected is not None or len(complete) == 4),
        f"each configuration x seed COMPLETE exactly once ({len(complete)} of {len(wanted)})",
    )
    return study


def verify_decisions(
    reference: optuna.Study, faulty: optuna.Study, config_path: Path, check: Checks
) -> None:
    from orchestrator.report import looks
    from orchestrator.study import growth

    config = load_config(config_path)

    def decisions(study: optuna.Study) -> dict[str, tuple[int, int]]:
        trials = growth.in_sweep(config, study.get_trials(deepcopy=False))
        return {s.config: (s.decision, s.seeds) for s in looks.look(config, trials)}

    same = decisions(reference) == decisions(faulty)
    check(same, f"the same decisions as the fault-free sweep ({decisions(faulty)})")


def verify_curves(study: optuna.Study, tracking_uri: str, check: Checks) -> None:
    client = MlflowClient(tracking_uri)
    runs = resolve_pending(
        client,
        study.user_attrs[stored_names.STUDY_PARENT_RUN_ID],
        {t.number: t.user_attrs.get(stored_names.TRIAL_RUN_ID) for t in study.get_trials()},
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


def compare_reports(
    reference: reports.Report, faulty: reports.Report, check: Checks, *, exact: bool = True
) -> None:
    """``exact``: to the last digit. A sequential sweep's trials are numbered in the order its
    looks enqueued them, which the faults change, and a standard deviation summed in another
    order differs in its last bits: compared to 1e-12 there."""
    for name in COMPARED_TABLES:
        left = reference.tables[name].reset_index(drop=True)
        right = faulty.tables[name].reset_index(drop=True)
        try:
            pd.testing.assert_frame_equal(left, right, check_exact=exact, rtol=1e-12, atol=0.0)
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


def run(workdir: Path, outage: float, sequential: bool = False) -> int:
    check = Checks()
    documents, config_paths = {}, {}
    for label in ("reference", "faulty"):
        folder = workdir / label
        folder.mkdir(parents=True)
        documents[label] = sweep_document(
            folder / "ws", workdir / "checkpoints", sequential=sequential
        )
        config_paths[label] = write_sweep(folder, documents[label])
    with ThrowawayPostgres() as postgres:
        urls = create_databases(postgres, "reference", "faulty")
        print(f"PostgreSQL {postgres.url} (its own, in {postgres.folder})", flush=True)
        print("reference sweep, without faults...", flush=True)
        clean = orchestrate(
            "sweep",
            str(config_paths["reference"]),
            "--storage",
            urls["reference"],
            cwd=workdir,
            background=True,
        )
        code, _, err = finish(clean, timeout=1800)
        if not check(code == 0, "the reference sweep exited 0"):
            print(err[-3000:])
            return 1
        server_folder = workdir / "mlflow-server"
        server_folder.mkdir()
        with ThrowawayMlflow(server_folder) as server:
            print(f"MLflow server {server.uri}; faulty sweep...", flush=True)
            faulty = orchestrate(
                "sweep",
                str(config_paths["faulty"]),
                "--storage",
                urls["faulty"],
                "--tracking-uri",
                server.uri,
                cwd=workdir,
                background=True,
            )
            inject_faults(
                faulty,
                urls["faulty"],
                postgres,
                server,
                outage=outage,
                check=check,
                during_look=sequential,
            )
            code, _, err = finish(faulty, timeout=1800)
            (workdir / "faulty-sweep.log").write_text(err)
            check(code == 0, f"the faulty sweep exited 0 (got {code})")
            check(
                "study storage unreachable since" in err,
                "the sweep said on its console that the study storage was unreachable",
            )
            reference_study = optuna.load_study(
                study_name=NAME, storage=studies.open_storage(urls["reference"])
            )
            expected = completed_once(reference_study.trials) if sequential else None
            study = verify_study(urls["faulty"], check, expected)
            verify_curves(study, server.uri, check)
            if sequential:
                verify_decisions(reference_study, study, config_paths["faulty"], check)
            reference = reports.build(
                reference_study,
                load_config(config_paths["reference"]),
                tracking_uri=tracking_uri(documents["reference"]),
            )
            faulty_report = reports.build(
                study, load_config(config_paths["faulty"]), tracking_uri=server.uri
            )
            compare_reports(reference, faulty_report, check, exact=not sequential)
    print(f"{'all checks passed' if not check.failed else f'{check.failed} check(s) failed'}")
    return 1 if check.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=10.0, help="seconds of each outage")
    parser.add_argument("--workdir", type=Path, help="folder for the run (default: a temp one)")
    parser.add_argument(
        "--sequential", action="store_true", help="a sweep that decides; an outage during a look"
    )
    args = parser.parse_args(argv)
    try:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=False)
            return run(args.workdir, args.outage, args.sequential)
        with tempfile.TemporaryDirectory(prefix="orchestrate-chaos-") as folder:
            return run(Path(folder), args.outage, args.sequential)
    except (ConfigError, RuntimeError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

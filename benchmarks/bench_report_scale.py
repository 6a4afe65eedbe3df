"""Reading a large sweep back: ``orchestrate report`` and ``orchestrate status`` on N finished
trials, as the user runs them, over a SQLite MLflow store or an MLflow server.

The script fabricates the sweep a cluster would leave behind, through the stores a worker
writes to: the real Optuna study (created as ``orchestrate sweep`` creates it, every trial
with the parameters, keys, attributes, intermediate values and kept curve a worker gives it)
and the real MLflow store (each trial's run made by the tracker a worker uses, its params,
tags and every step of its curve, one metric per step and key as a worker logs them; the steps
of a run go in one batch, which stores the same rows as one batch a step). The trials are
sampled points of the seed's question: ALDS rate x prune fraction x scope x 5 seeds.

With ``--tracking server`` an ``mlflow server`` is started on the fabricated store (the
multi-host and Slurm setup) and the study points to it. Then ``orchestrate report`` and
``orchestrate status`` run as subprocesses, timed whole (interpreter start included), and the
report's peak resident memory is read from the child's rusage.

    python benchmarks/bench_report_scale.py --trials 1000 --tracking server

The line before the last times the sweep's parent drawing its live figures (in this process,
as ``sweep.follow`` holds its study and what it read): the first draw, and the next after 10
more trials finish. The last line reads ``report N trials: X s, status: Y s, peak memory:
Z MB`` (N: the trials the study holds). ``--keep DIR`` fabricates into DIR and reuses it on
the next run, with the 10 trials each refresh added.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from orchestrator import curve, stored_names, tracking, workspace
from orchestrator.report.schema import METRICS
from orchestrator.study import queue, study as studies
from orchestrator.sweep_file import parse_config
from orchestrator.testing.servers import free_port, start_mlflow_server, stop_process_group
from orchestrator.testing.sweeps import sweep_document, write_sweep
from orchestrator.trial import identity
from orchestrator.trial.spec import TrialSpec

SEEDS = 5
DIGEST = "fabricated"  # the data digest every fabricated trial was keyed with


def document_for(folder: Path, trials: int) -> dict:
    return sweep_document(
        folder,
        "scale",
        seeds=list(range(SEEDS)),
        search={
            "sampler": "tpe",
            "n_trials": trials,
            "enqueue_baseline": False,
            "space": {
                "alds.rate": {"low": 0.0, "high": 0.9},
                "imp.prune_fraction": {"low": 0.1, "high": 0.5},
                "imp.scope": {"choices": ["global", "layer"]},
            },
        },
    )


def curve_rows(rng: random.Random, steps: int, layers: int) -> list[dict]:
    """A plausible compression curve: sparsity rises by the prune fraction a step, accuracy
    falls slowly, every metric of a step and each layer's remaining fraction."""
    fraction = rng.uniform(0.1, 0.5)
    rows = []
    for step in range(steps):
        remaining = (1 - fraction) ** step
        row = {"step": step, "phase": "imp", "cycle": step}
        row.update({metric: rng.random() for metric in METRICS})
        row.update(
            accuracy=0.9 - 0.3 * (1 - remaining) * rng.random(),
            sparsity=1 - remaining,
            remaining=remaining,
            params_nonzero=int(266_610 * remaining),
        )
        row.update(
            {stored_names.layer_remaining(f"layer{i}.weight"): remaining for i in range(layers)}
        )
        rows.append(row)
    return rows


def fabricate(folder: Path, trials: int, steps: int, metrics: int) -> Path:
    """The sweep's YAML, its study and its MLflow store, N finished trials in both."""
    document = document_for(folder, trials)
    path = write_sweep(folder, document)
    config = parse_config(document)
    storage = studies.open_storage(workspace.default_storage(config))
    study = studies.create_or_resume(config, storage)
    uri = workspace.default_tracking_uri(config)
    tracker = tracking.SweepTracker(uri, config)
    study.set_user_attr(stored_names.STUDY_PARENT_RUN_ID, tracker.create_parent_run())
    study.set_user_attr(stored_names.STUDY_TRACKING_URI, uri)
    study.set_user_attr(stored_names.STUDY_EXPERIMENT_ID, tracker.experiment_id)
    finish(study, tracker, range(trials), steps, metrics)
    return path


def finish(
    study: optuna.Study,
    tracker: tracking.SweepTracker,
    numbers: range,
    steps: int,
    metrics: int,
) -> None:
    """Trials ``numbers`` finished, in the study and in their MLflow runs."""
    config = tracker.config
    parent = study.user_attrs[stored_names.STUDY_PARENT_RUN_ID]
    distributions = {p: queue.distribution(r) for p, r in config.search.space.items()}
    rng = random.Random(numbers.start)
    layers = max(0, metrics - len(METRICS))
    start = dt.datetime.now() - dt.timedelta(hours=1)
    batch: list[optuna.trial.FrozenTrial] = []
    for number in numbers:
        seed = number % SEEDS
        params = {
            "alds.rate": rng.uniform(0.0, 0.9),
            "imp.prune_fraction": rng.uniform(0.1, 0.5),
            "imp.scope": rng.choice(["global", "layer"]),
        }
        rows = curve_rows(rng, steps, layers)
        run = tracker.start_trial(
            parent, trial_number=number, spec=TrialSpec(config, params, seed),
            tags={stored_names.TAG_DEVICE: "cpu", stored_names.TAG_WORKER: "bench"},
        )  # fmt: skip
        every = [
            (name, float(value), 0, int(row["step"]))
            for row in rows
            for name, value in row.items()
            if name not in ("step", "phase", "cycle")
        ]
        for chunk in range(0, len(every), 1000):  # MLflow's limit of metrics a batch
            tracker.outbox.log_batch(run.run_id, metrics=every[chunk : chunk + 1000])
        run.set_tags({stored_names.TAG_STATE: "COMPLETE"})
        run.end("FINISHED")
        key = identity.trial_key(config, params, seed, device="cpu", data=DIGEST)
        batch.append(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                params=params,
                distributions=distributions,
                value=rows[-1]["accuracy"],
                intermediate_values={k: r["accuracy"] for k, r in enumerate(rows)},
                user_attrs={
                    stored_names.TRIAL_SEED: seed,
                    stored_names.TRIAL_RUN_ID: run.run_id,
                    stored_names.TRIAL_WORKER: "bench",
                    stored_names.TRIAL_DEVICE: "cpu",
                    stored_names.TRIAL_STEP: steps - 1,
                    stored_names.TRIAL_KEY: key,
                    stored_names.TRIAL_DATA_DIGEST: DIGEST,
                    stored_names.TRIAL_DEVICE_CLASS: "cpu",
                    stored_names.TRIAL_RESULTS_VERSION: identity.RESULTS_VERSION,
                    stored_names.TRIAL_PACKAGE_VERSION: identity.package_version(),
                },
                system_attrs={stored_names.TRIAL_CURVE: curve.encode_curve(rows)},
            )
        )
        batch[-1].datetime_start = start
        batch[-1].datetime_complete = start + dt.timedelta(minutes=5)
        if len(batch) == 500 or number == numbers.stop - 1:
            study.add_trials(batch)
            batch = []
            print(f"  fabricated {number + 1}/{numbers.stop} trials", file=sys.stderr)


def refresh(
    folder: Path, held: int, trials: int, steps: int, metrics: int, uri: str
) -> tuple[float, float]:
    """The sweep's parent drawing its figures (as ``sweep.follow`` does every 2 minutes): the
    first draw, and the next after ``REFRESHED`` more trials have finished, in seconds.

    The parent holds its study (Optuna's cached storage) and what it read (``report.Curves``);
    the added trials stay (``held`` is how many the study holds, ``trials`` its YAML's)."""
    from orchestrator import report

    config = parse_config(document_for(folder, trials))
    study = optuna.load_study(
        study_name=config.name, storage=studies.open_storage(workspace.default_storage(config))
    )
    curves = report.Curves()

    def draw() -> float:
        began = time.perf_counter()
        for figure in report.draw(study, config, tracking_uri=uri, curves=curves).values():
            figure.savefig(io.BytesIO(), format="png")  # what log_figures uploads
        return time.perf_counter() - began

    first = draw()
    tracker = tracking.SweepTracker(uri, config)
    finish(study, tracker, range(held, held + REFRESHED), steps, metrics)
    return first, draw()


REFRESHED = 10


def _held(folder: Path, trials: int) -> int:
    """How many trials the sweep fabricated in ``folder`` holds (``--keep``)."""
    config = parse_config(document_for(folder, trials))
    study = optuna.load_study(study_name=config.name, storage=workspace.default_storage(config))
    return len(study.get_trials(deepcopy=False))


def timed(folder: Path, *args: str) -> tuple[float, float]:
    """Seconds of ``orchestrate ARGS`` as a user runs it, and the child's peak memory in MB.

    The peak is GNU time's (``/usr/bin/time``): a child forked from this process would carry
    this process's resident memory in its own high-water mark until it execs.
    """
    with tempfile.NamedTemporaryFile("r") as peak:
        start = time.perf_counter()
        done = subprocess.run(
            [GNU_TIME, "-f", "%M", "-o", peak.name, sys.executable, "-m", "orchestrator", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "120"},
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"orchestrate {args[0]} failed:\n{done.stderr[-8000:]}")
        return seconds, int(peak.read().split()[-1]) / 1024


GNU_TIME = "/usr/bin/time"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--tracking", choices=("sqlite", "server"), default="sqlite")
    parser.add_argument("--steps", type=int, default=20, help="steps of each curve")
    parser.add_argument("--metrics", type=int, default=20, help="metrics of each step")
    parser.add_argument(
        "--keep", type=Path, help="fabricate into this folder and keep it (or reuse it)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "scale.yaml"
        held = _held(folder, args.trials) if path.exists() else 0
        if held >= args.trials and (held - args.trials) % REFRESHED == 0:
            print(f"reusing the sweep fabricated in {folder}: {held} trials", file=sys.stderr)
        else:
            began = time.perf_counter()
            held = args.trials
            path = fabricate(folder, args.trials, args.steps, args.metrics)
            print(f"fabricated in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        server = None
        extra: list[str] = []
        if args.tracking == "server":
            config = parse_config(document_for(folder, args.trials))
            port = free_port()
            store = workspace.sqlite_url(workspace.tracking_file(config))
            server = start_mlflow_server(folder, port, backend=store)
            extra = ["--tracking-uri", f"http://127.0.0.1:{port}"]
        try:
            report, memory = timed(folder, "report", str(path), *extra)
            status, _ = timed(folder, "status", str(path))
            uri = (
                extra[-1]
                if extra
                else workspace.default_tracking_uri(parse_config(document_for(folder, args.trials)))
            )
            first, again = refresh(folder, held, args.trials, args.steps, args.metrics, uri)
            print(
                f"parent's figures: first draw {first:.1f} s, "
                f"after {REFRESHED} more trials {again:.1f} s"
            )
        finally:
            if server is not None:
                stop_process_group(server)
    print(
        f"report {held} trials: {report:.1f} s, status: {status:.1f} s, "
        f"peak memory: {memory:.0f} MB"
    )


if __name__ == "__main__":
    main()

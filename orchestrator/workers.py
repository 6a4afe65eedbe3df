"""Workers: the loop that claims and runs trials, the device pool, and the supervising parent.

One worker process per device slot: a GPU slot sees only its GPU (``CUDA_VISIBLE_DEVICES``),
CPU slots share the cores. Every worker runs :func:`run_worker`, locally under
``orchestrate sweep`` or on any host with ``orchestrate worker``; they coordinate only
through the study's storage.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import progress
from orchestrator import study as studies
from orchestrator.cache import CheckpointCache
from orchestrator.config import SweepConfig, config_hash
from orchestrator.outbox import PENDING
from orchestrator.procedure import Step, TrialResult, objective_value, run_trial
from orchestrator.tracking import EXPERIMENT_ATTR, PARENT_ATTR, URI_ATTR, SweepTracker, TrialRun

POLL_SECONDS = 2.0
logger = logging.getLogger(__name__)

__all__ = [
    "Slot",
    "Supervisor",
    "cache_folder",
    "device_slots",
    "run_worker",
    "spawn",
    "worker_command",
]


@dataclass(frozen=True)
class Slot:
    """One worker's place: a GPU index, or the CPU."""

    gpu: int | None
    index: int

    @property
    def name(self) -> str:
        return "cpu" if self.gpu is None else f"cuda:{self.gpu}"


def device_slots(devices: str, workers_per_device: int) -> list[Slot]:
    """``auto`` (every visible GPU, else the CPU), ``cpu``, or GPU indices ``0,1,3``."""
    if devices == "auto":
        import torch

        count = torch.cuda.device_count()
        gpus: list[int | None] = list(range(count)) if count else [None]
    elif devices == "cpu":
        gpus = [None]
    else:
        gpus = [int(part) for part in devices.split(",")]
    pool = [gpu for gpu in gpus for _ in range(workers_per_device)]
    return [Slot(gpu, index) for index, gpu in enumerate(pool)]


def cache_folder(config: SweepConfig) -> Path:
    """``execution.cache_dir``, else ``checkpoints/`` beside the sweep's workspace."""
    if config.execution.cache_dir:
        return Path(config.execution.cache_dir).expanduser()
    return studies.workspace(config).parent / "checkpoints"


def progress_folder(config: SweepConfig) -> Path:
    """Where trials keep their per-cycle state, so a retry resumes where its try stopped."""
    return cache_folder(config) / "trials"


def _worker_label(host: str, pid: int) -> str:
    return f"{host}:{pid}"


class TrialInterrupted(Exception):
    """The worker was asked to stop; the trial ends after its current step and is requeued."""


class TrialTimeout(Exception):
    """The trial ran longer than ``execution.trial_timeout``."""


def close_run(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str) -> None:
    """End the MLflow run of a trial whose worker is gone (no run left RUNNING)."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    uri = study.user_attrs.get(URI_ATTR)
    if not run_id or not uri or run_id.startswith(PENDING):
        return
    client = MlflowClient(uri)
    try:
        client.set_tag(run_id, "state", "FAIL")
        client.set_tag(run_id, "fail_reason", reason)
        client.set_terminated(run_id, "FAILED")
    except Exception as exc:  # the tracking store may be away too; the trial is what counts
        logger.warning("could not close MLflow run %s of trial %d: %s", run_id, trial.number, exc)


def fail_and_requeue(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str, max_retries: int | None
) -> None:
    """Mark a RUNNING trial of a dead worker FAIL, close its run and queue its retry."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # its worker finished it after all, or another process failed it
    close_run(study, trial, reason)
    studies.requeue(study, trial, max_retries=max_retries)


def _on_stale(max_retries: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        close_run(study, trial, "worker stopped sending heartbeats")
        studies.requeue(study, trial, max_retries=max_retries)

    return callback


# --------------------------------------------------------------------------- one worker


class Worker:
    """Claims queued trials of one study and runs them until the queue is done."""

    def __init__(
        self,
        study_name: str,
        storage_url: str,
        *,
        device: str = "cpu",
        tracking_uri: str | None = None,
        index: int | None = None,
    ) -> None:
        self.storage = studies.open_storage(storage_url)
        # A worker started by hand on another host has no slot number: its pid separates it.
        worker = index if index is not None else os.getpid()
        self.study, self.config = studies.load_study(study_name, self.storage, worker=worker)
        studies.set_stale_callback(self.storage, _on_stale(self.config.execution.max_retries))
        self.device = device
        self.label = _worker_label(socket.gethostname(), os.getpid())
        self.stopping = False
        uri = tracking_uri or self.study.user_attrs.get(URI_ATTR)
        if uri is None:
            raise studies.ConfigError("no tracking URI: pass --tracking-uri")
        spool = (
            studies.workspace(self.config) / "spool" / f"{socket.gethostname()}-{os.getpid()}.jsonl"
        )
        self.tracker = SweepTracker(
            uri,
            self.config,
            experiment_id=self.study.user_attrs.get(EXPERIMENT_ATTR),
            spool=spool,
        )
        self.parent_run_id = self.study.user_attrs.get(PARENT_ATTR)
        self.cache = CheckpointCache(cache_folder(self.config))
        progress_folder(self.config).mkdir(parents=True, exist_ok=True)

    def stop(self, *_: object) -> None:
        """First signal: finish the current step, then stop; second: stop at once."""
        if self.stopping:
            raise KeyboardInterrupt
        self.stopping = True

    def run(self, max_trials: int | None = None) -> int:
        """Run trials until none is queued or running elsewhere; returns how many ran here."""
        done = 0
        while not self.stopping and (max_trials is None or done < max_trials):
            optuna.storages.fail_stale_trials(self.study)
            claimed = studies.claim_trial(self.study)
            if claimed is None:
                running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if not running:
                    break
                # A running trial elsewhere may still fail and be re-queued as a retry.
                time.sleep(POLL_SECONDS)
                continue
            trial, queued = claimed
            with studies.Heartbeat(self.storage, queued._trial_id):
                self._run_one(trial, retry_of=queued.system_attrs.get("failed_trial"))
            done += 1
        flush_seconds = float(os.environ.get("ORCHESTRATE_TRACKING_FLUSH_SECONDS", "300"))
        if not self.tracker.outbox.flush(deadline=time.monotonic() + flush_seconds):
            logger.warning(
                "tracking store still unreachable; unsent calls are kept in %s",
                self.tracker.outbox.spool,
            )
        return done

    def _run_one(self, trial: optuna.Trial, retry_of: int | None) -> None:
        seed = int(trial.user_attrs["seed"])
        params = studies.suggest(trial, self.config)
        trial_config = self.config.with_params(params)
        tags: dict[str, Any] = {"device": self.device, "worker": self.label}
        if retry_of is not None:
            tags["retry_of_trial"] = retry_of
        run = self.tracker.start_trial(
            self.parent_run_id,
            trial_number=trial.number,
            seed=seed,
            trial_config=trial_config,
            tags=tags,
        )
        # Overwritten on a retry: the copy carries the failed trial's user attributes.
        trial.set_user_attr("mlflow_run_id", run.run_id)
        trial.set_user_attr("worker", self.label)
        trial.set_user_attr("device", self.device)
        progress_file = progress_folder(self.config) / f"{config_hash(trial_config)}-{seed}.pt"
        if progress_file.exists():
            run.set_tags({"resumed": "true"})
        started = time.monotonic()
        timeout = self.config.execution.trial_timeout

        def check() -> None:
            if timeout is not None and time.monotonic() - started > timeout:
                raise TrialTimeout(f"trial ran longer than execution.trial_timeout = {timeout} s")

        try:
            result = run_trial(
                trial_config,
                seed,
                device=self.device,
                cache=self.cache,
                on_step=self._reporter(trial, run),
                check=check,
                progress_file=progress_file,
            )
            values = [objective_value(result.steps, o) for o in self.config.search.objective]
            undefined = [
                o
                for o, v in zip(self.config.search.objective, values, strict=True)
                if math.isnan(v)
            ]
            if undefined:
                raise ValueError(
                    f"objective {undefined[0].metric} at {undefined[0].at} is undefined: the "
                    "curve never reached that point"
                )
            _log_result(run, result)
        except optuna.TrialPruned:
            run.set_tags({"state": "PRUNED"})
            run.end("KILLED")
            self.study.tell(trial, state=TrialState.PRUNED)
            progress_file.unlink(missing_ok=True)
            return
        except (TrialInterrupted, TrialTimeout, KeyboardInterrupt) as exc:
            interrupted = not isinstance(exc, TrialTimeout)
            reason = "interrupted" if interrupted else str(exc)
            self._fail(trial, run, reason, "KILLED" if interrupted else "FAILED")
            frozen = self.study.trials[trial.number]
            # An interruption is no fault of the trial: its retry does not count.
            limit = None if interrupted else self.config.execution.max_retries
            studies.requeue(self.study, frozen, max_retries=limit)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return
        except Exception as exc:  # any other failure ends this trial, never the sweep
            self._fail(trial, run, f"{type(exc).__name__}: {exc}", "FAILED")
            progress_file.unlink(missing_ok=True)
            return
        run.set_tags({"state": "COMPLETE", "dense_checkpoint": result.dense_checkpoint})
        run.end("FINISHED")
        self.study.tell(trial, values)
        progress_file.unlink(missing_ok=True)

    def _fail(self, trial: optuna.Trial, run: TrialRun, reason: str, status: str) -> None:
        trial.set_user_attr("fail_reason", reason[:1000])
        run.set_tags({"state": "FAIL", "fail_reason": reason[:5000]})
        run.end(status)
        self.study.tell(trial, state=TrialState.FAIL)

    def _reporter(self, trial: optuna.Trial, run: TrialRun) -> Callable[[Step], None]:
        objectives = self.config.search.objective
        prunable = len(objectives) == 1 and self.config.search.pruner != "none"

        def report(step: Step) -> None:
            run.log_step(step.step, step.metrics())
            trial.set_user_attr("step", step.step)
            if len(objectives) == 1:
                value = getattr(step, objectives[0].metric)
                if value is not None:
                    trial.report(float(value), step.step)
            if prunable and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step.step}")
            if self.stopping:
                raise TrialInterrupted(f"stopped after step {step.step}")

        return report


def _log_result(run: TrialRun, result: TrialResult) -> None:
    curve = [
        {"step": s.step, "phase": s.phase, "cycle": s.cycle, **s.metrics()} for s in result.steps
    ]
    tables: dict[str, list[dict[str, Any]]] = {"curve": curve, "layers": result.layers}
    if result.plan is not None:
        tables["alds_plan"] = result.plan.to_rows()
    run.log_tables(tables)
    run.log_figure(_curve_figure(result), "accuracy_vs_sparsity.png")
    run.log_torch({"state_dict": result.model.state_dict(), "masks": result.masks}, "final.pt")


def _curve_figure(result: TrialResult) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    remaining = [100 * s.remaining for s in result.steps]
    axis.plot(remaining, [100 * s.accuracy for s in result.steps], marker="o")
    axis.set_xscale("log")
    axis.invert_xaxis()
    axis.set_xlabel("weights remaining (%)")
    axis.set_ylabel("test accuracy (%)")
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    plt.close(figure)
    return figure


def run_worker(
    study_name: str,
    storage_url: str,
    *,
    device: str = "cpu",
    tracking_uri: str | None = None,
    threads: int | None = None,
    index: int | None = None,
) -> int:
    """The worker entry point (``orchestrate worker``); returns the number of trials run."""
    # MLflow's own HTTP retries would hold training for minutes in an outage; the outbox
    # retries briefly and keeps what it cannot send instead.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    if threads:
        import torch

        torch.set_num_threads(threads)
    worker = Worker(study_name, storage_url, device=device, tracking_uri=tracking_uri, index=index)
    signal.signal(signal.SIGINT, worker.stop)
    signal.signal(signal.SIGTERM, worker.stop)
    return worker.run()


# --------------------------------------------------------------------------- the parent


def worker_command(
    slot: Slot,
    study_name: str,
    storage_url: str,
    tracking_uri: str,
    threads: int,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of the worker for ``slot``.

    A GPU slot sees only its own GPU (``CUDA_VISIBLE_DEVICES``), which it then calls ``cuda:0``.
    """
    env = dict(os.environ)
    device = "cpu"
    if slot.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
        device = "cuda:0"
    env["OMP_NUM_THREADS"] = str(threads)
    command = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "worker",
        "--study",
        study_name,
        "--storage",
        storage_url,
        "--device",
        device,
        "--tracking-uri",
        tracking_uri,
        "--threads",
        str(threads),
        "--index",
        str(slot.index),
    ]
    return command, env


def spawn(
    slot: Slot,
    study_name: str,
    storage_url: str,
    tracking_uri: str,
    threads: int,
) -> subprocess.Popen:
    """Start the worker for ``slot`` in a session of its own, so a Ctrl-C in the terminal
    reaches only the parent, which then stops the workers in order."""
    command, env = worker_command(slot, study_name, storage_url, tracking_uri, threads)
    return subprocess.Popen(command, env=env, start_new_session=True)


class Supervisor:
    """Runs one worker process per slot, restarts dead ones, stops them on a signal."""

    MAX_RESTARTS = 3

    def __init__(
        self,
        slots: list[Slot],
        study: optuna.Study,
        config: SweepConfig,
        storage_url: str,
        tracking_uri: str,
    ) -> None:
        self.slots = slots
        self.study = study
        self.config = config
        self.storage_url = storage_url
        self.tracking_uri = tracking_uri
        cpu_slots = sum(1 for slot in slots if slot.gpu is None)
        fair_share = max(1, (os.cpu_count() or 1) // max(cpu_slots, 1))
        self.threads = int(os.environ.get("ORCHESTRATE_WORKER_THREADS") or fair_share)
        self.signals = 0
        self.restarts = 0
        self.processes: dict[Slot, subprocess.Popen] = {}

    def _start(self, slot: Slot) -> None:
        self.processes[slot] = spawn(
            slot, self.study.study_name, self.storage_url, self.tracking_uri, self.threads
        )

    def interrupt(self, *_: object) -> None:
        """First signal: workers finish their current step; second: they stop at once."""
        self.signals += 1
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if self.signals == 1 else signal.SIGKILL)

    def _reap(self, slot: Slot, process: subprocess.Popen) -> None:
        """A worker exited with an error: fail its trials now (no heartbeat wait)."""
        label = _worker_label(socket.gethostname(), process.pid)
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get("worker") == label:
                reason = f"worker {label} exited with code {process.returncode}"
                # A worker stopped by the user's second signal did nothing wrong.
                limit = None if self.signals else self.config.execution.max_retries
                fail_and_requeue(self.study, trial, reason, limit)
        queue_left = self.study.get_trials(
            deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)
        )
        if self.signals == 0 and queue_left and self.restarts < self.MAX_RESTARTS * len(self.slots):
            self.restarts += 1
            logger.warning(
                "worker on %s died (code %s); restarting it", slot.name, process.returncode
            )
            self._start(slot)

    def run(self, show: Callable[[dict[str, Any]], None] = lambda rows: None) -> int:
        """Supervise until every worker has exited; returns how many ended with an error."""
        for slot in self.slots:
            self._start(slot)
        failed = 0
        reaped: set[int] = set()
        try:
            while True:
                for slot, process in list(self.processes.items()):
                    code = process.poll()
                    if code is not None and code != 0 and process.pid not in reaped:
                        reaped.add(process.pid)
                        failed += 1
                        self._reap(slot, process)  # may start a new worker for the slot
                show(progress.rows(self.study))
                if all(p.poll() is not None for p in self.processes.values()):
                    break
                time.sleep(1.0)
        finally:
            for process in self.processes.values():
                if process.poll() is None:
                    process.kill()
                process.wait()
        show(progress.rows(self.study))
        return failed

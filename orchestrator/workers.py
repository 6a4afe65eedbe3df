"""Workers: the loop that claims and runs trials, the device pool, and the supervising parent.

One worker process per device slot: a GPU slot sees only its GPU (``CUDA_VISIBLE_DEVICES``),
CPU slots share the cores. Every worker runs :func:`run_worker`, locally under
``orchestrate sweep`` or on any host with ``orchestrate worker``; they coordinate only
through the study's storage.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from orchestrator import progress
from orchestrator import study as studies
from orchestrator.cache import CheckpointCache
from orchestrator.config import SweepConfig
from orchestrator.procedure import Step, TrialResult, objective_value, run_trial
from orchestrator.tracking import PARENT_ATTR, SweepTracker, TrialRun

POLL_SECONDS = 2.0

__all__ = ["Slot", "cache_folder", "device_slots", "run_worker", "spawn", "supervise"]


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
    return [
        Slot(gpu, index)
        for index, (gpu, _) in enumerate(
            (gpu, copy) for gpu in gpus for copy in range(workers_per_device)
        )
    ]


def cache_folder(config: SweepConfig) -> Path:
    """``execution.cache_dir``, else ``checkpoints/`` beside the sweep's workspace."""
    if config.execution.cache_dir:
        return Path(config.execution.cache_dir).expanduser()
    return studies.workspace(config).parent / "checkpoints"


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
        studies.set_max_retries(self.storage, self.config.execution.max_retries)
        self.device = device
        self.label = f"{socket.gethostname()}:{os.getpid()}"
        uri = tracking_uri or self.study.user_attrs.get("mlflow_tracking_uri")
        if uri is None:
            raise studies.ConfigError("no tracking URI: pass --tracking-uri")
        self.tracker = SweepTracker(uri, self.config)
        self.parent_run_id = self.study.user_attrs.get(PARENT_ATTR)
        self.cache = CheckpointCache(cache_folder(self.config))

    def run(self, max_trials: int | None = None) -> int:
        """Run trials until none is queued or running elsewhere; returns how many ran here."""
        done = 0
        while max_trials is None or done < max_trials:
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
        # Overwritten on a retry: the callback copies user attrs from the failed trial.
        trial.set_user_attr("mlflow_run_id", run.run_id)
        trial.set_user_attr("worker", self.label)
        trial.set_user_attr("device", self.device)
        report = self._reporter(trial, run)
        try:
            result = run_trial(
                trial_config, seed, device=self.device, cache=self.cache, on_step=report
            )
            values = [objective_value(result.steps, o) for o in self.config.search.objective]
            bad = [
                o
                for o, v in zip(self.config.search.objective, values, strict=True)
                if math.isnan(v)
            ]
            if bad:
                raise ValueError(
                    f"objective {bad[0].metric} at {bad[0].at} is undefined: the curve never "
                    "reached that point"
                )
            _log_result(run, result)
        except optuna.TrialPruned:
            run.set_tags({"state": "PRUNED"})
            run.end("KILLED")
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        except Exception as exc:  # any failure ends this trial, never the sweep
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason[:1000])
            run.set_tags({"state": "FAIL", "fail_reason": reason[:5000]})
            run.end("FAILED")
            self.study.tell(trial, state=TrialState.FAIL)
            return
        run.set_tags({"state": "COMPLETE", "dense_checkpoint": result.dense_checkpoint})
        run.end("FINISHED")
        self.study.tell(trial, values)

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
    if threads:
        import torch

        torch.set_num_threads(threads)
    worker = Worker(study_name, storage_url, device=device, tracking_uri=tracking_uri, index=index)
    return worker.run()


# --------------------------------------------------------------------------- the parent


def spawn(
    slot: Slot,
    study_name: str,
    storage_url: str,
    tracking_uri: str,
    threads: int,
) -> subprocess.Popen:
    """Start one worker process for ``slot``; a GPU slot sees only its own GPU."""
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
    return subprocess.Popen(command, env=env)


def supervise(
    slots: list[Slot],
    study: optuna.Study,
    storage_url: str,
    tracking_uri: str,
    *,
    show: Callable[[dict[str, Any]], None] = lambda rows: None,
) -> int:
    """Run one worker process per slot until all exit; returns the number that failed."""
    cpu_slots = sum(1 for slot in slots if slot.gpu is None)
    threads = max(1, (os.cpu_count() or 1) // max(cpu_slots, 1))
    processes = [
        spawn(slot, study.study_name, storage_url, tracking_uri, threads) for slot in slots
    ]
    try:
        while any(p.poll() is None for p in processes):
            show(progress.rows(study))
            time.sleep(1.0)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait()
    show(progress.rows(study))
    return sum(1 for p in processes if p.returncode != 0)

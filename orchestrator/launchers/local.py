"""The local launcher: one worker process per device slot, restarted when it dies, stopped
in order.

A GPU slot sees only its GPU (``CUDA_VISIBLE_DEVICES``), CPU slots share the cores. The
supervisor runs in the sweep's parent process; the workers it starts are ordinary
``orchestrate worker`` processes, like the ones started by hand on other hosts.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator import stored_names
from orchestrator.execution.exit_codes import INTERRUPTED
from orchestrator.launchers.base import Launcher, Outcome

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

    from orchestrator.config import SweepConfig
    from orchestrator.execution.sweep import Prepared

logger = logging.getLogger(__name__)
REFRESH_SECONDS = 1.0  # the live display's refresh, and how often dead workers are reaped
EXIT_POLL_SECONDS = 0.02  # how soon the supervisor notices a worker's exit

__all__ = ["LocalLauncher", "Slot", "Supervisor", "device_slots", "spawn", "worker_command"]


class LocalLauncher(Launcher):
    """Worker processes on this host, one per device slot (``execution.devices`` ×
    ``execution.workers_per_device``), followed until the queue is done."""

    name: ClassVar[str] = "local"

    def device_class(self) -> str:
        """``cuda`` when a slot has a GPU (``auto`` on a host with one), else ``cpu``."""
        execution = self.config.execution
        slots = device_slots(execution.devices, execution.workers_per_device)
        return "cuda" if any(slot.gpu is not None for slot in slots) else "cpu"

    def start(
        self, prepared: Prepared, console: Console, *, wait: bool, sweep_file: Path
    ) -> Outcome:
        """Supervise one worker per slot until the queue is done or a signal stops them."""
        from orchestrator.execution import sweep
        from orchestrator.study import counts

        execution = self.config.execution
        slots = device_slots(execution.devices, execution.workers_per_device)
        console.print(f"{len(slots)} worker(s): {', '.join(s.name for s in slots)}")
        supervisor = Supervisor(
            slots, prepared.study, self.config, prepared.storage_url, prepared.tracking_uri
        )
        failed, interrupted = sweep.follow(prepared, self.config, supervisor, console)
        study = prepared.study
        unfinished = None
        if failed and counts.finished(study, self.config) < counts.expected(study, self.config):
            unfinished = (
                f"{failed} worker process(es) exited with an error; the study is not finished"
            )
        return Outcome(interrupted=interrupted, unfinished=unfinished)


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
        # The sweep itself reports failed trials once, when every worker has finished.
        "--supervised",
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
    # After the second signal, workers that have not left (a call that does not return) are
    # killed; their trials and runs are then closed here.
    KILL_SECONDS = 10.0

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
        cpu_slots = sum(1 for slot in slots if slot.gpu is None)
        fair_share = max(1, (os.cpu_count() or 1) // max(cpu_slots, 1))
        self.threads = int(os.environ.get("ORCHESTRATE_WORKER_THREADS") or fair_share)
        self.storage_url = storage_url
        self.tracking_uri = tracking_uri
        self.signals = 0
        self.restarts = 0
        self.kill_at: float | None = None
        self.processes: dict[Slot, subprocess.Popen] = {}
        self.started: set[str] = set()  # the labels of every worker process started here

    def _start(self, slot: Slot) -> None:
        process = spawn(
            slot, self.study.study_name, self.storage_url, self.tracking_uri, self.threads
        )
        self.processes[slot] = process
        self.started.add(stored_names.worker_label(socket.gethostname(), process.pid))

    STOPPING = (
        "stopping: running trials stop at their next training iteration and are requeued "
        "(signal again to stop at once)"
    )

    def interrupt(self, *_: object) -> None:
        """First signal: workers abandon their step (or wait) and requeue their trial, as on a
        preemption; second: they stop at once, and are killed after :attr:`KILL_SECONDS`;
        third: killed now."""
        self.signals += 1
        if self.signals == 2:
            self.kill_at = time.monotonic() + self.KILL_SECONDS
        sent = {1: signal.SIGTERM, 2: signal.SIGINT}.get(self.signals, signal.SIGKILL)
        self._send(sent)

    def _send(self, sent: signal.Signals) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(sent)

    def _reap(self, slot: Slot, process: subprocess.Popen) -> None:
        """A worker exited with an error: fail its trials now (no heartbeat wait)."""
        from optuna.trial import TrialState

        from orchestrator import tracking
        from orchestrator.study import queue

        label = stored_names.worker_label(socket.gethostname(), process.pid)
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get(stored_names.TRIAL_WORKER) == label:
                reason = f"worker {label} exited with code {process.returncode}"
                # A worker stopped by the user's second signal did nothing wrong.
                limit = None if self.signals else self.config.execution.max_retries
                queue.fail_and_requeue(
                    self.study,
                    trial,
                    reason,
                    max_retries=limit,
                    on_failed=tracking.close_trial_run,
                )
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
        from orchestrator.execution import progress

        for slot in self.slots:
            self._start(slot)
        failed = 0
        reaped: set[int] = set()
        try:
            while True:
                for slot, process in list(self.processes.items()):
                    code = process.poll()
                    # A worker that the supervisor's own signal stopped exits 130, cleanly.
                    stopped = code == INTERRUPTED and self.signals > 0
                    if code not in (None, 0) and not stopped and process.pid not in reaped:
                        reaped.add(process.pid)
                        failed += 1
                        self._reap(slot, process)  # may start a new worker for the slot
                show(progress.rows(self.study, self.config))
                if all(p.poll() is not None for p in self.processes.values()):
                    break
                if self.kill_at is not None and time.monotonic() >= self.kill_at:
                    self._send(signal.SIGKILL)
                self._wait_for_an_exit(REFRESH_SECONDS)
        finally:
            for process in self.processes.values():
                if process.poll() is None:
                    process.kill()
                process.wait()
        if self.signals:
            self._requeue_stopped()
        show(progress.rows(self.study, self.config))
        return failed

    def _wait_for_an_exit(self, seconds: float) -> None:
        """Wait up to ``seconds`` (the display's refresh), waking within a few hundredths of
        a second of a worker's exit: the last worker's exit ends the sweep at once (a sweep
        with little to run costs its work, not whole seconds of polling)."""
        alive = [p for p in self.processes.values() if p.returncode is None]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in alive):
                return
            time.sleep(EXIT_POLL_SECONDS)

    def _requeue_stopped(self) -> None:
        """Fail and requeue, without counting a retry, the trials that workers stopped by a
        signal left RUNNING: a second signal can end a worker between queueing its trial
        again and failing it, or before either (a retry already queued is not queued twice).
        Their MLflow runs are ended after, with every run these workers left RUNNING
        (``sweep.follow``: :func:`tracking.close_left_running`)."""
        from optuna.trial import TrialState

        from orchestrator.study import queue

        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get(stored_names.TRIAL_WORKER) in self.started:
                queue.fail_and_requeue(self.study, trial, "interrupted", max_retries=None)

"""The worker: a loop that claims queued trials of one study and runs them.

Every worker runs :func:`run_worker`, started by a launcher (:mod:`orchestrator.launchers`:
one per device slot under ``orchestrate sweep``, a Slurm array task) or by hand on any host
with ``orchestrate worker``; workers coordinate only through the study's storage. The launcher
it runs under hands it a :class:`Host` (its task, its signals, how to requeue the task), so
this module knows no launcher; one trial's run is :mod:`orchestrator.execution.lifecycle`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from orchestrator import stopping, stored_names, tracking, workspace
from orchestrator.config import ConfigError
from orchestrator.execution import lifecycle, sweep
from orchestrator.execution.lifecycle import WorkerContext, run_claimed
from orchestrator.study import queue, study as studies
from orchestrator.tracking.runs import SweepTracker
from orchestrator.trial import identity
from orchestrator.trial.cache import CheckpointCache

RESUBMIT_FLUSH_SECONDS = 30.0  # MLflow sending before a task requeues itself
logger = logging.getLogger(__name__)

__all__ = ["Host", "Worker", "run_worker"]


@dataclass(frozen=True)
class Host:
    """What the launcher a worker runs under tells it (``Launcher.host()``); ``Host()`` is no
    launcher at all: no task, no signal besides SIGINT and SIGTERM.

    Attributes:
        task: the launcher's task the worker runs in (a Slurm array task), if any.
        preemption_signals: signals after which the worker abandons its step and requeues
            its trial, however often they come.
        requeue_signals: of those, the signals after which the task asks to be started again.
        requeue_task: starts the task again later (called as the worker exits).
    """

    task: str | None = None
    preemption_signals: tuple[int, ...] = ()
    requeue_signals: tuple[int, ...] = ()
    requeue_task: Callable[[str], None] | None = None


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
        host: Host,
    ) -> None:
        storage = studies.open_storage(storage_url)
        # A worker started by hand on another host has no slot number: its pid separates it.
        worker = index if index is not None else os.getpid()
        self.study, self.config = studies.load_study(study_name, storage, worker=worker)
        self.host = host
        self.resubmit = False  # requeue this task when it stops
        self.done = 0  # trials run here
        self.copied = 0  # of them, results copied from an earlier trial with their key
        uri = tracking_uri or self.study.user_attrs.get(stored_names.STUDY_TRACKING_URI)
        if uri is None:
            raise ConfigError("no tracking URI: pass --tracking-uri")
        self.tracker = SweepTracker(
            uri,
            self.config,
            experiment_id=self.study.user_attrs.get(stored_names.STUDY_EXPERIMENT_ID),
            spool=workspace.spool_file(self.config, socket.gethostname(), os.getpid()),
        )
        self.context = WorkerContext(
            study=self.study,
            storage=storage,
            storage_url=storage_url,
            config=self.config,
            device=device,
            label=stored_names.worker_label(socket.gethostname(), os.getpid()),
            task=self.host.task,
            tracker=self.tracker,
            parent_run_id=self.study.user_attrs.get(stored_names.STUDY_PARENT_RUN_ID),
            cache=CheckpointCache(workspace.cache_folder(self.config)),
        )
        workspace.progress_folder(self.config).mkdir(parents=True, exist_ok=True)

    def on_signal(self, signum: int, _frame: object = None) -> None:
        """SIGINT, SIGTERM and the launcher's preemption signals: abandon the current step at
        the next training iteration, or leave the wait the worker is in (a file lock, a storage
        outage, the tracking outbox, another worker's result); requeue the trial without
        counting a retry (it resumes from its last completed cycle) and stop. After one of the
        launcher's requeue signals (Slurm's USR1, the warning before the time limit) the task
        asks to be started again itself. A second SIGINT or SIGTERM that is not a preemption
        signal of the launcher stops at once (the trial is still requeued on the way out)."""
        again = stopping.requested()
        stopping.request(signal.Signals(signum).name)
        self.resubmit = self.resubmit or signum in self.host.requeue_signals
        if again and signum not in self.host.preemption_signals:
            raise KeyboardInterrupt

    @property
    def stopping(self) -> bool:
        """Whether a signal asked this worker to stop: the process's stop request, which every
        wait honours too (:mod:`orchestrator.stopping`)."""
        return stopping.requested()

    def look(self) -> int:
        """A sequential sweep's look (``report.looks``): decide what the finished trials
        decide and enqueue the seeds the open configurations need next, under the storage's
        creation lock, so that two workers finishing a round at once enqueue it once. Any
        worker may look at any time: the decisions are a function of the finished trials.

        Returns:
            The trials enqueued (0 for a sweep of fixed seeds).
        """
        if self.config.sequential is None:
            return 0
        device = identity.device_class(self.context.device)

        def look() -> int:
            with studies.creation_lock(self.context.storage_url):
                trials = self.study.get_trials(deepcopy=False)
                decided = sweep.decisions_of(self.study)
                found = sweep.assess(
                    self.config, self.context.storage, trials, lambda: device, decided=decided
                )
                sweep.keep_decisions(self.study, found)
                return queue.fill_queue(self.study, self.config, found)

        # Safe to run again after an outage: what one attempt enqueued, the next finds queued.
        return self.context.storage.ride_out(look)

    def _look_found_work(self) -> bool:
        """Whether a sequential sweep's look, this worker's or one another worker made while
        this one waited for the lock, queued more trials."""
        waiting = (TrialState.WAITING,)
        return bool(self.look() or self.study.get_trials(deepcopy=False, states=waiting))

    def run(self, max_trials: int | None = None) -> int:
        """Run trials until none is queued or running elsewhere; returns how many ran here."""
        done = self.done = self.copied = 0
        try:
            while not self.stopping and (max_trials is None or done < max_trials):
                queue.fail_stale(
                    self.study,
                    max_retries=self.config.execution.max_retries,
                    on_failed=tracking.close_trial_run,
                )
                claimed = queue.claim_trial(self.study)
                if claimed is None:
                    running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    if not running:
                        if self.config.sequential is not None and self._look_found_work():
                            continue
                        break
                    # A running trial elsewhere may still fail and be re-queued as a retry.
                    stopping.sleep(lifecycle.POLL_SECONDS)
                    continue
                trial, queued = claimed
                retry_of = queued.system_attrs.get(stored_names.TRIAL_FAILED_TRIAL)
                with queue.Heartbeat(self.context.storage, trial):
                    self.copied += run_claimed(self.context, trial, retry_of)
                done = self.done = done + 1
                self.look()
        finally:
            flush_seconds = float(os.environ.get("ORCHESTRATE_TRACKING_FLUSH_SECONDS", "300"))
            if self.resubmit:  # the time limit is near: what is not sent stays in the spool
                flush_seconds = min(flush_seconds, RESUBMIT_FLUSH_SECONDS)
            # A stop ends the wait at once, but for Slurm's warning before the time limit: the
            # task has signal_seconds left, and the part of them given to MLflow is bounded.
            sent = self.tracker.outbox.flush(
                deadline=time.monotonic() + flush_seconds, stoppable=not self.resubmit
            )
            if not sent:
                logger.warning(
                    "tracking store still unreachable; unsent calls are kept in %s",
                    self.tracker.outbox.spool,
                )
        return done


def run_worker(
    study_name: str,
    storage_url: str,
    *,
    device: str = "cpu",
    tracking_uri: str | None = None,
    threads: int | None = None,
    index: int | None = None,
    retry_failed: bool = False,
    host: Host,
) -> Worker:
    """The worker entry point (``orchestrate worker``); ``retry_failed`` first queues again
    what failed for good (``queue.retry``; once, however many workers ask).

    Returns:
        The worker, done: its ``done`` trials, its ``study``, whether a signal stopped it.
    """
    tracking.fail_fast_http()
    if threads:
        import torch

        torch.set_num_threads(threads)
    worker = Worker(
        study_name, storage_url, device=device, tracking_uri=tracking_uri, index=index, host=host
    )
    if retry_failed:
        # Under the lock, a second worker asking finds the failures already retried.
        with studies.creation_lock(storage_url):
            queue.retry(worker.study, worker.config)
    stopping.clear()
    for handled in {signal.SIGINT, signal.SIGTERM, *worker.host.preemption_signals}:
        signal.signal(handled, worker.on_signal)
    worker.run()
    host = worker.host
    if worker.resubmit and host.task and host.requeue_task and _work_left(worker.study):
        # The time limit is near: this task goes back to its launcher's queue and resumes the
        # trial (or another worker does).
        host.requeue_task(host.task)
    return worker


def _work_left(study: optuna.Study) -> bool:
    states = (TrialState.WAITING, TrialState.RUNNING)
    return bool(study.get_trials(deepcopy=False, states=states))

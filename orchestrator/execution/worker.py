"""The worker: a loop that claims queued trials of one study and runs them.

Every worker runs :func:`run_worker`, started by a launcher (:mod:`orchestrator.launchers`:
one per device slot under ``orchestrate sweep``, a Slurm array task) or by hand on any host
with ``orchestrate worker``; workers coordinate only through the study's storage.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator import curve, launchers, plan, stopping, stored_names, tracking, workspace
from orchestrator import data as datasets
from orchestrator.config import ConfigError, SweepConfig
from orchestrator.curve import objective_value
from orchestrator.study import queue, reuse
from orchestrator.study import study as studies
from orchestrator.study.retrying_storage import RetryingStorage, StorageUnavailable
from orchestrator.tracking.runs import SweepTracker, TrialRun
from orchestrator.trial import identity, twins
from orchestrator.trial.cache import CheckpointCache
from orchestrator.trial.identity import config_hash
from orchestrator.trial.procedure import Step, TrialResult, run_trial

POLL_SECONDS = 2.0
RESUBMIT_FLUSH_SECONDS = 30.0  # MLflow sending before a task requeues itself
logger = logging.getLogger(__name__)

__all__ = ["TrialInterrupted", "TrialTimeout", "Worker", "run_worker"]


class TrialInterrupted(stopping.Interrupted):
    """The worker was asked to stop; the trial is abandoned where it is and requeued."""


class TrialTimeout(Exception):
    """The trial ran longer than ``execution.trial_timeout``."""


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
        self.storage_url = storage_url
        # A worker started by hand on another host has no slot number: its pid separates it.
        worker = index if index is not None else os.getpid()
        self.study, self.config = studies.load_study(study_name, self.storage, worker=worker)
        self.device = device
        self.label = stored_names.worker_label(socket.gethostname(), os.getpid())
        self.launcher = launchers.hosting()
        self.task = self.launcher.current_task()
        self.resubmit = False  # requeue this Slurm task when it stops
        self.done = 0  # trials run here
        uri = tracking_uri or self.study.user_attrs.get(stored_names.STUDY_TRACKING_URI)
        if uri is None:
            raise ConfigError("no tracking URI: pass --tracking-uri")
        self.tracker = SweepTracker(
            uri,
            self.config,
            experiment_id=self.study.user_attrs.get(stored_names.STUDY_EXPERIMENT_ID),
            spool=workspace.spool_file(self.config, socket.gethostname(), os.getpid()),
        )
        self.parent_run_id = self.study.user_attrs.get(stored_names.STUDY_PARENT_RUN_ID)
        self.cache = CheckpointCache(workspace.cache_folder(self.config))
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
        self.resubmit = self.resubmit or signum in self.launcher.requeue_signals
        if again and signum not in self.launcher.preemption_signals:
            raise KeyboardInterrupt

    @property
    def stopping(self) -> bool:
        """Whether a signal asked this worker to stop: the process's stop request, which every
        wait honours too (:mod:`orchestrator.stopping`)."""
        return stopping.requested()

    def run(self, max_trials: int | None = None) -> int:
        """Run trials until none is queued or running elsewhere; returns how many ran here."""
        done = self.done = 0
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
                        break
                    # A running trial elsewhere may still fail and be re-queued as a retry.
                    stopping.sleep(POLL_SECONDS)
                    continue
                trial, queued = claimed
                retry_of = queued.system_attrs.get(stored_names.TRIAL_FAILED_TRIAL)
                with queue.Heartbeat(self.storage, trial):
                    self._run_one(trial, retry_of=retry_of)
                done = self.done = done + 1
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

    def _run_one(self, trial: optuna.Trial, retry_of: int | None) -> None:
        seed = int(trial.user_attrs[stored_names.TRIAL_SEED])
        params = queue.suggest(
            trial, self.config, lock=lambda: studies.creation_lock(self.storage_url)
        )
        control = plan.control_of(params)
        trial_config = self.config.with_params(plan.without_control(params))
        tags: dict[str, Any] = {
            stored_names.TAG_DEVICE: self.device,
            stored_names.TAG_WORKER: self.label,
        }
        if retry_of is not None:
            tags[stored_names.TAG_RETRY_OF] = retry_of
        run = self.tracker.start_trial(
            self.parent_run_id,
            trial_number=trial.number,
            seed=seed,
            trial_config=trial_config,
            params=params,
            tags=tags,
        )
        # Overwritten on a retry: the copy carries the failed trial's user attributes.
        trial.set_user_attr(stored_names.TRIAL_RUN_ID, run.run_id)
        trial.set_user_attr(stored_names.TRIAL_ARM, plan.arm(trial_config.alds.rate, control))
        url = self.tracker.run_url(run.run_id)
        if url:
            trial.set_user_attr(stored_names.TRIAL_RUN_URL, url)
        trial.set_user_attr(stored_names.TRIAL_WORKER, self.label)
        trial.set_user_attr(stored_names.TRIAL_DEVICE, self.device)
        if self.task:
            trial.set_user_attr(stored_names.TRIAL_TASK, self.task)
        self._link_twins(trial, run)
        progress_file = workspace.progress_file(
            self.config, config_hash(trial_config) + (f"-{control}" if control else ""), seed
        )
        if progress_file.exists():
            run.set_tags({stored_names.TAG_RESUMED: "true"})
        started = time.monotonic()
        timeout = self.config.execution.trial_timeout

        def check() -> None:
            if self.stopping:
                raise TrialInterrupted("stopped during a step")
            if timeout is not None and time.monotonic() - started > timeout:
                raise TrialTimeout(f"trial ran longer than execution.trial_timeout = {timeout} s")

        reporter = self._reporter(trial, run, trial_config.alds.rate)
        try:
            data = datasets.load(trial_config.dataset, device=self.device, seed=seed)
            run.log_dataset(
                trial_config.dataset.name,
                data.digest,
                datasets.source_of(trial_config.dataset),
                data.profile(),
            )
            found = self._claim_key(trial, run, params, seed, data.digest, check)
            if found is not None:
                self._reuse(trial, run, reporter, *found)
                return
            masks = self._masks_folder(trial_config, params, seed, data.digest, check)
            result = run_trial(
                trial_config,
                seed,
                device=self.device,
                cache=self.cache,
                on_step=reporter,
                check=check,
                progress_file=None if control else progress_file,
                control=control,
                masks_folder=masks,
            )
            rows = [step.row() for step in result.steps]
            values = _objective_values(self.config, rows)
            _log_result(run, result, rows)
            reporter.flush()
            _keep_curve(trial, rows)
        except StorageUnavailable:
            # The study cannot be told: the trial stays RUNNING without heartbeats, and the
            # first worker to reach the storage again fails and retries it (queue.fail_stale).
            run.set_tags(
                {stored_names.TAG_STATE: "FAIL", stored_names.TAG_FAIL_REASON: "study storage lost"}
            )
            run.end("KILLED")
            raise
        except optuna.TrialPruned:
            reporter.flush()
            _keep_curve(trial, reporter.curve)
            run.set_tags({stored_names.TAG_STATE: "PRUNED"})
            run.end("KILLED")
            if self._tell(trial, state=TrialState.PRUNED):
                progress_file.unlink(missing_ok=True)
            return
        except (stopping.Interrupted, TrialTimeout, KeyboardInterrupt) as exc:
            self._requeue(trial, run, exc, reporter.curve)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return
        except Exception as exc:  # any other failure ends this trial, never the sweep
            self._fail(trial, run, f"{type(exc).__name__}: {exc}", "FAILED", reporter.curve)
            progress_file.unlink(missing_ok=True)
            return
        run.set_tags(
            {
                stored_names.TAG_STATE: "COMPLETE",
                stored_names.TAG_DENSE_CHECKPOINT: result.dense_checkpoint,
            }
        )
        run.end("FINISHED")
        # Its twins may have started after it, and a baseline that completes is the one to
        # pair with; linked while the trial still runs, so it can take the attribute.
        self._link_twins(trial, run)
        if self._tell(trial, values=values):
            progress_file.unlink(missing_ok=True)

    def _claim_key(
        self,
        trial: optuna.Trial,
        run: TrialRun,
        params: dict[str, Any],
        seed: int,
        digest: str,
        check: Callable[[], None],
    ) -> tuple[str, FrozenTrial] | None:
        """Key the trial (:mod:`identity`) and find whether its result exists.

        Under the storage's creation lock: a COMPLETE trial of any study with an acceptable
        key is returned, to be reused; else, unless a trial with the key is running, this one
        takes the key and trains (None). While one runs, this waits for it: two sweeps or
        workers that need one result train it once.
        """
        device = identity.device_class(self.device)
        own = identity.trial_key(self.config, params, seed, device=device, data=digest)
        provenance = {
            stored_names.TRIAL_DATA_DIGEST: digest,
            stored_names.TRIAL_DEVICE_CLASS: device,
            stored_names.TRIAL_RESULTS_VERSION: identity.RESULTS_VERSION,
            stored_names.TRIAL_PACKAGE_VERSION: identity.package_version(),
        }
        for name, value in provenance.items():
            trial.set_user_attr(name, value)
        run.set_tags(
            {
                stored_names.TAG_TRIAL_KEY: own,
                stored_names.TAG_RESULTS_VERSION: identity.RESULTS_VERSION,
                stored_names.TAG_PACKAGE_VERSION: identity.package_version(),
            }
        )
        wanted = []
        if self.config.execution.reuse != "off":
            wanted = identity.acceptable_keys(self.config, params, seed, device=device, data=digest)
        here = (self.study.study_name, trial.number)

        def look_or_take() -> reuse.Found:
            # The lock's connection is the database's too: an outage is ridden out here
            # as in any storage call, and the look runs again.
            with studies.creation_lock(self.storage_url):
                found = reuse.find(self.storage, wanted, exclude=here)
                if found.complete is None and not found.running:
                    trial.set_user_attr(stored_names.TRIAL_KEY, own)
                return found

        while True:
            found = self.storage.ride_out(look_or_take)
            if found.complete is not None:
                return found.complete
            if not found.running:
                return None
            # Another trial computes this result now: wait for it, and fail it if its worker
            # is gone (its own sweep's workers may all be gone too).
            for name in {study for study, _ in found.running}:
                other = optuna.load_study(study_name=name, storage=self.storage)
                queue.fail_stale(
                    other,
                    max_retries=self.config.execution.max_retries,
                    on_failed=tracking.close_trial_run,
                )
            check()
            if not stopping.sleep(POLL_SECONDS):
                raise TrialInterrupted("stopped while waiting for the same result elsewhere")

    def _masks_folder(
        self,
        trial_config: SweepConfig,
        params: dict[str, Any],
        seed: int,
        digest: str,
        check: Callable[[], None],
    ) -> Path | None:
        """Where an IMP-only trial of a sweep with controls keeps its masks, and where a
        control finds its twin's: the twin's result key names the folder. A control whose twin
        runs now waits for it to finish (it would otherwise compute the same masks again)."""
        if plan.is_alds(trial_config.alds.rate) or not self.config.imp.controls:
            return None
        device = identity.device_class(self.device)
        twin = plan.without_control(params)
        key = identity.trial_key(self.config, twin, seed, device=device, data=digest)
        if plan.control_of(params) is not None:
            while self.storage.ride_out(lambda: reuse.find(self.storage, [key]).running):
                check()
                if not stopping.sleep(POLL_SECONDS):
                    raise TrialInterrupted("stopped while waiting for the twin's masks")
        return workspace.masks_folder(self.config, key)

    def _reuse(
        self,
        trial: optuna.Trial,
        run: TrialRun,
        reporter: _StepReporter,
        study_name: str,
        original: FrozenTrial,
    ) -> None:
        """Finish ``trial`` with the result of ``original`` (of study ``study_name``): its
        curve into this trial's run and study (the values and intermediate values of this
        sweep's objectives), its key, provenance and the run it came from."""
        rows = curve.curve_of(original) or []
        reporter.prunable = False  # a finished result is not stopped halfway
        for row in rows:
            reporter.record(row)
        values = _objective_values(self.config, rows)
        run.log_tables({stored_names.ARTIFACT_CURVE: rows})
        reporter.flush()
        source_run = original.user_attrs.get(stored_names.TRIAL_RUN_ID, "")
        held = original.user_attrs
        copied = {name: held[name] for name in stored_names.TRIAL_RESULT_ATTRS if name in held}
        for name, value in {
            **copied,
            stored_names.TRIAL_REUSED_FROM: source_run,
            stored_names.TRIAL_REUSED_TRIAL: f"{study_name}#{original.number}",
        }.items():
            trial.set_user_attr(name, value)
        queue.set_system_attr(
            trial, stored_names.TRIAL_CURVE, original.system_attrs[stored_names.TRIAL_CURVE]
        )
        run.set_tags(
            {
                stored_names.TAG_STATE: "COMPLETE",
                stored_names.TAG_REUSED_FROM: source_run,
                stored_names.TAG_TRIAL_KEY: copied.get(stored_names.TRIAL_KEY, ""),
                stored_names.TAG_RESULTS_VERSION: copied.get(
                    stored_names.TRIAL_RESULTS_VERSION, ""
                ),
                stored_names.TAG_PACKAGE_VERSION: copied.get(
                    stored_names.TRIAL_PACKAGE_VERSION, ""
                ),
            }
        )
        run.end("FINISHED")
        self._link_twins(trial, run)
        self._tell(trial, values=values)

    def _tell(self, trial: optuna.Trial, **result: Any) -> bool:
        """Tell the study how ``trial`` ended; False when another worker had already failed it
        (it thought this worker dead) and queued its retry, which then resumes from the
        trial's progress file."""
        told = self.study.tell(trial, skip_if_finished=True, **result)
        return told.state == result.get("state", TrialState.COMPLETE)

    def _link_twins(self, trial: optuna.Trial, run: TrialRun) -> None:
        """Pair the trial's run with its IMP-only twin's (both ways, see :mod:`twins`); an
        ALDS trial also names its twin's run for optuna-dashboard."""
        pairs = twins.link(self.study, self.config, trial.number, run.link_twin)
        if run.run_id in pairs:
            trial.set_user_attr(stored_names.TRIAL_TWIN_RUN_ID, pairs[run.run_id])

    def _requeue(
        self,
        trial: optuna.Trial,
        run: TrialRun,
        cause: BaseException,
        rows: Sequence[curve.Row],
    ) -> None:
        """Queue ``trial`` again and fail it, after a stop (``cause`` a signal's) or a timeout.

        An interruption is no fault of the trial: its retry does not count, its MLflow run
        ends KILLED, and its storage calls are tried once (the worker is leaving; in an outage
        the trial stays RUNNING until a worker that reaches the storage fails and retries it,
        :func:`queue.fail_stale`)."""
        interrupted = not isinstance(cause, TrialTimeout)
        reason = "interrupted" if interrupted else str(cause)
        status = "KILLED" if interrupted else "FAILED"
        try:
            with self.storage.patience(0) if interrupted else contextlib.nullcontext():
                trial.set_user_attr(stored_names.TRIAL_FAIL_REASON, reason[:1000])
                frozen = self.study.trials[trial.number]
                if frozen.state == TrialState.RUNNING:  # else another worker failed it
                    # Requeued before it is failed: a worker that finds nothing queued or
                    # running in between would stop for good.
                    limit = None if interrupted else self.config.execution.max_retries
                    queue.requeue(self.study, frozen, max_retries=limit)
                self._fail(trial, run, reason, status, rows)
        except StorageUnavailable:
            lost = f"{reason}; study storage unreachable, the trial is retried when it is back"
            run.set_tags({stored_names.TAG_STATE: "FAIL", stored_names.TAG_FAIL_REASON: lost})
            run.end(status)

    def _fail(
        self,
        trial: optuna.Trial,
        run: TrialRun,
        reason: str,
        status: str,
        rows: Sequence[curve.Row] = (),
    ) -> None:
        trial.set_user_attr(stored_names.TRIAL_FAIL_REASON, reason[:1000])
        _keep_curve(trial, rows)
        run.set_tags({stored_names.TAG_STATE: "FAIL", stored_names.TAG_FAIL_REASON: reason[:5000]})
        run.end(status)
        self._tell(trial, state=TrialState.FAIL)

    def _reporter(self, trial: optuna.Trial, run: TrialRun, rate: float) -> _StepReporter:
        objectives = self.config.search.objective
        return _StepReporter(
            trial,
            run,
            self.storage,
            metric=objectives[0].metric if len(objectives) == 1 else None,
            prunable=plan.prunable(self.config, rate),
        )


class _StepReporter:
    """Hands each step of a trial to MLflow (through the outbox) and to the study.

    The study hears the objective's metric at the sparsities of :data:`curve.PRUNING_GRID`
    that the curve has reached (the grid index is Optuna's step), so the pruner compares
    trials at equal sparsity, whatever their prune fraction. It hears it without waiting:
    while its storage is unreachable the values are kept and training goes on; they are sent
    with the next step that gets through, or by :meth:`flush` before the trial is told its
    result. The pruner is asked only when the storage answers (it compares with other trials
    there).
    """

    def __init__(
        self,
        trial: optuna.Trial,
        run: TrialRun,
        storage: RetryingStorage,
        *,
        metric: str | None,
        prunable: bool,
    ) -> None:
        self.trial = trial
        self.run = run
        self.storage = storage
        self.metric = metric
        self.prunable = prunable
        self.curve: list[curve.Row] = []
        self.pending: list[tuple[int, float]] = []  # (grid index, value) not yet reported
        self.next_level = 0
        self.last_step: int | None = None  # the step the study has not heard of yet

    def __call__(self, step: Step) -> None:
        self.record(step.row())

    def record(self, row: curve.Row) -> None:
        """Log one step of the curve (a row, ``Step.row()``) and report it to the study."""
        step = int(row["step"])
        self.run.log_step(step, curve.measures(row))
        self.curve.append(row)
        self.last_step = step
        if self.metric is not None:
            found = curve.intermediate_values(self.curve, self.metric, start=self.next_level)
            if found:
                self.pending += found
                self.next_level = found[-1][0] + 1
        try:
            with self.storage.patience(0):
                self._send()
                prune = self.prunable and self.trial.should_prune()
        except StorageUnavailable:
            logger.warning(
                "study storage unreachable: trial %d goes on, its step %d is reported when "
                "the storage is back",
                self.trial.number,
                step,
            )
            prune = False
        if prune:
            raise optuna.TrialPruned(f"pruned at step {step}")
        if stopping.requested():
            raise TrialInterrupted(f"stopped after step {step}")

    def flush(self) -> None:
        """Send what is still pending, waiting through an outage up to the storage's limit."""
        self._send()

    def _send(self) -> None:
        while self.pending:
            level, value = self.pending[0]
            self.trial.report(value, level)
            self.pending.pop(0)
        if self.last_step is not None:
            self.trial.set_user_attr(stored_names.TRIAL_STEP, self.last_step)
            self.last_step = None


def _keep_curve(trial: optuna.Trial, rows: Sequence[curve.Row]) -> None:
    """Keep the steps a trial measured with it as it ends, in one record (its whole curve
    when it completes, the part it ran when pruned or failed): the report reads every ended
    trial's curve from the study in one pass, and a complete one is a result to reuse."""
    if rows:
        queue.set_system_attr(trial, stored_names.TRIAL_CURVE, curve.encode_curve(rows))


def _objective_values(config: SweepConfig, rows: list[dict[str, Any]]) -> list[float]:
    """The sweep's objectives on a finished curve; an undefined one fails the trial."""
    values = [objective_value(rows, o) for o in config.search.objective]
    for objective, value in zip(config.search.objective, values, strict=True):
        if math.isnan(value):
            raise ValueError(
                f"objective {objective.metric} at {objective.at} is undefined: the curve "
                "never reached that point"
            )
    return values


def _log_result(run: TrialRun, result: TrialResult, rows: list[dict[str, Any]]) -> None:
    from orchestrator.report.figures import trial_figure

    tables: dict[str, list[dict[str, Any]]] = {
        stored_names.ARTIFACT_CURVE: rows,
        stored_names.ARTIFACT_LAYERS: result.layers,
    }
    if result.plan is not None:
        tables[stored_names.ARTIFACT_ALDS_PLAN] = result.plan.to_rows()
    run.log_tables(tables)
    figure = trial_figure([s.remaining for s in result.steps], [s.accuracy for s in result.steps])
    run.log_figure(figure, stored_names.ARTIFACT_TRIAL_FIGURE)
    weights = {"state_dict": result.model.state_dict(), "masks": result.masks}
    run.log_torch(weights, stored_names.ARTIFACT_FINAL_WEIGHTS)


def run_worker(
    study_name: str,
    storage_url: str,
    *,
    device: str = "cpu",
    tracking_uri: str | None = None,
    threads: int | None = None,
    index: int | None = None,
    retry_failed: bool = False,
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
    worker = Worker(study_name, storage_url, device=device, tracking_uri=tracking_uri, index=index)
    if retry_failed:
        # Under the lock, a second worker asking finds the failures already retried.
        with studies.creation_lock(storage_url):
            queue.retry(worker.study, worker.config)
    stopping.clear()
    for handled in {signal.SIGINT, signal.SIGTERM, *worker.launcher.preemption_signals}:
        signal.signal(handled, worker.on_signal)
    worker.run()
    if worker.resubmit and worker.task and _work_left(worker.study):
        # The time limit is near: this task goes back to its launcher's queue and resumes the
        # trial (or another worker does).
        worker.launcher.requeue_task(worker.task)
    return worker


def _work_left(study: optuna.Study) -> bool:
    states = (TrialState.WAITING, TrialState.RUNNING)
    return bool(study.get_trials(deepcopy=False, states=states))

"""One claimed trial, from start to end: its MLflow run and attributes, its key, a result
reused or trained, and how it ends (complete, pruned, requeued after a stop or a timeout, or
failed). The worker's loop (:mod:`orchestrator.execution.worker`) claims a trial and hands it
here with what the worker holds (:class:`WorkerContext`).

The trial is read once, as a :class:`~orchestrator.trial.spec.TrialSpec` made from its
parameters and seed when it is claimed; everything after reads the spec.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator import curve, data as datasets, stopping, stored_names, tracking, workspace
from orchestrator.config import SweepConfig
from orchestrator.curve import objective_value
from orchestrator.data import digests
from orchestrator.study import queue, reuse, study as studies
from orchestrator.study.retrying_storage import RetryingStorage, StorageUnavailable
from orchestrator.tracking.runs import SweepTracker, TrialRun
from orchestrator.trial import identity, network, twins
from orchestrator.trial.cache import CheckpointCache
from orchestrator.trial.procedure import Step, TrialResult, run_trial
from orchestrator.trial.spec import TrialSpec

POLL_SECONDS = 2.0
logger = logging.getLogger(__name__)

__all__ = ["POLL_SECONDS", "TrialInterrupted", "TrialTimeout", "WorkerContext", "run_claimed"]


class TrialInterrupted(stopping.Interrupted):
    """The worker was asked to stop; the trial is abandoned where it is and requeued."""


class TrialTimeout(Exception):
    """The trial ran longer than ``execution.trial_timeout``."""


@dataclass(frozen=True)
class WorkerContext:
    """What a worker holds that every trial it runs uses."""

    study: optuna.Study
    storage: RetryingStorage
    storage_url: str
    config: SweepConfig  # the sweep's
    device: str
    label: str  # stored_names.worker_label of the worker
    task: str | None  # the launcher's task the worker runs in
    tracker: SweepTracker
    parent_run_id: str | None
    cache: CheckpointCache


def run_claimed(context: WorkerContext, trial: optuna.Trial, retry_of: int | None) -> bool:
    """Run a trial the worker claimed to its end, and tell the study how it ended.

    Args:
        context: what the worker holds.
        trial: the claimed trial (RUNNING).
        retry_of: the number of the failed trial this one retries, if any.

    Returns:
        Whether its result was copied from an earlier one with its key (nothing trained).

    Raises:
        StorageUnavailable: the study storage stayed unreachable; the trial stays RUNNING
            and the first worker to reach the storage again retries it.
        KeyboardInterrupt: a second stop signal; the trial was requeued.
    """
    return _Lifecycle(context, trial).run(retry_of)


class _Lifecycle:
    """One claimed trial's run (:func:`run_claimed`)."""

    def __init__(self, context: WorkerContext, trial: optuna.Trial) -> None:
        self.context = context
        self.config = context.config
        self.study = context.study
        self.storage = context.storage
        self.trial = trial

    def run(self, retry_of: int | None) -> bool:
        context, trial = self.context, self.trial
        seed = int(trial.user_attrs[stored_names.TRIAL_SEED])
        params = queue.suggest(
            trial, self.config, lock=lambda: studies.creation_lock(context.storage_url)
        )
        spec = TrialSpec(self.config, params, seed)
        run = self._start(spec, retry_of)
        progress_file = workspace.progress_file(self.config, spec.progress_name, seed)
        if progress_file.exists():
            run.set_tags({stored_names.TAG_RESUMED: "true"})
        check = _checker(self.config.execution.trial_timeout)
        reporter = self._reporter(run, spec)
        try:
            data = datasets.load(spec.config.dataset, device=context.device, seed=seed)
            # What the next start of the sweep reads instead of the data and the network: the
            # data's digest (its plan's keys) and the network's counts (validate).
            kept_in = functools.partial(workspace.data_digest_file, self.config)
            digests.keep(spec.config.dataset, seed, data.digest, kept_in)
            network.size(self.config)
            run.log_dataset(
                spec.config.dataset.name,
                data.digest,
                datasets.source_of(spec.config.dataset),
                data.profile(),
            )
            found = self._claim_key(run, spec, data.digest, check)
            if found is not None:
                self._reuse(run, reporter, *found)
                return True
            training = time.monotonic()
            result = run_trial(
                spec.config,
                seed,
                device=context.device,
                cache=context.cache,
                on_step=reporter,
                check=check,
                progress_file=None if spec.is_control else progress_file,
                control=spec.control,
                masks_folder=self._masks_folder(spec, data.digest, check),
            )
            # What the trial cost beyond its training (claim, data, runs, logging) is the
            # difference with its duration (benchmarks/bench_cli.py).
            trial.set_user_attr(stored_names.TRIAL_RUN_SECONDS, time.monotonic() - training)
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
            if self._tell(state=TrialState.PRUNED):
                progress_file.unlink(missing_ok=True)
            return False
        except (stopping.Interrupted, TrialTimeout, KeyboardInterrupt) as exc:
            self._requeue(run, exc, reporter.curve)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return False
        except Exception as exc:  # any other failure ends this trial, never the sweep
            self._fail(run, f"{type(exc).__name__}: {exc}", "FAILED", reporter.curve)
            progress_file.unlink(missing_ok=True)
            return False
        run.set_tags(
            {
                stored_names.TAG_STATE: "COMPLETE",
                stored_names.TAG_DENSE_CHECKPOINT: result.dense_checkpoint,
            }
        )
        run.end("FINISHED")
        # Its twins may have started after it, and a baseline that completes is the one to
        # pair with; linked while the trial still runs, so it can take the attribute.
        self._link_twins(run)
        if self._tell(values=values):
            progress_file.unlink(missing_ok=True)
        return False

    def _start(self, spec: TrialSpec, retry_of: int | None) -> TrialRun:
        """The trial's MLflow run, and the attributes that say who runs it where."""
        context, trial = self.context, self.trial
        tags: dict[str, Any] = {
            stored_names.TAG_DEVICE: context.device,
            stored_names.TAG_WORKER: context.label,
        }
        if retry_of is not None:
            tags[stored_names.TAG_RETRY_OF] = retry_of
        run = context.tracker.start_trial(
            context.parent_run_id, trial_number=trial.number, spec=spec, tags=tags
        )
        # Overwritten on a retry: the copy carries the failed trial's user attributes.
        trial.set_user_attr(stored_names.TRIAL_RUN_ID, run.run_id)
        trial.set_user_attr(stored_names.TRIAL_ARM, spec.arm)
        url = context.tracker.run_url(run.run_id)
        if url:
            trial.set_user_attr(stored_names.TRIAL_RUN_URL, url)
        trial.set_user_attr(stored_names.TRIAL_WORKER, context.label)
        trial.set_user_attr(stored_names.TRIAL_DEVICE, context.device)
        if context.task:
            trial.set_user_attr(stored_names.TRIAL_TASK, context.task)
        self._link_twins(run)
        return run

    def _claim_key(
        self, run: TrialRun, spec: TrialSpec, digest: str, check: Callable[[], None]
    ) -> tuple[str, FrozenTrial] | None:
        """Key the trial (:mod:`identity`) and find whether its result exists.

        Under the storage's creation lock: a COMPLETE trial of any study with an acceptable
        key is returned, to be reused; else, unless a trial with the key is running, this one
        takes the key and trains (None). While one runs, this waits for it: two sweeps or
        workers that need one result train it once.
        """
        trial, device = self.trial, self.context.device
        own = spec.key(device=device, data=digest)
        provenance = {
            stored_names.TRIAL_DATA_DIGEST: digest,
            stored_names.TRIAL_DEVICE_CLASS: identity.device_class(device),
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
            wanted = spec.acceptable_keys(device=device, data=digest)
        here = (self.study.study_name, trial.number)

        def look_or_take() -> reuse.Found:
            # The lock's connection is the database's too: an outage is ridden out here
            # as in any storage call, and the look runs again.
            with studies.creation_lock(self.context.storage_url):
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

    def _masks_folder(self, spec: TrialSpec, digest: str, check: Callable[[], None]) -> Path | None:
        """Where an IMP-only trial of a sweep with controls keeps its masks, and where a
        control finds its twin's: the IMP-only trial's result key names the folder. A control
        whose twin runs now waits for it to finish (it would otherwise compute the same masks
        again)."""
        owner = spec.masks_owner
        if owner is None:
            return None
        key = owner.key(device=self.context.device, data=digest)
        if spec.is_control:
            while self.storage.ride_out(lambda: reuse.find(self.storage, [key]).running):
                check()
                if not stopping.sleep(POLL_SECONDS):
                    raise TrialInterrupted("stopped while waiting for the twin's masks")
        return workspace.masks_folder(self.config, key)

    def _reuse(
        self, run: TrialRun, reporter: _StepReporter, study_name: str, original: FrozenTrial
    ) -> None:
        """Finish ``trial`` with the result of ``original`` (of study ``study_name``): its
        curve into this trial's run and study (the values and intermediate values of this
        sweep's objectives), its key, provenance and the run it came from."""
        trial = self.trial
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
        start, end = original.datetime_start, original.datetime_complete
        trained = held.get(stored_names.TRIAL_TRAINED_SECONDS) or (
            (end - start).total_seconds() if start and end else None
        )
        for name, value in {
            **copied,
            stored_names.TRIAL_REUSED_FROM: source_run,
            stored_names.TRIAL_REUSED_TRIAL: f"{study_name}#{original.number}",
            stored_names.TRIAL_TRAINED_SECONDS: trained,
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
        self._link_twins(run)
        self._tell(values=values)

    def _tell(self, **result: Any) -> bool:
        """Tell the study how ``trial`` ended; False when another worker had already failed it
        (it thought this worker dead) and queued its retry, which then resumes from the
        trial's progress file."""
        told = self.study.tell(self.trial, skip_if_finished=True, **result)
        return told.state == result.get("state", TrialState.COMPLETE)

    def _link_twins(self, run: TrialRun) -> None:
        """Pair the trial's run with its IMP-only twin's (both ways, see :mod:`twins`); an
        ALDS trial also names its twin's run for optuna-dashboard."""
        pairs = twins.link(self.study, self.config, self.trial.number, run.link_twin)
        if run.run_id in pairs:
            self.trial.set_user_attr(stored_names.TRIAL_TWIN_RUN_ID, pairs[run.run_id])

    def _requeue(self, run: TrialRun, cause: BaseException, rows: Sequence[curve.Row]) -> None:
        """Queue ``trial`` again and fail it, after a stop (``cause`` a signal's) or a timeout.

        An interruption is no fault of the trial: its retry does not count, its MLflow run
        ends KILLED, and its storage calls are tried once (the worker is leaving; in an outage
        the trial stays RUNNING until a worker that reaches the storage fails and retries it,
        :func:`queue.fail_stale`)."""
        interrupted = not isinstance(cause, TrialTimeout)
        reason = "interrupted" if interrupted else str(cause)
        status = "KILLED" if interrupted else "FAILED"
        trial = self.trial
        try:
            with self.storage.patience(0) if interrupted else contextlib.nullcontext():
                trial.set_user_attr(stored_names.TRIAL_FAIL_REASON, reason[:1000])
                frozen = self.study.trials[trial.number]
                if frozen.state == TrialState.RUNNING:  # else another worker failed it
                    # Requeued before it is failed: a worker that finds nothing queued or
                    # running in between would stop for good.
                    limit = None if interrupted else self.config.execution.max_retries
                    queue.requeue(self.study, frozen, max_retries=limit)
                self._fail(run, reason, status, rows)
        except StorageUnavailable:
            lost = f"{reason}; study storage unreachable, the trial is retried when it is back"
            run.set_tags({stored_names.TAG_STATE: "FAIL", stored_names.TAG_FAIL_REASON: lost})
            run.end(status)

    def _fail(
        self, run: TrialRun, reason: str, status: str, rows: Sequence[curve.Row] = ()
    ) -> None:
        self.trial.set_user_attr(stored_names.TRIAL_FAIL_REASON, reason[:1000])
        _keep_curve(self.trial, rows)
        run.set_tags({stored_names.TAG_STATE: "FAIL", stored_names.TAG_FAIL_REASON: reason[:5000]})
        run.end(status)
        self._tell(state=TrialState.FAIL)

    def _reporter(self, run: TrialRun, spec: TrialSpec) -> _StepReporter:
        objectives = self.config.search.objective
        return _StepReporter(
            self.trial,
            run,
            self.storage,
            metric=objectives[0].metric if len(objectives) == 1 else None,
            prunable=spec.prunable,
        )


def _checker(timeout: float | None) -> Callable[[], None]:
    """The check a trial's training calls between iterations: it raises once the worker is
    asked to stop, or once the trial has run longer than ``timeout`` seconds."""
    started = time.monotonic()

    def check() -> None:
        if stopping.requested():
            raise TrialInterrupted("stopped during a step")
        if timeout is not None and time.monotonic() - started > timeout:
            raise TrialTimeout(f"trial ran longer than execution.trial_timeout = {timeout} s")

    return check


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

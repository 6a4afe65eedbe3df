"""The sweep's parent process: prepare the study and tracking, then follow its workers (as a
launcher started them: local processes, or a Slurm job array with ``--wait``)."""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from optuna.trial import FrozenTrial

from orchestrator import stored_names, tracking, workspace
from orchestrator.config import SweepConfig
from orchestrator.execution import progress
from orchestrator.study import counts, growth, queue, reuse, study as studies
from orchestrator.study.growth import Growth
from orchestrator.trial import identity

if TYPE_CHECKING:
    from rich.console import Console

logger = logging.getLogger(__name__)

__all__ = [
    "Prepared",
    "Workers",
    "assess",
    "close",
    "decisions_of",
    "follow",
    "keep_decisions",
    "prepare",
    "preview",
]


@dataclass(frozen=True)
class Prepared:
    """A study ready for workers, and where its runs are tracked."""

    study: optuna.Study
    storage_url: str
    tracking_uri: str
    parent_run_id: str
    enqueued: int
    growth: Growth | None = None  # what this start found done, reusable and to run
    # Nothing to run, retry or redraw: no trial queued or running, every trial finished, the
    # comparison logged from them. The sweep starts no worker and opens no tracking store.
    idle: bool = False


def prepare(
    config: SweepConfig,
    *,
    storage_url: str | None = None,
    tracking_uri: str | None = None,
    fresh: bool = False,
    device: Callable[[], str] = lambda: "cpu",
    retry_failed: bool = False,
) -> Prepared:
    """Check the tracking store and the data, create or resume the study, queue the trials
    its YAML asks for that no finished result answers (:mod:`growth`), open the sweep's
    parent run. ``device()`` is the device class the workers will train on (the launcher's).
    Raises ``ConfigError`` (or ``DatasetError``) before anything is trained."""
    _check_data(config)
    url = storage_url or workspace.default_storage(config)
    storage = studies.open_storage(url)
    uri = tracking_uri or workspace.default_tracking_uri(config)
    # Several first starts at once (a job array, two terminals): one at a time creates the
    # tracking store, the study, its queue and the parent run; the others find them made.
    with studies.creation_lock(url):
        # Read before create_or_resume, which may move the study to an archive.
        before = None if fresh else studies.existing(storage, config.name)
        tracked = before is not None and _tracked_at(before, uri)
        if not tracked:
            tracking.check_reachable(uri)
        renewed = before is not None and studies.needs_new_generation(before, config)
        unchanged = studies.holds(before, config)
        study = studies.create_or_resume(config, storage, fresh=fresh)
        trials = study.get_trials(deepcopy=False)
        found = assess(
            config,
            storage,
            trials,
            device,
            keyless_match=unchanged,
            decided=decisions_of(study),
        )
        found.renewed = renewed
        keep_decisions(study, found)
        enqueued = queue.fill_queue(study, config, found)
        if retry_failed:
            enqueued += queue.retry(study, config)
        if tracked and enqueued == 0 and _idle(study, config):
            parent = study.user_attrs[stored_names.STUDY_PARENT_RUN_ID]
            return Prepared(study, url, uri, parent, 0, found, idle=True)
        if tracked:
            tracking.check_reachable(uri)
        tracker = tracking.SweepTracker(uri, config)
        parent = study.user_attrs.get(stored_names.STUDY_PARENT_RUN_ID)
        if parent is None:
            parent = tracker.create_parent_run()
            study.set_user_attr(stored_names.STUDY_PARENT_RUN_ID, parent)
        else:
            tracker.resume_parent_run(parent)
        if renewed:
            _set_aside_earlier_generation(study, tracker, storage)
        study.set_user_attr(stored_names.STUDY_TRACKING_URI, uri)
        study.set_user_attr(stored_names.STUDY_EXPERIMENT_ID, tracker.experiment_id)
    return Prepared(study, url, uri, parent, enqueued, found)


def _set_aside_earlier_generation(
    study: optuna.Study, tracker: tracking.SweepTracker, storage: optuna.storages.BaseStorage
) -> None:
    """The runs of the generation the study just archived, set aside under their archive's
    name (:meth:`SweepTracker.set_aside`); a tracking outage leaves them where they are."""
    archive = study.user_attrs[stored_names.STUDY_EARLIER][-1]
    archived = optuna.load_study(study_name=archive, storage=storage)
    runs = [
        t.user_attrs[stored_names.TRIAL_RUN_ID]
        for t in archived.get_trials(deepcopy=False)
        if stored_names.TRIAL_RUN_ID in t.user_attrs
    ]
    try:
        tracker.set_aside(runs, archive)
    except Exception as exc:  # the study is what counts; the runs are a view of it
        logger.warning("could not set the earlier generation's MLflow runs aside: %s", exc)


def _tracked_at(study: optuna.Study, uri: str) -> bool:
    """Whether ``study``'s runs are tracked at ``uri`` already, under a parent run."""
    attrs = study.user_attrs
    return (
        attrs.get(stored_names.STUDY_TRACKING_URI) == uri
        and stored_names.STUDY_PARENT_RUN_ID in attrs
        and stored_names.STUDY_EXPERIMENT_ID in attrs
    )


def _idle(study: optuna.Study, config: SweepConfig) -> bool:
    """Whether ``study`` has nothing for a start to do: no trial queued or running, each of
    its trials finished, and the comparison logged to the parent run drawn from all of them
    (the parent then ended)."""
    states = counts.count_states(t.state.name for t in study.get_trials(deepcopy=False))
    if states["WAITING"] or states["RUNNING"]:
        return False
    finished = counts.finished(study, config)
    return finished >= counts.expected(study, config) and finished == study.user_attrs.get(
        stored_names.STUDY_REPORTED_FINISHED
    )


def _check_data(config: SweepConfig) -> None:
    """Read the data the trials need once, here: a sweep whose dataset cannot be found or
    fetched stops (``DatasetError``, exit 2) before it creates or queues anything, instead of
    failing every trial alike. The digest is kept for the plan's keys (:mod:`data.digests`:
    a start whose files have not changed since reads none of them)."""
    if config.dataset.name == "synthetic":  # generated: nothing to find
        return
    from orchestrator.data import digests

    digests.digest(config.dataset, config.seeds[0], _digest_file(config))


def _digest_file(config: SweepConfig) -> Callable[[str], Path]:
    """Where the sweep keeps each data digest, by its fingerprint (``data.digests``)."""
    return functools.partial(workspace.data_digest_file, config)


def assess(
    config: SweepConfig,
    storage: optuna.storages.BaseStorage | None,
    trials: Sequence[FrozenTrial],
    device: Callable[[], str],
    *,
    besides: str | None = "",
    keyless_match: bool = False,
    decided: Mapping[str, Mapping[str, Any]] | None = None,
) -> Growth:
    """What the sweep's YAML asks for against what ``storage`` holds (:func:`growth.assess`):
    ``trials`` are its study's, ``device()`` the class its workers train on; results of the
    other studies than ``besides`` (default: the sweep's own) are reusable. Each seed's data
    digest (a trial's key covers it) comes from the cache, or is read once on the CPU. A
    sequential sweep plans the seeds its look asks for, with the decisions its study kept
    (``decided``)."""
    from orchestrator.data import digests

    def keys_of(params: Mapping[str, Any], seed: int) -> list[str]:
        searched_data = any(path.startswith("dataset.") for path in params)
        section = config.with_params(params).dataset if searched_data else config.dataset
        digest = digests.digest(section, seed, _digest_file(config))
        return identity.acceptable_keys(config, params, seed, device=device(), data=digest)

    elsewhere: dict[str, tuple[int | None, str]] = {}
    if storage is not None and config.execution.reuse != "off":
        own = config.name if besides == "" else besides
        elsewhere = reuse.finished_keys(storage, besides=own)
    decisions, seeds_of = _looked(config, trials, decided)
    found = growth.assess(
        config, trials, keys_of, elsewhere, keyless_match=keyless_match, seeds_of=seeds_of
    )
    found.decisions = decisions
    return found


def _looked(
    config: SweepConfig,
    trials: Sequence[FrozenTrial],
    decided: Mapping[str, Mapping[str, Any]] | None,
) -> tuple[dict[str, dict[str, Any]] | None, dict[str, tuple[int, ...]] | None]:
    """A sequential sweep's look (``report.looks``): its decisions, and the seeds each
    configuration needs; (None, None) for a sweep of fixed seeds."""
    if config.sequential is None:
        return None, None
    from orchestrator.report import looks

    states = looks.look(config, growth.in_sweep(config, trials), decided)
    return looks.records(config, states), looks.needs(config, states)


def keep_decisions(study: optuna.Study, found: Growth) -> None:
    """Store the decisions a look made (under the creation lock, with the queue it fills),
    where they changed."""
    if found.decisions is not None and found.decisions != decisions_of(study):
        study.set_user_attr(stored_names.STUDY_DECISIONS, found.decisions)


def decisions_of(study: optuna.Study | None) -> dict[str, dict[str, Any]]:
    """The decisions a sequential sweep's study keeps (none for a new one)."""
    return {} if study is None else dict(study.user_attrs.get(stored_names.STUDY_DECISIONS, {}))


def preview(config: SweepConfig, storage_url: str, device: Callable[[], str]) -> Growth:
    """:func:`assess` without writing anything: for ``validate`` and ``sweep --dry-run``. A
    storage file that does not exist yet holds nothing (it is not created)."""
    if workspace.holds_nothing(storage_url):
        return assess(config, None, [], device)
    storage = studies.open_storage(storage_url)
    study = studies.existing(storage, config.name)
    if study is None:
        return assess(config, storage, [], device)
    if studies.needs_new_generation(study, config):
        # Its trials move to an archive study, and are reused from there.
        found = assess(config, storage, [], device, besides=None)
        found.renewed = True
        return found
    trials = study.get_trials(deepcopy=False)
    return assess(
        config,
        storage,
        trials,
        device,
        keyless_match=studies.holds(study, config),
        decided=decisions_of(study),
    )


class Workers(Protocol):
    """What a sweep follows: local worker processes (:class:`launchers.local.Supervisor`) or a
    Slurm job array (:class:`launchers.slurm.SlurmTasks`)."""

    signals: int
    STOPPING: str  # what the console says on the first signal
    # Labels (stored_names.worker_label) of the worker processes it started on this host; once they
    # have exited, none of their MLflow runs may stay RUNNING.
    started: set[str]

    def interrupt(self) -> None: ...

    def run(self, show: Callable[[dict[str, Any]], None]) -> int: ...


def follow(
    prepared: Prepared,
    config: SweepConfig,
    workers: Workers,
    console: Console,
    *,
    replay_spools: bool = True,
) -> tuple[int, bool]:
    """Show the sweep's progress live and log it to the parent run while ``workers`` run;
    close the parent run when the study is finished. ``replay_spools``: send what workers
    that have exited left in their spools (not while workers of the sweep may still run
    elsewhere, as Slurm tasks of other job arrays may).

    Returns (workers that ended with an error, whether a signal stopped the following).
    """

    from rich.live import Live

    def on_signal(signum: int, frame: object) -> None:
        workers.interrupt()
        if workers.signals == 1:
            console.print(workers.STOPPING)

    tracking.fail_fast_http()
    tracker = tracking.SweepTracker(
        prepared.tracking_uri,
        config,
        experiment_id=prepared.study.user_attrs.get(stored_names.STUDY_EXPERIMENT_ID),
    )
    summarize = _Summary(tracker, prepared)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Live(console=console, refresh_per_second=2, transient=False) as live:

            def show(rows: dict[str, Any]) -> None:
                live.update(progress.render(rows, config))
                summarize(rows)

            failed = workers.run(show=show)
        if not console.is_terminal:  # Live leaves its last line open where it cannot redraw
            console.line()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if replay_spools:
        _replay_spools(config, prepared.tracking_uri)
    _close_left_running(prepared, workers.started)
    _close(summarize, prepared, config, interrupted=workers.signals > 0)
    return failed, workers.signals > 0


def close(study: optuna.Study, config: SweepConfig, tracking_uri: str) -> None:
    """What a sweep's parent process does at its end, for workers that run without one (a
    Slurm job array without ``--wait``): once every trial has finished, log the comparison
    figures and the final counts to the parent run and end it. The workers that exit after
    the last trial has finished do it (the first one or two, as they notice)."""
    parent = study.user_attrs.get(stored_names.STUDY_PARENT_RUN_ID)
    if parent is None or counts.finished(study, config) < counts.expected(study, config):
        return  # a worker that runs out of queue while others still run trials
    tracker = tracking.SweepTracker(
        tracking_uri, config, experiment_id=study.user_attrs.get(stored_names.STUDY_EXPERIMENT_ID)
    )
    prepared = Prepared(study, "", tracking_uri, parent, enqueued=0)
    summarize = _Summary(tracker, prepared)
    summarize(progress.rows(study, config))
    _close(summarize, prepared, config)


def _close(
    summarize: _Summary, prepared: Prepared, config: SweepConfig, *, interrupted: bool = False
) -> None:
    summarize.log_comparison()
    finished = counts.finished(prepared.study, config)
    if interrupted and finished < counts.expected(prepared.study, config):
        summarize.tracker.end_parent_run(prepared.parent_run_id, "KILLED")  # resumed later
    elif finished >= counts.expected(prepared.study, config):
        summarize.tracker.end_parent_run(prepared.parent_run_id)
        if summarize.finished == finished:  # drawn from every trial: a start may stay idle
            prepared.study.set_user_attr(stored_names.STUDY_REPORTED_FINISHED, finished)


class _Summary:
    """Logs the trial counts and the best value to the parent run whenever they change, and
    the report's figures (the sweep's comparison) when trials have finished since the last
    ones, at most every ``FIGURE_SECONDS``."""

    RETRY_SECONDS = 30.0
    FIGURE_SECONDS = 120.0

    def __init__(self, tracker: tracking.SweepTracker, prepared: Prepared) -> None:
        self.tracker = tracker
        self.prepared = prepared
        self.last: tuple | None = None
        self.retry_at = 0.0
        # Trials finished when the figures were last drawn (by any start of the sweep).
        self.finished = prepared.study.user_attrs.get(stored_names.STUDY_REPORTED_FINISHED, 0)
        self.figures_at = time.monotonic()
        self.view_has_layers = False
        # What the figures have read (a report.Curves): each refresh reads only the trials
        # that changed since.
        self.curves: Any = None

    def __call__(self, rows: dict[str, Any]) -> None:
        summary = (tuple(sorted(rows["counts"].items())), rows["best"])
        if summary == self.last or time.monotonic() < self.retry_at:
            return
        try:
            self.tracker.log_sweep_summary(
                self.prepared.parent_run_id, rows["counts"], rows["best"]
            )
        except Exception as exc:  # a tracking outage must not stop the sweep
            # Each failed call can wait on the server's timeout: the supervisor loop, which
            # also reaps dead workers, must not wait on it every second.
            self.retry_at = time.monotonic() + self.RETRY_SECONDS
            logger.warning("could not log the sweep's progress to MLflow: %s", exc)
            return
        self.last = summary
        if time.monotonic() - self.figures_at >= self.FIGURE_SECONDS:
            self.log_comparison()

    def log_comparison(self) -> None:
        """Draw the report's figures from the finished trials and log them to the parent run
        (replacing the last ones); nothing when no trial has finished since."""
        from orchestrator import report

        finished = counts.finished(self.prepared.study, self.tracker.config)
        complete = self.prepared.study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
        )
        if finished == self.finished or not complete:
            return  # nothing new, or nothing to draw from
        self.figures_at = time.monotonic()
        self.curves = self.curves or report.Curves()
        try:
            drawn = report.draw(
                self.prepared.study,
                self.tracker.config,
                tracking_uri=self.prepared.tracking_uri,
                curves=self.curves,
            )
            self.tracker.log_figures(self.prepared.parent_run_id, drawn)
            if not self.view_has_layers:
                run = next((t.user_attrs.get(stored_names.TRIAL_RUN_ID) for t in complete), None)
                if run is not None:
                    self.view_has_layers = self.tracker.set_view(run_id=run)
        except Exception as exc:  # the figures are a view; the sweep goes on without them
            logger.warning("could not log the sweep's comparison figures to MLflow: %s", exc)
            return
        self.finished = finished


def _close_left_running(prepared: Prepared, workers: set[str]) -> None:
    """End the runs of trials whose worker was killed (or whose last call was lost)."""
    try:
        closed = tracking.close_left_running(
            prepared.tracking_uri, prepared.parent_run_id, workers, "interrupted"
        )
    except Exception as exc:  # the tracking store may be away; the study is what counts
        logger.warning("could not close the MLflow runs left running: %s", exc)
        return
    if closed:
        logger.info("ended %d MLflow run(s) left running by stopped workers", len(closed))


def _replay_spools(config: SweepConfig, uri: str, seconds: float = 60.0) -> None:
    """Send what local workers could not send before they exited (a tracking outage)."""
    spools = workspace.spool_files(config)
    if not spools:
        return
    from mlflow import MlflowClient

    from orchestrator.tracking.outbox import replay_spool

    client = MlflowClient(uri)
    deadline = time.monotonic() + seconds
    for spool in spools:
        replay_spool(client, spool, deadline=deadline)

"""The sweep's parent process: prepare the study and tracking, then supervise local workers."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

import optuna
from mlflow import MlflowClient
from rich.console import Console
from rich.live import Live

from orchestrator import keys, progress, queue, tracking, workspace
from orchestrator import study as studies
from orchestrator.config import SweepConfig
from orchestrator.outbox import replay_spool
from orchestrator.supervisor import Slot, Supervisor

logger = logging.getLogger(__name__)

__all__ = ["Prepared", "prepare", "run"]


@dataclass(frozen=True)
class Prepared:
    """A study ready for workers, and where its runs are tracked."""

    study: optuna.Study
    storage_url: str
    tracking_uri: str
    parent_run_id: str
    enqueued: int


def prepare(
    config: SweepConfig,
    *,
    storage_url: str | None = None,
    tracking_uri: str | None = None,
    fresh: bool = False,
) -> Prepared:
    """Check the tracking store, create or resume the study, queue its trials, open the
    sweep's parent run. Raises ``ConfigError`` before anything is trained."""
    url = storage_url or studies.default_storage(config)
    storage = studies.open_storage(url)
    uri = tracking_uri or tracking.default_uri(config)
    # Several first starts at once (a job array, two terminals): one at a time creates the
    # tracking store, the study, its queue and the parent run; the others find them made.
    with studies.creation_lock(url):
        tracking.check_reachable(uri)
        study = studies.create_or_resume(config, storage, fresh=fresh)
        enqueued = queue.fill_queue(study, config)
        tracker = tracking.SweepTracker(uri, config)
        parent = study.user_attrs.get(keys.STUDY_PARENT_RUN_ID)
        if parent is None:
            parent = tracker.create_parent_run()
            study.set_user_attr(keys.STUDY_PARENT_RUN_ID, parent)
        study.set_user_attr(keys.STUDY_TRACKING_URI, uri)
        study.set_user_attr(keys.STUDY_EXPERIMENT_ID, tracker.experiment_id)
    return Prepared(study, url, uri, parent, enqueued)


def run(
    prepared: Prepared,
    config: SweepConfig,
    slots: list[Slot],
    console: Console,
) -> tuple[int, bool]:
    """Supervise one worker per slot until the queue is done or a signal stops them.

    Returns (workers that ended with an error, whether the sweep was interrupted).
    """
    supervisor = Supervisor(
        slots, prepared.study, config, prepared.storage_url, prepared.tracking_uri
    )

    def on_signal(signum: int, frame: object) -> None:
        supervisor.interrupt()
        if supervisor.signals == 1:
            console.print(
                "stopping: running trials finish their current step and are requeued "
                "(signal again to stop at once)"
            )

    tracking.fail_fast_http()
    tracker = tracking.SweepTracker(
        prepared.tracking_uri,
        config,
        experiment_id=prepared.study.user_attrs.get(keys.STUDY_EXPERIMENT_ID),
    )
    summarize = _Summary(tracker, prepared)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Live(console=console, refresh_per_second=2, transient=False) as live:

            def show(rows: dict[str, Any]) -> None:
                live.update(progress.render(rows, config))
                summarize(rows)

            failed = supervisor.run(show=show)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _replay_spools(config, prepared.tracking_uri)
    summarize.log_comparison()
    if progress.finished(prepared.study) >= progress.expected(prepared.study, config):
        tracker.end_parent_run(prepared.parent_run_id)
    return failed, supervisor.signals > 0


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
        self.finished = 0  # trials finished when the figures were last drawn
        self.figures_at = time.monotonic()
        self.view_has_layers = False

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

        finished = progress.finished(self.prepared.study)
        if finished == self.finished:
            return
        self.figures_at = time.monotonic()
        try:
            built = report.build(
                self.prepared.study, self.tracker.config, tracking_uri=self.prepared.tracking_uri
            )
            self.tracker.log_figures(self.prepared.parent_run_id, built.figures)
            if not self.view_has_layers:
                trials = built.tables["trials"]
                complete = trials.loc[trials["state"] == "COMPLETE", keys.TRIAL_RUN_ID]
                if not complete.empty:
                    self.view_has_layers = self.tracker.set_view(run_id=complete.iloc[0])
        except Exception as exc:  # the figures are a view; the sweep goes on without them
            logger.warning("could not log the sweep's comparison figures to MLflow: %s", exc)
            return
        self.finished = finished


def _replay_spools(config: SweepConfig, uri: str, seconds: float = 60.0) -> None:
    """Send what local workers could not send before they exited (a tracking outage)."""
    spools = workspace.spool_files(config)
    if not spools:
        return
    client = MlflowClient(uri)
    deadline = time.monotonic() + seconds
    for spool in spools:
        replay_spool(client, spool, deadline=deadline)

"""MLflow: a sweep's parent run and its trials' child runs, calls that ride out a server
outage, the runs page's view."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face

if TYPE_CHECKING:
    from orchestrator.tracking.outbox import Outbox as Outbox, replay_spool as replay_spool
    from orchestrator.tracking.runs import (
        SweepTracker as SweepTracker,
        TrialRun as TrialRun,
        check_reachable as check_reachable,
        close_left_running as close_left_running,
        close_trial_run as close_trial_run,
        fail_fast_http as fail_fast_http,
        log_artifacts as log_artifacts,
        trial_runs as trial_runs,
    )
    from orchestrator.tracking.runs_view import view_link as view_link, view_state as view_state

# Each name and its module, imported on first use (orchestrator.lazy_face); the imports above
# name them for type checkers.
_EXPORTS = {
    "SweepTracker": "runs",
    "TrialRun": "runs",
    "check_reachable": "runs",
    "close_left_running": "runs",
    "close_trial_run": "runs",
    "fail_fast_http": "runs",
    "log_artifacts": "runs",
    "trial_runs": "runs",
    "Outbox": "outbox",
    "replay_spool": "outbox",
    "view_link": "runs_view",
    "view_state": "runs_view",
}
__all__ = list(_EXPORTS)


if not TYPE_CHECKING:  # type checkers read the imports above, and no name besides them
    __getattr__ = lazy_face(__name__, _EXPORTS)

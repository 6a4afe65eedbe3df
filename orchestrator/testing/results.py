"""Reading back what a sweep stored, as the checks of tests and scripts need it: its study and
trials (Optuna), its runs and curves (MLflow), and waiting until a state shows there.

Documents are those of :mod:`orchestrator.testing.sweeps`: where a sweep keeps its stores is
asked of :mod:`orchestrator.workspace`, never spelled here.
"""

from __future__ import annotations

import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TypeVar

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import FrozenTrial, TrialState

from orchestrator import stored_names, workspace
from orchestrator.study import study as studies
from orchestrator.sweep_file import parse_config

__all__ = [
    "completed_once",
    "curve",
    "load_study",
    "running_at_step",
    "runs_of",
    "study_storage",
    "tracking_uri",
    "wait_for",
]

T = TypeVar("T")


def _open(url: str) -> optuna.storages.BaseStorage:
    # The tool's storage turns on Optuna's heartbeats, an experimental feature it uses
    # knowingly (as the CLI does); a reader has no use for the warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return studies.open_storage(url)


def study_storage(document: dict, *, journal: bool = False) -> str:
    """The URL of the study storage a sweep keeps in its workspace.

    Args:
        document: the sweep.
        journal: its journal file (the Slurm launcher's) instead of its SQLite file.

    Returns:
        A ``sqlite:///`` or ``journal:///`` URL.
    """
    config = parse_config(document)
    if journal:
        return workspace.journal_url(workspace.study_journal(config))
    return workspace.sqlite_url(workspace.study_file(config))


def tracking_uri(document: dict) -> str:
    """The URI of the MLflow store a sweep keeps in its workspace (without ``--tracking-uri``).

    Args:
        document: the sweep.

    Returns:
        A ``sqlite:///`` URI.
    """
    return workspace.sqlite_url(workspace.tracking_file(parse_config(document)))


def load_study(document: dict, storage: str | None = None) -> optuna.Study:
    """A sweep's study.

    Args:
        document: the sweep (its name is the study's).
        storage: the study's storage URL; None: the SQLite file in its workspace.

    Returns:
        The study, read through the tool's own storage (journal files included).

    Raises:
        KeyError: the storage holds no such study (yet).
    """
    url = storage or study_storage(document)
    return optuna.load_study(study_name=document["name"], storage=_open(url))


def running_at_step(
    study_name: str, storage: str, step: int, *, exclude_worker: str | None = None
) -> FrozenTrial | None:
    """A RUNNING trial that has reported ``step`` or a later one: a trial in mid-flight, to
    kill its worker or break a server under it.

    Args:
        study_name: the study.
        storage: its storage URL.
        step: the least step the trial has reported (its ``stored_names.TRIAL_STEP``).
        exclude_worker: skip the trials of this worker (a ``stored_names.worker_label``).

    Returns:
        The first such trial, or None (also while the sweep has not created the study yet).
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=_open(storage))
    except KeyError:  # the sweep has not created it yet
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(stored_names.TRIAL_WORKER)
        if trial.user_attrs.get(stored_names.TRIAL_STEP, -1) >= step and worker != exclude_worker:
            return trial
    return None


def completed_once(trials: Iterable[FrozenTrial]) -> Counter:
    """How often each configuration and seed completed: a sweep that lost or repeated nothing
    counts 1 for each.

    Args:
        trials: the study's trials, in any state.

    Returns:
        (sorted parameter items, seed) → the number of its COMPLETE trials.
    """
    return Counter(
        (tuple(sorted(t.params.items())), t.user_attrs[stored_names.TRIAL_SEED])
        for t in trials
        if t.state == TrialState.COMPLETE
    )


def runs_of(
    client: MlflowClient, experiment: str, role: str = stored_names.ROLE_TRIAL
) -> list[Run]:
    """A sweep's runs of one role.

    Args:
        client: a client of the sweep's tracking store.
        experiment: the experiment's name (the sweep's).
        role: ``stored_names.ROLE_TRIAL`` (a run per trial) or ``stored_names.ROLE_SWEEP``
            (the parent).

    Returns:
        Every such run of the experiment.
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no MLflow experiment named {experiment!r}")
    return client.search_runs(
        [found.experiment_id], f"tags.`{stored_names.TAG_ROLE}` = '{role}'", max_results=1000
    )


def curve(client: MlflowClient, run_id: str, key: str = "accuracy") -> list[tuple[int, float]]:
    """One metric of a run over its steps.

    Args:
        client: a client of the run's tracking store.
        run_id: the run (a trial's ``stored_names.TRIAL_RUN_ID``).
        key: the metric.

    Returns:
        (step, value) pairs in step order; a step logged twice shows twice.
    """
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 300,
    what: str = "condition",
    *,
    process: subprocess.Popen | None = None,
) -> T:
    """Poll ``predicate`` every half second until it returns something true.

    Args:
        predicate: the check, e.g. ``lambda: running_at_step(...)``.
        timeout: seconds before giving up.
        what: what is awaited, for the failure's message.
        process: the command that should bring it about: give up as soon as it has exited.

    Returns:
        The predicate's first true value.

    Raises:
        AssertionError: the time ran out, or ``process`` exited first (with its standard
            error's end, if captured).
    """
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if process is not None and process.poll() is not None:
            err = (process.communicate()[1] or "")[-3000:]
            raise AssertionError(f"exited with code {process.returncode} before {what}: {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)
    return value

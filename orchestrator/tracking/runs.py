"""MLflow tracking: one experiment per sweep, a parent run, one nested child run per trial.

Written on ``MlflowClient`` (no global active run), so a worker can hold any number of runs
and nothing leaks between trials. Metrics are logged in one batch per compression step.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from orchestrator import plan, stored_names, workspace
from orchestrator.config import ConfigError, SweepConfig, flatten
from orchestrator.study.counts import finished_count
from orchestrator.sweep_file import describe_params
from orchestrator.tracking import runs_view
from orchestrator.tracking.outbox import Outbox
from orchestrator.trial.identity import config_hash
from orchestrator.trial.spec import TrialSpec

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

MAX_PARAMS_PER_BATCH = 100
logger = logging.getLogger(__name__)

__all__ = [
    "SweepTracker",
    "TrialRun",
    "check_reachable",
    "close_trial_run",
    "log_artifacts",
    "resolve_pending",
    "trial_runs",
]


def fail_fast_http() -> None:
    """Give up on an unanswered MLflow HTTP call after one retry (unless the user chose).

    MLflow's own HTTP retries would hold training, or the sweep's progress display, for
    minutes in an outage; the outbox retries briefly and keeps what it cannot send instead.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def check_reachable(uri: str, *, timeout: float = 5.0) -> None:
    """Raise :class:`ConfigError` unless the tracking store at ``uri`` answers, and a server
    with a login (MLflow's basic-auth app) takes this process's credentials: refused later,
    every call would be kept by the outbox as if the server were away."""
    from mlflow.exceptions import MlflowException

    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as answer:
                if answer.status != 200:
                    raise ConfigError(f"tracking server {uri} answered {answer.status} to /health")
        except (urllib.error.URLError, OSError) as exc:
            raise ConfigError(
                f"cannot reach the MLflow tracking server {uri}: {exc}; start it, or pass "
                "--tracking-uri (or set MLFLOW_TRACKING_URI) to one that runs"
            ) from None
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as exc:
        if exc.get_http_status_code() not in (401, 403):
            raise ConfigError(f"cannot open the MLflow tracking store {uri}: {exc}") from None
        given = "wrong" if os.environ.get("MLFLOW_TRACKING_USERNAME") else "no"
        raise ConfigError(
            f"the MLflow tracking server {uri} asks for a login and {given} credentials were "
            "given: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "(docs/distributed.md, 'The MLflow login')"
        ) from None
    except Exception as exc:  # the stores raise many kinds of errors for a bad URI
        raise ConfigError(f"cannot open the MLflow tracking store {uri}: {exc}") from None


def trial_runs(client: MlflowClient, parent_run_id: str) -> dict[int, str]:
    """Trial number → run id of the parent's child runs (the latest run of each trial).

    The way to find a run whose id the study does not know: one created during a tracking
    outage is recorded in the study under a provisional id.
    """
    parent = client.get_run(parent_run_id)
    found: dict[int, tuple[int, str]] = {}
    token = None
    while True:
        page = client.search_runs(
            [parent.info.experiment_id],
            f"tags.`{stored_names.TAG_PARENT_RUN_ID}` = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            number = run.data.tags.get(stored_names.TAG_TRIAL_NUMBER)
            if number is not None:
                start = run.info.start_time or 0
                if int(number) not in found or found[int(number)][0] < start:
                    found[int(number)] = (start, run.info.run_id)
        token = page.token
        if not token:
            return {number: run_id for number, (_, run_id) in found.items()}


def close_left_running(
    uri: str, parent_run_id: str, workers: Collection[str], reason: str
) -> list[str]:
    """End the parent's child runs still RUNNING that ``workers`` started: KILLED, tagged
    failed with ``reason``.

    ``workers`` are labels (:func:`stored_names.worker_label`) of processes that have exited; a
    worker killed in the middle of a call, or whose closing call never reached the server,
    leaves no run RUNNING. Other workers' runs are left alone (they may still run).

    Returns:
        The ids of the runs it ended.
    """
    if not workers:
        return []
    client = MlflowClient(uri)
    experiment = client.get_run(parent_run_id).info.experiment_id
    closed = []
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            f"tags.`{stored_names.TAG_PARENT_RUN_ID}` = '{parent_run_id}' "
            "and attributes.status = 'RUNNING'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            if run.data.tags.get(stored_names.TAG_WORKER) in workers:
                client.set_tag(run.info.run_id, stored_names.TAG_STATE, "FAIL")
                client.set_tag(run.info.run_id, stored_names.TAG_FAIL_REASON, reason)
                client.set_terminated(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
        token = page.token
        if not token:
            return closed


def resolve_pending(
    client: MlflowClient, parent_run_id: str | None, runs: Mapping[int, str | None]
) -> dict[int, str | None]:
    """``runs`` (trial number → run id, as the study recorded them) with each provisional id
    of a run created during a tracking outage replaced by the run's real id."""
    if not parent_run_id or not any(
        r and r.startswith(stored_names.PENDING_RUN_ID) for r in runs.values()
    ):
        return dict(runs)
    created = trial_runs(client, parent_run_id)
    return {
        n: created.get(n, r) if r and r.startswith(stored_names.PENDING_RUN_ID) else r
        for n, r in runs.items()
    }


def trial_run_name(spec: TrialSpec) -> str:
    """What a trial is, as its run's name: its configuration's name
    (:func:`plan.configuration_name`) and its seed, ``ALDS 0.3 · prune 0.2 · seed 1``."""
    return f"{plan.configuration_name(spec.sweep, spec.params)} · seed {spec.seed}"


def sweep_description(config: SweepConfig, experiment_id: str | None = None) -> str:
    """The experiment's and the parent run's description (Markdown): what the sweep asks,
    what it searches, how to get its tables, and (given the experiment) a link to its view."""
    lines = [
        f"**{config.name}**: does ALDS before IMP keep more accuracy than IMP alone at equal "
        f"sparsity, and at which ALDS rate? {config.model} on {config.dataset.name}, "
        f"{plan.total_trials(config)} trials over {len(config.seeds)} seed(s), "
        f"{config.search.sampler} sampler.",
        "",
        "Searched:",
        *(
            f"- `{path}`: {space.kind} {space.describe()}"
            for path, space in config.search.space.items()
        ),
        "",
        "Runs are named by ALDS rate (or IMP only), prune fraction and seed; the tag `arm` marks "
        "the IMP-only baseline. Tables and figures: `orchestrate report SWEEP.yaml`.",
    ]
    if experiment_id is not None:
        lines += [
            "",
            f"[Charts: accuracy against weights remaining]({runs_view.view_link(experiment_id)})"
            f" · [the trials by ALDS rate]({runs_view.view_link(experiment_id, charts=False)})",
        ]
    return "\n".join(lines)


def trial_description(trial_config: SweepConfig) -> str:
    """A trial run's description (Markdown): which phase each step of its curves is, and how
    to chart them against the weights remaining."""
    alds = trial_config.alds
    epochs = alds.finetune_epochs
    finetune = f", then {epochs:g} fine-tuning epoch(s)" if epochs else ""
    compressed = (
        f"ALDS at rate {alds.rate:g} ({alds.mode} mode){finetune}"
        if plan.is_alds(alds.rate)
        else f"no ALDS (the IMP-only baseline){finetune}"
    )
    imp = trial_config.imp
    lines = [
        "Steps of the curves:",
        "- step 0: the dense-trained network",
        f"- step 1: {compressed}",
        f"- steps 2–{imp.cycles + 1}: IMP cycles 1–{imp.cycles} (step s is cycle s − 1), "
        f"pruning {imp.prune_fraction:g} per cycle, rewind `{imp.rewind}`",
        "",
        "Against sparsity: this run's figure is the artifact "
        f"`{stored_names.ARTIFACT_TRIAL_FIGURE}`; in the chart view set a line chart's x-axis to "
        "the metric `remaining`. `params_effective` and `flops_effective` count each weight in "
        "its cheaper exact form (nonzeros, or rank factors); `remaining/<layer>` is a layer's "
        f"share left. Per-step table with the phases: `{stored_names.ARTIFACT_CURVE}.csv`.",
    ]
    return "\n".join(lines)


def _source_tags(config: SweepConfig) -> dict[str, str]:
    """The standard source tags, so MLflow's Source column says what made the run."""
    tags = {
        stored_names.TAG_SOURCE_NAME: f"orchestrate · {config.name}",
        stored_names.TAG_SOURCE_TYPE: "LOCAL",
    }
    commit = _git_commit()
    if commit:
        tags[stored_names.TAG_GIT_COMMIT] = commit
    return tags


def close_trial_run(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    """End the MLflow run of a trial whose worker is gone, marked failed with ``reason``.

    ``study`` and ``trial`` are the Optuna study and the trial's record; nothing is left
    RUNNING in MLflow for a trial that no worker runs.
    """
    run_id = trial.user_attrs.get(stored_names.TRIAL_RUN_ID)
    uri = study.user_attrs.get(stored_names.STUDY_TRACKING_URI)
    if not run_id or not uri or run_id.startswith(stored_names.PENDING_RUN_ID):
        return
    client = MlflowClient(uri)
    try:
        client.set_tag(run_id, stored_names.TAG_STATE, "FAIL")
        client.set_tag(run_id, stored_names.TAG_FAIL_REASON, reason)
        client.set_terminated(run_id, "FAILED")
    except Exception as exc:  # the tracking store may be away too; the trial is what counts
        logger.warning("could not close MLflow run %s of trial %d: %s", run_id, trial.number, exc)


@functools.cache
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _param_batches(values: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """The params as text, in batches MLflow accepts in one call."""
    items = [(key, str(value)) for key, value in values.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        yield dict(items[start : start + MAX_PARAMS_PER_BATCH])


def _now_ms() -> int:
    return int(time.time() * 1000)


class SweepTracker:
    """The MLflow side of one sweep.

    The sweep's parent process creates the experiment and the parent run, talking to the
    store directly so that a bad store fails fast. Trial runs go through an :class:`Outbox`,
    so a worker keeps training through a tracking outage.
    """

    def __init__(
        self,
        uri: str,
        config: SweepConfig,
        *,
        experiment_id: str | None = None,
        spool: Path | None = None,
        on_run_created: Callable[[str, str], None] | None = None,
    ) -> None:
        self.uri = uri
        self.config = config
        self.client = MlflowClient(uri)
        self.experiment_id = experiment_id or self._experiment()
        self.outbox = Outbox(self.client, spool, on_run_created=on_run_created)

    def _experiment(self) -> str:
        name = self.config.tracking.experiment or self.config.name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if not self.uri.startswith(("http://", "https://")):
                # A local store keeps artifacts beside it, not in the current directory.
                location = workspace.artifacts_folder(self.config).resolve().as_uri()
            try:
                self.client.create_experiment(name, artifact_location=location)
            except mlflow.exceptions.MlflowException:
                if self.client.get_experiment_by_name(name) is None:
                    raise
                # Another process created it first.
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:  # created above, or by another process
                raise ConfigError(f"MLflow experiment {name!r} could not be created")
        experiment_id = experiment.experiment_id
        # Also on an experiment made by an older version or by hand: it opens in the training
        # views; a kind or a description someone already chose stays. The view is the
        # sweep's own and follows its current search space.
        defaults = {
            stored_names.TAG_EXPERIMENT_KIND: stored_names.EXPERIMENT_KIND_TRAINING,
            stored_names.TAG_NOTE: sweep_description(self.config, experiment_id),
        }
        for key, value in defaults.items():
            if key not in experiment.tags:
                self.client.set_experiment_tag(experiment_id, key, value)
        self.set_view(experiment_id)
        return experiment_id

    def set_view(self, experiment_id: str | None = None, run_id: str | None = None) -> bool:
        """Write the sweep's view of its runs page (:mod:`runs_view`) into the experiment,
        with a chart per layer that ``run_id`` (a finished trial's run) logged.

        Returns:
            Whether the view has its layer charts.
        """
        layers = []
        if run_id is not None:
            prefix = stored_names.layer_remaining("")
            metrics = self.client.get_run(run_id).data.metrics
            layers = [key.removeprefix(prefix) for key in metrics if key.startswith(prefix)]
        view = runs_view.view_state(list(self.config.search.space), layers)
        self.client.set_experiment_tag(
            experiment_id or self.experiment_id,
            stored_names.TAG_SHARED_VIEW_PREFIX + runs_view.VIEW_KEY,
            json.dumps(view),
        )
        return bool(layers)

    def create_parent_run(self) -> str:
        """Start the sweep's parent run: the fixed config and the search space as params (a
        searched field has no value of its own), hash, description and source as tags."""
        tags = {
            stored_names.TAG_ROLE: stored_names.ROLE_SWEEP,
            stored_names.TAG_SWEEP: self.config.name,
            stored_names.TAG_CONFIG_HASH: config_hash(self.config),
            stored_names.TAG_NOTE: sweep_description(self.config, self.experiment_id),
            **_source_tags(self.config),
        }
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=self.config.name)
        run_id = run.info.run_id
        searched = set(self.config.search.space)
        fixed = {
            path: value for path, value in flatten(self.config).items() if path not in searched
        }
        for batch in _param_batches(fixed):
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in batch.items()])
        document = self.config.model_dump(mode="json")
        self.client.log_dict(run_id, document, stored_names.ARTIFACT_SWEEP_CONFIG)
        return run_id

    def run_url(self, run_id: str) -> str | None:
        """A link to a run in the MLflow UI, where the tracking store is an HTTP server."""
        if not self.uri.startswith(("http://", "https://")) or run_id.startswith(
            stored_names.PENDING_RUN_ID
        ):
            return None
        return f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{run_id}"

    def log_figures(self, run_id: str, figures: Mapping[str, Any]) -> None:
        """Each matplotlib figure as ``<name>.png`` at the top of ``run_id``'s artifacts."""
        for name, figure in figures.items():
            self.client.log_figure(run_id, figure, f"{name}.png")

    def end_parent_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def set_aside(self, run_ids: Iterable[str], archive: str) -> None:
        """Move the runs of a study's earlier generation out from under the parent run, named
        and tagged with their archive study: the new generation's runs, which copy their
        results, are the parent's children, once each (the earlier ones stay, as records)."""
        for run_id in run_ids:
            run = self.client.get_run(run_id)
            if stored_names.TAG_GENERATION in run.data.tags:
                continue
            self.client.set_tag(run_id, stored_names.TAG_GENERATION, archive)
            self.client.update_run(run_id, name=f"{run.info.run_name} ({archive})")
            if stored_names.TAG_PARENT_RUN_ID in run.data.tags:
                self.client.delete_tag(run_id, stored_names.TAG_PARENT_RUN_ID)

    def resume_parent_run(self, run_id: str) -> None:
        """Mark the parent run RUNNING again: a start that runs trials (a resumed, grown or
        retried sweep) after it was ended or stopped."""
        self.client.update_run(run_id, status="RUNNING")

    def log_sweep_summary(self, run_id: str, counts: Mapping[str, int], best: float | None) -> None:
        """Trial counts by state (``trials_complete``, ...) and the best value so far as
        metrics of the parent run, at the step of how many trials have finished."""
        finished = finished_count(counts)
        values: dict[str, float] = {
            f"{stored_names.SWEEP_METRIC_PREFIX}{state.lower()}": n for state, n in counts.items()
        }
        if best is not None:
            values[stored_names.SWEEP_METRIC_BEST] = best
        timestamp = _now_ms()
        metrics = [Metric(k, float(v), timestamp, finished) for k, v in values.items()]
        self.client.log_batch(run_id, metrics=metrics)

    def start_trial(
        self,
        parent_run_id: str | None,
        *,
        trial_number: int,
        spec: TrialSpec,
        tags: Mapping[str, Any],
    ) -> TrialRun:
        """A child run of the parent with the trial's whole resolved config as params, named
        for what it is (``ALDS 0.3 · prune 0.2 · seed 1``), tagged with its arm and the
        configuration its seeds share."""
        all_tags = {
            stored_names.TAG_PARENT_RUN_ID: parent_run_id,
            stored_names.TAG_ROLE: stored_names.ROLE_TRIAL,
            stored_names.TAG_TRIAL_NUMBER: trial_number,
            stored_names.TAG_SEED: spec.seed,
            stored_names.TAG_HOST: socket.gethostname(),
            stored_names.TAG_ARM: spec.arm,
            stored_names.TAG_CONFIG: describe_params(spec.params) or "default",
            stored_names.TAG_NOTE: trial_description(spec.config),
            **_source_tags(self.config),
            **tags,
        }
        run_id = self.outbox.create_run(
            self.experiment_id,
            tags={k: str(v) for k, v in all_tags.items()},
            run_name=trial_run_name(spec),
        )
        run = TrialRun(self.outbox, run_id)
        resolved = {**flatten(spec.config), stored_names.PARAM_SEED: spec.seed}
        for batch in _param_batches(resolved):
            self.outbox.log_batch(run_id, params=batch)
        return run


class TrialRun:
    """One trial's MLflow run; every call goes through the sweep's outbox."""

    def __init__(self, outbox: Outbox, run_id: str) -> None:
        self.outbox = outbox
        self.run_id = run_id

    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        timestamp = _now_ms()
        metrics = [(key, float(value), timestamp, step) for key, value in values.items()]
        self.outbox.log_batch(self.run_id, metrics=metrics)

    def log_dataset(self, name: str, digest: str, source: str, profile: Mapping[str, Any]) -> None:
        """The training data as the run's input: MLflow's Dataset column shows it."""
        dataset = {
            "name": name,
            "digest": digest,
            "source_type": "local",
            "source": json.dumps({"uri": source}),
            "profile": json.dumps(dict(profile)),
        }
        self.outbox.log_input(self.run_id, dataset, stored_names.INPUT_CONTEXT_TRAIN)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.outbox.log_batch(self.run_id, tags={k: str(v) for k, v in tags.items()})

    def link_twin(self, run_id: str, baseline_run_id: str) -> None:
        """Tag an ALDS trial's or a control's run (this one or another) with its IMP-only
        twin's run."""
        self.outbox.log_batch(run_id, tags={stored_names.TAG_TWIN_RUN_ID: baseline_run_id})

    def log_tables(self, tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        """Each table (rows of dicts) as ``<name>.csv``."""
        for name, rows in tables.items():
            frame = pd.DataFrame(list(rows))
            self.outbox.log_text(self.run_id, frame.to_csv(index=False), f"{name}.csv")

    def log_figure(self, figure: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            figure.savefig(path, dpi=120)
            self.outbox.log_file(self.run_id, path)

    def log_torch(self, payload: Mapping[str, Any], name: str) -> None:
        import torch  # only workers save weights: the sweep, report and status never load it

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            torch.save(dict(payload), path)
            self.outbox.log_file(self.run_id, path)

    def end(self, status: str) -> None:
        self.outbox.set_terminated(self.run_id, status)


def log_artifacts(tracking_uri: str, run_id: str, paths: Iterable[Path]) -> str:
    """Log the written files as artifacts of the sweep's parent run, in a folder of their own
    under ``report/`` (named by the time, UTC), and tag the run with that folder: the files of
    two reports (say, at other sparsity levels) never mix.

    Returns:
        The artifact folder (``report/20261207T191500Z``).

    Raises :class:`ConfigError` when the store refuses them (the files stay on disk).
    """
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = f"{stored_names.ARTIFACT_REPORT_FOLDER}/{stamp}"
    client = MlflowClient(tracking_uri)
    try:
        for path in paths:
            client.log_artifact(run_id, str(path), folder)
        client.set_tag(run_id, stored_names.TAG_REPORT_LATEST, folder)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise ConfigError(f"could not log the report to MLflow run {run_id}: {exc}") from None
    return folder

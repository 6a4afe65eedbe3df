"""Reading the stores: the trials of the Optuna study and their curves in MLflow.

Nothing is recomputed: trial states and parameters come from the study, whole curves (one
MLflow metric step per compression step) from the trials' runs, as tidy pandas frames.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from orchestrator import keys
from orchestrator.config import ConfigError, describe_params
from orchestrator.report.schema import METRICS, is_missing, plain
from orchestrator.tracking import check_reachable
from orchestrator.workspace import sqlite_file

__all__ = [
    "config_label",
    "label_steps",
    "objective_names",
    "open_tracking",
    "read_steps",
    "read_trials",
]


def open_tracking(study: optuna.Study, tracking_uri: str | None) -> tuple[Any, str]:
    """An ``MlflowClient`` on ``tracking_uri`` or the URI the sweep recorded, checked to answer.

    A SQLite store must already exist: opening a missing file would create an empty store and
    the report would find no curves instead of saying that the URI is wrong.
    """
    from mlflow import MlflowClient

    uri = tracking_uri or study.user_attrs.get(keys.STUDY_TRACKING_URI)
    if not uri:
        raise ConfigError(
            f"study '{study.study_name}' records no MLflow tracking URI (no sweep has run on "
            "it yet); pass --tracking-uri"
        )
    path = sqlite_file(uri)
    if path is not None and not path.exists():
        raise ConfigError(f"no MLflow tracking store at {uri} (the file {path} is missing)")
    check_reachable(uri)
    return MlflowClient(uri), uri


def objective_names(study: optuna.Study) -> list[str]:
    """The study's objective names: its metric names, else ``value`` or ``value0``, ``value1``."""
    names = study.metric_names
    if names:
        return list(names)
    count = len(study.directions)
    return ["value"] if count == 1 else [f"value{i}" for i in range(count)]


def read_trials(
    trials: Sequence[FrozenTrial], study: optuna.Study, params: Sequence[str]
) -> pd.DataFrame:
    """One row per trial of ``trials`` (of ``study``): number, state, seed, parameters,
    values, bookkeeping, the trial's key and the run whose result it reused."""
    names = objective_names(study)
    now = dt.datetime.now()
    rows = []
    for trial in trials:
        values = trial.values or [math.nan] * len(names)
        start, end = trial.datetime_start, trial.datetime_complete
        # A queued trial (or one claimed but not started) has only its enqueued parameters.
        chosen = trial.params or trial.system_attrs.get(keys.TRIAL_FIXED_PARAMS, {})
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "seed": trial.user_attrs.get(keys.TRIAL_SEED),
                **{path: chosen.get(path, math.nan) for path in params},
                **{f"value:{name}": value for name, value in zip(names, values, strict=True)},
                "reported_step": trial.user_attrs.get(keys.TRIAL_STEP),
                "datetime_start": start.isoformat() if start else None,
                "datetime_complete": end.isoformat() if end else None,
                "duration_s": (end - start).total_seconds() if start and end else math.nan,
                "elapsed_s": (now - start).total_seconds()
                if start and trial.state == TrialState.RUNNING
                else math.nan,
                "worker": trial.user_attrs.get(keys.TRIAL_WORKER),
                "device": trial.user_attrs.get(keys.TRIAL_DEVICE),
                keys.TRIAL_RUN_ID: trial.user_attrs.get(keys.TRIAL_RUN_ID),
                "retry_of": trial.system_attrs.get(keys.TRIAL_FAILED_TRIAL),
                "fail_reason": trial.user_attrs.get(keys.TRIAL_FAIL_REASON),
                keys.TRIAL_KEY: trial.user_attrs.get(keys.TRIAL_KEY),
                keys.TRIAL_REUSED_FROM: trial.user_attrs.get(keys.TRIAL_REUSED_FROM),
                "reused_trial": trial.user_attrs.get(keys.TRIAL_REUSED_TRIAL),
            }
        )
    return pd.DataFrame(rows)


def read_steps(client: Any, runs: Mapping[int, str]) -> tuple[pd.DataFrame, dict[int, str]]:
    """The whole curves of the trials' runs: one row per trial and step, a column per metric
    (:data:`METRICS`, then each layer's remaining fraction, ``remaining/<layer>``).

    Args:
        client: an ``MlflowClient`` on the sweep's tracking store.
        runs: trial numbers to MLflow run ids.

    Returns:
        The tidy frame and, per trial whose run could not be read, the reason.
    """
    from mlflow.exceptions import MlflowException

    records: list[tuple[int, str, int, float, int]] = []
    missing: dict[int, str] = {}
    layer_prefix = keys.layer_remaining("")
    layers: set[str] = set()
    for number, run_id in runs.items():
        try:
            logged = client.get_run(run_id).data.metrics
            own = [key for key in logged if key.startswith(layer_prefix)]
            layers.update(own)
            for key in (*METRICS, *own):
                history = client.get_metric_history(run_id, key)
                records += [(number, key, m.step, m.value, m.timestamp) for m in history]
        except MlflowException as exc:
            missing[number] = f"MLflow run {run_id} unreadable: {exc.message[:200]}"
    columns = ["trial", "step", *METRICS, *sorted(layers)]
    if not records:
        return pd.DataFrame(columns=columns), missing
    long = pd.DataFrame(records, columns=["trial", "key", "step", "value", "at"])
    long = long.sort_values("at", kind="stable")
    # A step logged twice (a retried batch) counts with its latest value.
    wide = long.pivot_table(
        index=["trial", "step"], columns="key", values="value", aggfunc="last"
    ).reset_index()
    wide.columns.name = None
    for key in METRICS:
        if key not in wide:
            wide[key] = math.nan
    return wide[columns].sort_values(["trial", "step"], ignore_index=True), missing


def label_steps(
    steps: pd.DataFrame, trials: pd.DataFrame, params: Sequence[str], fixed: Mapping[str, Any]
) -> pd.DataFrame:
    """``steps`` with each trial's state, seed, parameters and configuration label.

    ``fixed`` gives parameters that were not searched (the sweep's ``alds.rate`` when only
    other fields are), so every row says which ALDS rate it belongs to.
    """
    info = trials[["number", "state", "seed", *params]].rename(columns={"number": "trial"})
    labelled = steps.merge(info, on="trial", how="left")
    for path, value in fixed.items():
        if path not in labelled:
            labelled[path] = value
    labelled["config"] = [config_label(row, params) for _, row in labelled.iterrows()]
    return labelled


def config_label(row: pd.Series | Mapping[str, Any], params: Sequence[str]) -> str:
    """The configuration a trial ran (its searched parameters), as a short stable text;
    empty for a queued placeholder that has no parameters yet."""
    if any(is_missing(row[p]) for p in params):
        return ""
    return describe_params({p: plain(row[p]) for p in params}) or "default"

"""Reading the stores: the trials of the Optuna study and their curves in MLflow.

Nothing is recomputed: trial states and parameters come from the study, whole curves (one
MLflow metric step per compression step) from the trials' runs, as tidy pandas frames.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from orchestrator import curve, plan, stored_names
from orchestrator.config import ConfigError
from orchestrator.curve import POSITION
from orchestrator.report.histories import in_order, read_steps, steps_frame
from orchestrator.report.schema import is_missing, plain
from orchestrator.sweep_file import describe_params
from orchestrator.tracking.runs import check_reachable
from orchestrator.workspace import sqlite_file

__all__ = [
    "Curves",
    "config_label",
    "label_steps",
    "objective_names",
    "open_tracking",
    "read_trials",
    "twin_label",
]


def open_tracking(study: optuna.Study, tracking_uri: str | None) -> tuple[Any, str]:
    """An ``MlflowClient`` on ``tracking_uri`` or the URI the sweep recorded, checked to answer.

    A SQLite store must already exist: opening a missing file would create an empty store and
    the report would find no curves instead of saying that the URI is wrong.
    """
    from mlflow import MlflowClient

    uri = tracking_uri or study.user_attrs.get(stored_names.STUDY_TRACKING_URI)
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
        chosen = trial.params or trial.system_attrs.get(stored_names.TRIAL_FIXED_PARAMS, {})
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "seed": trial.user_attrs.get(stored_names.TRIAL_SEED),
                **{path: chosen.get(path, math.nan) for path in params},
                plan.CONTROL: chosen.get(plan.CONTROL),
                **{f"value:{name}": value for name, value in zip(names, values, strict=True)},
                "reported_step": trial.user_attrs.get(stored_names.TRIAL_STEP),
                "datetime_start": start.isoformat() if start else None,
                "datetime_complete": end.isoformat() if end else None,
                # A copy's own duration is the copying: its original's training stands for it.
                "duration_s": trial.user_attrs.get(stored_names.TRIAL_TRAINED_SECONDS)
                or ((end - start).total_seconds() if start and end else math.nan),
                "elapsed_s": (now - start).total_seconds()
                if start and trial.state == TrialState.RUNNING
                else math.nan,
                "worker": trial.user_attrs.get(stored_names.TRIAL_WORKER),
                "device": trial.user_attrs.get(stored_names.TRIAL_DEVICE),
                stored_names.TRIAL_RUN_ID: trial.user_attrs.get(stored_names.TRIAL_RUN_ID),
                "retry_of": trial.system_attrs.get(stored_names.TRIAL_FAILED_TRIAL),
                "fail_reason": trial.user_attrs.get(stored_names.TRIAL_FAIL_REASON),
                stored_names.TRIAL_KEY: trial.user_attrs.get(stored_names.TRIAL_KEY),
                stored_names.TRIAL_REUSED_FROM: trial.user_attrs.get(
                    stored_names.TRIAL_REUSED_FROM
                ),
                "reused_trial": trial.user_attrs.get(stored_names.TRIAL_REUSED_TRIAL),
            }
        )
    return pd.DataFrame(rows)


class Curves:
    """The steps of a study's trials, one row per trial and step, read as cheaply as the stores
    allow and kept across reads.

    A trial that has ended (complete, pruned or failed) kept its curve in the study, one record
    (:data:`stored_names.TRIAL_CURVE`) that comes with the trials themselves: no MLflow call.
    The rest (running trials, and trials that ended under a version that kept none) are read
    from their MLflow runs, in bulk (:func:`histories.read_steps`). An ended trial's curve never
    changes, so one instance held across reads (the sweep's parent, refreshing its figures)
    reads each once: a read costs the trials that changed since the last, not the sweep.
    """

    def __init__(self) -> None:
        self._ended = pd.DataFrame()  # the steps of the ended trials read so far
        self._read: set[int] = set()  # the trials whose steps are in it
        self._missing: dict[int, str] = {}  # ended trials whose run could not be read

    def read(
        self, trials: Sequence[FrozenTrial], runs: Mapping[int, str], client: Any
    ) -> tuple[pd.DataFrame, dict[int, str]]:
        """The steps of ``trials`` and, per trial whose curve is nowhere, the reason.

        Args:
            trials: the trials to report, of one study.
            runs: their MLflow run ids by trial number (those that have one).
            client: an ``MlflowClient`` on the sweep's tracking store.

        Returns:
            The frame of :func:`histories.read_steps`, and the unreadable trials' reasons.
        """
        kept = _Columns()
        ended: dict[int, str] = {}  # ended without a kept curve: from MLflow, once
        live: dict[int, str] = {}
        for trial in trials:
            number = trial.number
            if number in self._read:
                continue
            if trial.state in _ENDED:
                record = trial.system_attrs.get(stored_names.TRIAL_CURVE)
                if record is not None:
                    kept.add(number, curve.curve_record(record))
                    self._read.add(number)
                elif number in runs:
                    ended[number] = runs[number]
            elif number in runs:
                live[number] = runs[number]
        parts = [self._ended, kept.frame()]
        if ended:
            steps, missing = read_steps(client, ended)
            parts.append(steps)
            self._read.update(ended)
            self._missing.update(missing)
        self._ended = _combined(parts)
        steps, missing = read_steps(client, live) if live else (pd.DataFrame(), {})
        wanted = {trial.number for trial in trials}
        every = _combined([self._ended, steps])
        every = every[every["trial"].isin(wanted)].reset_index(drop=True)
        reasons = {n: why for n, why in {**self._missing, **missing}.items() if n in wanted}
        return every, reasons


_ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class _Columns:
    """Kept curves gathered column by column (a large sweep has hundreds of thousands of
    steps: a dict a step would cost more memory than the frame)."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {"trial": [], "step": []}
        self.length = 0

    def add(self, trial: int, record: Mapping[str, Any]) -> None:
        """One trial's kept curve (:func:`curve.curve_record`): its measurements, by step."""
        names, rows = record["columns"], record["rows"]
        if not rows:
            return
        self.columns["trial"] += [trial] * len(rows)
        for index, name in enumerate(names):
            if name in _NOT_MEASURED:
                continue
            if name not in self.columns:
                self.columns[name] = [None] * self.length
            self.columns[name] += [row[index] for row in rows]
        self.length += len(rows)
        for values in self.columns.values():
            if len(values) < self.length:
                values += [None] * (self.length - len(values))

    def frame(self) -> pd.DataFrame:
        """The steps as a frame (measurements as floats); of a step kept twice, the later."""
        if not self.length:
            return pd.DataFrame()
        frame = pd.DataFrame(
            {
                name: values if name in ("trial", "step") else np.array(values, dtype=float)
                for name, values in self.columns.items()
            }
        )
        return frame.drop_duplicates(["trial", "step"], keep="last")


_NOT_MEASURED = tuple(name for name in POSITION if name != "step")


def _combined(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Frames of steps as one, with the columns of :func:`histories.read_steps` in its order."""
    parts = [part for part in parts if not part.empty]
    if not parts:
        return steps_frame([])
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    return in_order(frame)


def label_steps(
    steps: pd.DataFrame, trials: pd.DataFrame, params: Sequence[str], fixed: Mapping[str, Any]
) -> pd.DataFrame:
    """``steps`` with each trial's state, seed, parameters and configuration label.

    ``fixed`` gives parameters that were not searched (the sweep's ``alds.rate`` when only
    other fields are), so every row says which ALDS rate it belongs to.
    """
    control = [plan.CONTROL] if plan.CONTROL in trials else []
    info = trials[["number", "state", "seed", *params, *control]].rename(
        columns={"number": "trial"}
    )
    for path, value in fixed.items():
        if path not in info:
            info[path] = value
    # Labelled per trial, not per step: a large sweep has hundreds of thousands of steps.
    info["config"] = [config_label(row, params) for row in info.to_dict("records")]
    return steps.merge(info, on="trial", how="left")


def config_label(row: pd.Series | Mapping[Hashable, Any], params: Sequence[str]) -> str:
    """The configuration a trial ran (its searched parameters, and its control where it is
    one), as a short stable text; empty for a queued placeholder that has no parameters yet."""
    if any(is_missing(row[p]) for p in params):
        return ""
    values = {p: plain(row[p]) for p in params}
    control = row.get(plan.CONTROL)
    if isinstance(control, str):
        values[plan.CONTROL] = control
    return describe_params(values) or "default"


def twin_label(row: pd.Series | Mapping[Hashable, Any], params: Sequence[str]) -> str:
    """A control trial's IMP-only twin's configuration label (:func:`config_label`)."""
    return config_label({**dict(row), plan.CONTROL: None}, params)

"""Curves from MLflow: the metric histories of trial runs, as one tidy frame.

A curve is one MLflow metric step per compression step, a history per metric. Read run by run
that is a call per run and metric (``get_run``, then ``get_metric_history`` for each of the
report's metrics and every ``remaining/<layer>`` key): 159 ms a trial over an MLflow server.
:func:`read_steps` reads them in bulk instead, by MLflow's own bulk call (the one its UI's
charts use, ``metrics/get-history-bulk``: the whole history of one metric for up to 100 runs),
so a batch of 100 runs costs one search for which runs exist and what they logged, and then
one call per metric. MLflow's client has no method for that call: it goes to the store the
client holds (a database store's ``get_metric_history_bulk``, a server's REST endpoint), and
where neither answers, run by run as before.

Which curves need MLflow at all is the report's business (:mod:`sources`): a trial that has
ended keeps its curve in the study.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from orchestrator import stored_names
from orchestrator.report.schema import METRICS
from orchestrator.tracking import mlflow_internals

logger = logging.getLogger(__name__)

__all__ = ["BULK_RUNS", "in_order", "read_steps", "steps_frame"]

BULK_RUNS = 100  # the most runs MLflow's bulk history call takes
_BULK_RESULTS = 25_000  # the most values it returns
_BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"

Record = tuple[int, str, int, float, int]  # trial, metric, step, value, timestamp (ms)
Bulk = Callable[[Sequence[str], str], list[tuple[str, int, float, int]]]


def read_steps(
    client: Any, runs: Mapping[int, str], *, bulk: bool = True
) -> tuple[pd.DataFrame, dict[int, str]]:
    """The whole curves of the trials' runs: one row per trial and step, a column per metric
    (:data:`METRICS`, then each layer's remaining fraction, ``remaining/<layer>``).

    Args:
        client: an ``MlflowClient`` on the sweep's tracking store.
        runs: trial numbers to MLflow run ids.
        bulk: read in bulk where the store offers it (else, and with ``False``, run by run).

    Returns:
        The tidy frame and, per trial whose run could not be read, the reason.
    """
    fetch = _bulk_call(client) if bulk and runs else None
    try:
        if fetch is not None:
            records, missing = _in_bulk(client, runs, fetch)
            return steps_frame(records), missing
    except _NoBulkCall:
        logger.info("the MLflow server has no bulk history call: reading run by run")
    records, missing = _per_run(client, runs)
    return steps_frame(records), missing


class _NoBulkCall(Exception):
    """The tracking server does not know the bulk call (an older MLflow)."""


def steps_frame(records: Iterable[Record]) -> pd.DataFrame:
    """Records of ``(trial, metric, step, value, timestamp)`` as the tidy frame of
    :func:`read_steps`: of a step logged twice (a retried batch) the latest value counts."""
    long = pd.DataFrame(list(records), columns=["trial", "key", "step", "value", "at"])
    if long.empty:
        return pd.DataFrame(columns=["trial", "step", *METRICS])
    long = long.sort_values(["at", "value"], kind="stable")
    wide = long.pivot_table(
        index=["trial", "step"], columns="key", values="value", aggfunc="last"
    ).reset_index()
    wide.columns.name = None
    return in_order(wide)


def in_order(wide: pd.DataFrame) -> pd.DataFrame:
    """A frame of steps as the report reads it: ``trial``, ``step``, every metric of
    :data:`METRICS` (NaN where none was logged), then the layers' columns by name; rows by
    trial and step."""
    layers = sorted(set(wide.columns) - {"trial", "step", *METRICS})
    for key in METRICS:
        if key not in wide:
            wide[key] = math.nan
    return wide[["trial", "step", *METRICS, *layers]].sort_values(
        ["trial", "step"], ignore_index=True
    )


def _own_keys(metrics: Iterable[str]) -> list[str]:
    prefix = stored_names.layer_remaining("")
    return [key for key in metrics if key.startswith(prefix)]


def _unreadable(run_id: str, exc: Any) -> str:
    return f"MLflow run {run_id} unreadable: {exc.message[:200]}"


def _per_run(client: Any, runs: Mapping[int, str]) -> tuple[list[Record], dict[int, str]]:
    from mlflow.exceptions import MlflowException

    records: list[Record] = []
    missing: dict[int, str] = {}
    for number, run_id in runs.items():
        try:
            logged = client.get_run(run_id).data.metrics
            for key in (*METRICS, *_own_keys(logged)):
                history = client.get_metric_history(run_id, key)
                records += [(number, key, m.step, m.value, m.timestamp) for m in history]
        except MlflowException as exc:
            missing[number] = _unreadable(run_id, exc)
    return records, missing


def _in_bulk(
    client: Any, runs: Mapping[int, str], fetch: Bulk
) -> tuple[list[Record], dict[int, str]]:
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    numbers: dict[str, list[int]] = {}
    for number, run_id in runs.items():
        numbers.setdefault(run_id, []).append(number)
    experiments = [e.experiment_id for e in _all_experiments(client)]
    records: list[Record] = []
    missing: dict[int, str] = {}
    ids = list(numbers)
    for start in range(0, len(ids), BULK_RUNS):
        batch = ids[start : start + BULK_RUNS]
        quoted = ", ".join(f"'{run_id}'" for run_id in batch)
        found = {
            run.info.run_id: run.data.metrics
            for run in client.search_runs(
                experiments,
                f"attributes.run_id IN ({quoted})",
                run_view_type=ViewType.ALL,
                max_results=BULK_RUNS,
            )
        }
        for run_id in batch:
            if run_id not in found:  # its own error, as the run-by-run read says it
                try:
                    client.get_run(run_id)
                except MlflowException as exc:
                    for number in numbers[run_id]:
                        missing[number] = _unreadable(run_id, exc)
        readable = [run_id for run_id in batch if run_id in found]
        every = sorted({key for run_id in readable for key in _own_keys(found[run_id])})
        for key in (*METRICS, *every):
            for run_id, step, value, at in _fetch_all(fetch, readable, key):
                records += [(number, key, step, value, at) for number in numbers[run_id]]
    return records, missing


def _fetch_all(fetch: Bulk, run_ids: Sequence[str], key: str) -> list[tuple[str, int, float, int]]:
    """Every value of ``key`` of the runs: a batch whose answer may have been cut at the call's
    limit is read again in halves."""
    if not run_ids:
        return []
    values = fetch(run_ids, key)
    if len(values) < _BULK_RESULTS or len(run_ids) == 1:
        return values
    middle = len(run_ids) // 2
    return _fetch_all(fetch, run_ids[:middle], key) + _fetch_all(fetch, run_ids[middle:], key)


def _all_experiments(client: Any) -> list[Any]:
    from mlflow.entities import ViewType

    found, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def _bulk_call(client: Any) -> Bulk | None:
    """The store's bulk history call, or None where it has none."""
    store = mlflow_internals.tracking_store(client)
    if hasattr(store, "get_metric_history_bulk"):

        def from_database(run_ids: Sequence[str], key: str) -> list[tuple[str, int, float, int]]:
            found = store.get_metric_history_bulk(list(run_ids), key, _BULK_RESULTS)
            return [(m.run_id, m.step, m.value, m.timestamp) for m in found]

        return from_database
    if hasattr(store, "get_host_creds"):
        return _from_server(store.get_host_creds)
    return None


def _from_server(credentials: Callable[[], Any]) -> Bulk:
    from mlflow.utils.rest_utils import http_request

    def fetch(run_ids: Sequence[str], key: str) -> list[tuple[str, int, float, int]]:
        response = http_request(
            credentials(),
            _BULK_ENDPOINT,
            "GET",
            params={"run_id": list(run_ids), "metric_key": key, "max_results": _BULK_RESULTS},
        )
        if response.status_code == 404:
            raise _NoBulkCall(_BULK_ENDPOINT)
        response.raise_for_status()
        return [
            (m["run_id"], int(m.get("step", 0)), float(m["value"]), int(m["timestamp"]))
            for m in response.json().get("metrics", [])
        ]

    return fetch

"""Every private name of MLflow that the orchestrator uses, behind one small function each.

MLflow promises nothing about a name that starts with an underscore. Behind this module, an
upgrade that removes or changes one fails in one place, and in its test
(``tests/test_internals.py`` exercises each function against the installed MLflow and names the
function to mend). No other module of ``orchestrator/`` touches a private name of MLflow; that
test checks this too. Each comment says why no public API serves, as of MLflow 3.17.

MLflow is not imported here: ``status`` and ``validate`` must not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["tracking_store"]


def tracking_store(client: MlflowClient) -> Any:
    """The tracking store ``client`` talks to: a database store (``SqlAlchemyStore``, with
    ``get_metric_history_bulk``), a server's ``RestStore`` (with ``get_host_creds``), or another.
    """
    # ``MlflowClient._tracking_client.store``: the client has no public accessor for its store,
    # and no bulk method of its own: ``get_metric_history`` reads one run's metric a call, while
    # the store's ``get_metric_history_bulk`` (the server's ``metrics/get-history-bulk``, what
    # MLflow's UI charts use) reads one metric of up to 100 runs at once.
    return client._tracking_client.store

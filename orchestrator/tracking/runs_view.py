"""The view MLflow's runs page opens a sweep with: its trials by ALDS rate, and charts of
accuracy against the weights remaining.

MLflow keeps a runs page's columns and charts in the browser (localStorage), except for a
*shared view*: the page ``runs?viewStateShareKey=KEY`` loads the JSON of the experiment tag
``mlflow.sharedViewState.KEY``, which is what the UI's "Share" button writes. The sweep writes
one when it creates its experiment and links it from the experiment's description, so the
comparison is one click from the experiment page on any browser. The keys are MLflow 3.17's
persisted search facets and chart state (read from its bundled JavaScript); a UI that does not
know a key ignores it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from orchestrator import stored_names
from orchestrator.plan import ALDS_RATE

__all__ = [
    "CHART_SECTION",
    "LAYER_SECTION",
    "RUN_NAME_COLUMN",
    "VIEW_KEY",
    "view_link",
    "view_state",
]

VIEW_KEY = "orchestrate"
CHART_SECTION = "ALDS rate vs accuracy"
LAYER_SECTION = "Weights remaining per layer"
RUN_NAME_COLUMN = "attributes.`Run Name`"


def view_link(experiment_id: str, *, charts: bool = True) -> str:
    """The page of the view, relative to the UI's root (``#/experiments/...``)."""
    query = {"viewStateShareKey": VIEW_KEY, "workflowType": "machine_learning"}
    if charts:
        query["compareRunsMode"] = "CHART"
    return f"#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"


def _line(metric: str, x_metric: str | None = None, section: str = VIEW_KEY) -> dict[str, object]:
    """A line chart of ``metric`` against the step, or against another metric."""
    return {
        "uuid": f"orchestrate-{metric}-vs-{x_metric or 'step'}",
        "type": "LINE",
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
        "runsCountToCompare": 100,
        "metricKey": metric,
        "lineSmoothness": 0,
        "xAxisScaleType": "linear",
        "scaleType": "linear",
        "xAxisKey": "metric" if x_metric else "step",
        "selectedXAxisMetricKey": x_metric or "",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": False,
        "useGlobalLineSmoothing": False,
    }


def view_state(searched: Sequence[str], layers: Sequence[str] = ()) -> dict[str, object]:
    """The shared view of a sweep's trials: the searched fields as columns (the ALDS rate
    first), the rate against accuracy, accuracy and effective size against weights remaining.

    Args:
        searched: the searched fields.
        layers: the layers whose remaining fraction the trials log (known once a trial has
            run); each gets a chart against the weights remaining in a section of its own,
            which shows whether ALDS changes how IMP spreads its pruning over the layers.

    Returns:
        The JSON document of the experiment tag.
    """
    params = list(dict.fromkeys([ALDS_RATE, *searched]))
    columns = [
        *(f"params.`{path}`" for path in params),
        "metrics.`accuracy`",
        "metrics.`remaining`",
        "metrics.`params_effective`",
        f"tags.`{stored_names.TAG_ARM}`",
    ]
    charts: list[dict[str, object]] = [
        {
            "uuid": "orchestrate-rate-vs-accuracy",
            "type": "SCATTER",
            "metricSectionId": VIEW_KEY,
            "deleted": False,
            "isGenerated": False,
            "runsCountToCompare": 100,
            "xaxis": {"key": ALDS_RATE, "type": "PARAM"},
            "yaxis": {"key": "accuracy", "type": "METRIC"},
        },
        _line("accuracy", "remaining"),
        _line("params_effective", "remaining"),
        *(
            _line(stored_names.layer_remaining(layer), "remaining", LAYER_SECTION)
            for layer in layers
        ),
    ]
    sections = [(VIEW_KEY, CHART_SECTION)] + ([(LAYER_SECTION, LAYER_SECTION)] if layers else [])
    return {
        "searchFilter": f"tags.`{stored_names.TAG_ROLE}` = '{stored_names.ROLE_TRIAL}'",
        "orderByKey": columns[0],
        "orderByAsc": True,
        "selectedColumns": columns,
        # Widths apply only to columns listed in columnOrder; the order puts the searched
        # fields next to the run name and accuracy next to them.
        "columnOrder": [RUN_NAME_COLUMN, "runDateAndNestInfo", "duration", *columns],
        "columnWidths": {RUN_NAME_COLUMN: 270},
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": charts,
        "compareRunSections": [
            {"uuid": uuid, "name": name, "display": True, "isReordered": False}
            for uuid, name in sections
        ],
        "isAccordionReordered": True,
    }

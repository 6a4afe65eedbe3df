"""Reading a report's own export back: the trials and steps an earlier ``orchestrate report``
wrote (``trials.csv``, ``steps.csv``), so its tables can be computed again (new statistics, a
margin, a family of sweeps) without the study's database or MLflow store.

CSV keeps every float at full precision (pandas writes the shortest text that reads back to
the same number), so a table computed from the export equals the one computed from the stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from orchestrator import plan
from orchestrator.config import ConfigError

__all__ = ["STEPS_FILE", "TRIALS_FILE", "read_export"]

TRIALS_FILE = "trials.csv"
STEPS_FILE = "steps.csv"

# What the trials table adds to the trials as read (describe.trials_table, the configuration
# label): computed again from the steps.
_DERIVED = (
    "last_step",
    "accuracy",
    "sparsity",
    "remaining",
    "params_nonzero",
    "compression_ratio",
    "note",
    "config",
)


def read_export(folder: Path, params: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials and the unlabelled steps of the report exported to ``folder``.

    Args:
        folder: a folder an earlier report wrote, with its ``trials.csv`` and ``steps.csv``.
        params: the sweep's searched parameters.

    Returns:
        The trials (as ``sources.read_trials`` gives them, with an empty ``missing``) and
        their steps (as ``sources.Curves.read``, before ``sources.label_steps``).

    Raises:
        ConfigError: a file is missing or lacks a column the tables need, naming it.
    """
    frames = {}
    for name, needed in ((TRIALS_FILE, ("number", "state", "seed")), (STEPS_FILE, ("trial",))):
        path = folder / name
        if not path.is_file():
            raise ConfigError(
                f"no {name} in {folder}: --from-export reads the files an earlier report "
                "wrote there (with the csv format)"
            )
        frame = pd.read_csv(path, low_memory=False)
        lacking = [c for c in (*needed, *params) if c not in frame]
        if lacking:
            raise ConfigError(f"{path} has no column {', '.join(lacking)}: not this sweep's")
        frames[name] = frame
    trials = frames[TRIALS_FILE].drop(columns=list(_DERIVED), errors="ignore")
    if plan.CONTROL not in trials:
        trials[plan.CONTROL] = None
    trials[plan.CONTROL] = (
        trials[plan.CONTROL].astype(object).where(trials[plan.CONTROL].notna(), None)
    )
    trials["missing"] = None
    labels = ["state", "seed", *params, plan.CONTROL]
    steps = frames[STEPS_FILE].drop(columns=labels, errors="ignore")
    return trials, steps

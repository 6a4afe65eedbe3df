"""A sweep's results in a notebook: :func:`open` → :class:`SweepResults`.

    import orchestrator
    results = orchestrator.open("sweeps/quickstart.yaml")
    results.trials                 # one row per trial (pandas)
    results.table("endpoint")      # any table orchestrate report writes
    results.figure("accuracy_vs_remaining")

The tables and figures are ``orchestrate report``'s own (``report.build``: the study's trials
and kept curves in one read, MLflow only for what the study does not keep), so
``open(...).table("endpoint")`` is the ``endpoint.csv`` the report writes. Nothing is written:
no report folder, no MLflow artifact, no storage file created.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import ConfigError
from orchestrator.results.studies import open_study

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.figure import Figure

    from orchestrator.config import SweepConfig
    from orchestrator.report import Report

__all__ = ["SweepResults", "open"]

_YAML = (".yaml", ".yml")


def open(
    sweep: str | Path,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    margin: float | None = None,
    levels: Sequence[float] | None = None,
) -> SweepResults:
    """The results of a running or finished sweep, read-only.

    Args:
        sweep: its YAML file, or its study's name (then ``storage`` is needed).
        storage: the Optuna storage URL; default: the sweep file's own (its workspace's).
        tracking_uri: the MLflow store; default: the one the sweep recorded.
        margin: the equivalence margin in accuracy points; default: the sweep's
            ``report.margin``.
        levels: the sparsities of the ``at_sparsity`` table; default: the report's (those
            of ``report.LEVELS`` the sweep's schedule reaches).

    Returns:
        A :class:`SweepResults`; nothing is read until a table or figure is asked for.

    Raises:
        ConfigError: a missing or bad YAML, a storage whose file does not exist or that
            cannot be opened, a study it does not hold: the messages ``orchestrate report``
            gives.
    """
    text = str(sweep)
    if text.endswith(_YAML) or Path(text).is_file():
        study, config, url = open_study(Path(text), None, storage)
    elif storage is None:
        raise ConfigError(f"'{text}' is no sweep file: give its YAML, or the study with storage=")
    else:
        study, config, url = open_study(None, text, storage)
    return SweepResults(study, config, url, tracking_uri, margin, levels)


class SweepResults:
    """A sweep's trials, curves, tables and figures, computed once on first use.

    Attributes:
        study: the Optuna study (read it, do not change it).
        config: the sweep's config as the study holds it.
        storage: the storage URL it was read from.
    """

    def __init__(
        self,
        study: optuna.Study,
        config: SweepConfig,
        storage: str,
        tracking_uri: str | None = None,
        margin: float | None = None,
        levels: Sequence[float] | None = None,
    ) -> None:
        self.study, self.config, self.storage = study, config, storage
        self._tracking_uri, self._margin, self._levels = tracking_uri, margin, levels

    def __repr__(self) -> str:
        return f"SweepResults('{self.config.name}' in {self.storage})"

    @functools.cached_property
    def report(self) -> Report:
        """Every table and figure of ``orchestrate report``, built on first use."""
        from orchestrator import report
        from orchestrator.report.options import levels_within_reach

        levels = levels_within_reach(self.config) if self._levels is None else tuple(self._levels)
        margin = None if self._margin is None else self._margin / 100
        return report.build(
            self.study, self.config, tracking_uri=self._tracking_uri, levels=levels, margin=margin
        )

    def reload(self) -> SweepResults:
        """The same sweep read again (a running sweep has finished more trials since)."""
        return SweepResults(
            self.study, self.config, self.storage, self._tracking_uri, self._margin, self._levels
        )

    @property
    def tables(self) -> list[str]:
        """The names of the tables this sweep's report has."""
        return list(self.report.tables)

    @property
    def figures(self) -> list[str]:
        """The names of the figures this sweep's report draws."""
        return list(self.report.figures)

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial the sweep asks for: its state, parameters, seed and values."""
        return self.table("trials")

    @property
    def steps(self) -> pd.DataFrame:
        """One row per measured step of every trial: the curves, long form."""
        return self.table("steps")

    def table(self, name: str) -> pd.DataFrame:
        """The report's table ``name`` (its ``<name>.csv``), a copy to change at will.

        Raises:
            KeyError: no such table, naming those there are.
        """
        if name not in self.report.tables:
            raise KeyError(f"no table '{name}' in this report; tables: {', '.join(self.tables)}")
        return self.report.tables[name].copy()

    def figure(self, name: str) -> Figure:
        """The report's figure ``name`` (its ``<name>.png``), a matplotlib figure.

        Raises:
            KeyError: no such figure, naming those there are.
        """
        if name not in self.report.figures:
            known = ", ".join(self.figures)
            raise KeyError(f"no figure '{name}' in this report; figures: {known}")
        return self.report.figures[name]

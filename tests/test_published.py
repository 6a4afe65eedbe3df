"""The published reports (docs/results/*) agree with themselves.

Each is computed again from its own export (``report.rebuild``, the steps.csv and trials.csv it
published) with the code as it is, and every table is checked row by row: a verdict says a
difference exactly where its adjusted p is below 0.05 and its family-wise interval excludes
zero, and every "equivalent" verdict is recomputed here with scipy alone from the row's mean,
spread and seeds (TOST at 0.05/m over the table's family), independently of the report's code.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from orchestrator import report as reports
from orchestrator.sweep_file import load_config

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = sorted(
    path.name
    for path in (ROOT / "docs" / "results").iterdir()
    if (path / "steps.csv").is_file() and (ROOT / "sweeps" / f"{path.name}.yaml").is_file()
)
DIFFERENCE = {"ALDS better", "ALDS worse", "control better", "ticket better"}
DIFFERENCE |= {"ALDS higher", "ALDS lower", "ALDS later", "ALDS earlier"}


def _judged_parts(table: pd.DataFrame) -> list[pd.DataFrame]:
    """A table's judged columns as frames of plain names (``magnitudes`` judges two tenths)."""
    prefixes = [c.removesuffix("p_adjusted") for c in map(str, table) if c.endswith("p_adjusted")]
    parts = []
    for prefix in prefixes:
        named = {c: c.removeprefix(prefix) for c in map(str, table) if c.startswith(prefix)}
        part = table[list(named)].rename(columns=named)
        parts.append(part.join(table[["paired_n"]]) if "paired_n" not in part else part)
    return parts


@functools.cache
def _rebuilt(sweep: str, levels: tuple[float, ...] | None = None) -> reports.Report:
    """A published report computed again from its export, once per test session."""
    config = load_config(ROOT / "sweeps" / f"{sweep}.yaml")
    folder = ROOT / "docs" / "results" / sweep
    return reports.rebuild(folder, config, **({"levels": levels} if levels else {}))


def test_the_published_reports_are_found() -> None:
    assert len(PUBLISHED) >= 4


@pytest.mark.parametrize("sweep", PUBLISHED)
def test_no_published_verdict_disagrees_with_its_own_numbers(sweep: str) -> None:
    config = load_config(ROOT / "sweeps" / f"{sweep}.yaml")
    margin = config.report.margin / 100 if config.report.margin is not None else None
    result = _rebuilt(sweep, _published_levels(sweep))
    checked = 0
    for name, table in result.tables.items():
        for part in _judged_parts(table):
            said = part["verdict"].fillna("").astype(str)
            different = said.isin(DIFFERENCE)
            below = part["p_adjusted"] < 0.05
            excludes = (part["adjusted_ci_low"] > 0) | (part["adjusted_ci_high"] < 0)
            assert (different == below).all(), f"{sweep} {name}: verdict against its p"
            assert (different == excludes).all(), f"{sweep} {name}: verdict against its interval"
            checked += len(part)
            if margin is None or "p_equivalence_adjusted" not in part:
                continue
            members = part["p_adjusted"].notna().sum()
            for row in part[said.str.startswith("equivalent")].to_dict("records"):
                n, mean, std = int(row["paired_n"]), row["difference_mean"], row["difference_std"]
                half = stats.t.ppf(1 - 0.05 / members, n - 1) * std / math.sqrt(n)
                assert -margin < mean - half and mean + half < margin, f"{sweep} {name}: {row}"
    assert checked > 0


@pytest.mark.parametrize("sweep", PUBLISHED)
def test_the_published_tables_are_what_the_code_computes(sweep: str) -> None:
    """Republished after every change of the statistics: each published verdict and adjusted
    p is the one the code gives the published steps."""
    folder = ROOT / "docs" / "results" / sweep
    result = _rebuilt(sweep, _published_levels(sweep))
    for name, table in result.tables.items():
        judged = [c for c in map(str, table) if c.endswith(("verdict", "p_adjusted"))]
        if not judged or not (folder / f"{name}.csv").is_file():
            continue
        published = pd.read_csv(folder / f"{name}.csv")
        assert set(judged) <= set(published.columns), f"{sweep} {name}: republish it"
        for column in judged:
            ours, theirs = table[column].reset_index(drop=True), published[column]
            if column.endswith("verdict"):
                ours, theirs = (v.astype(object).where(v.notna(), "") for v in (ours, theirs))
            pd.testing.assert_series_equal(
                theirs, ours, check_dtype=False, check_names=False, obj=f"{sweep} {name}.{column}"
            )


def test_the_tables_quoted_in_results_md_are_the_published_ones() -> None:
    # docs/results.md quotes its tables through benchmarks/results_tables.py, rounded once.
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "results_tables.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, "run benchmarks/results_tables.py: " + result.stderr[-2000:]


def _published_levels(sweep: str) -> tuple[float, ...]:
    """The sparsities a report was published at (the global sweeps' reach 99%)."""
    at = pd.read_csv(ROOT / "docs" / "results" / sweep / "at_sparsity.csv")
    return tuple(float(level) for level in at["sparsity"].unique())

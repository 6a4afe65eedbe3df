"""Several sweeps read as one answer: their primary endpoints judged as one family.

Each sweep's report adjusts its own tables within the sweep. A claim read across sweeps (the
results' headline) is a claim about all their primary endpoints at once, so
:func:`family_table` judges them together (:func:`statistics.judge` over every row of every
sweep's endpoint table), and :func:`sensitivity_table` shows how the verdicts move with the
equivalence margin. :func:`write_family` writes both as ``family.*`` and ``sensitivity.*``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from orchestrator.config import ConfigError
from orchestrator.report import statistics
from orchestrator.report.render import cells, latex_table, markdown_table, write_data
from orchestrator.report.schema import NUMERIC, Column
from orchestrator.report.tables import judgement_columns

__all__ = ["MARGINS", "family_table", "one_margin", "sensitivity_table", "write_family"]

MARGINS = (0.0025, 0.005, 0.01)  # the sensitivity table's margins: ±0.25, ±0.5, ±1 point

# An endpoint row as its sweep computed it, before any judgement.
_ENDPOINT = [
    "config",
    "baseline",
    "sparsity_low",
    "sparsity_high",
    "auc_mean",
    "baseline_auc_mean",
    "difference_mean",
    "difference_std",
    "difference_ci_low",
    "difference_ci_high",
    "paired_n",
]


def _stacked(endpoints: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every sweep's endpoint rows in one frame, each named by its ``sweep``."""
    parts = [
        table[[c for c in _ENDPOINT if c in table]].assign(sweep=sweep)
        for sweep, table in endpoints.items()
    ]
    if not parts:
        return pd.DataFrame(columns=["sweep", *_ENDPOINT])
    stacked = pd.concat(parts, ignore_index=True)
    return stacked[["sweep", *[c for c in stacked if c != "sweep"]]]


def family_table(endpoints: Mapping[str, pd.DataFrame], margin: float | None) -> pd.DataFrame:
    """The primary endpoints of several sweeps, judged as one family.

    Args:
        endpoints: each sweep's endpoint table (``compare.endpoint_table``), by sweep name.
        margin: the equivalence margin, in accuracy; None tests none.

    Returns:
        One row per sweep and ALDS configuration: its endpoint and the columns of
        :func:`statistics.judge`, adjusted over every row that can carry a verdict.
    """
    stacked = _stacked(endpoints)
    if stacked.empty:
        return stacked.reindex(columns=[*stacked.columns, *statistics.judged_columns(margin)])
    return stacked.join(statistics.judge(stacked, margin))


def sensitivity_table(
    endpoints: Mapping[str, pd.DataFrame], margins: Sequence[float] = MARGINS
) -> pd.DataFrame:
    """The family's verdicts at several equivalence margins (how much the answer rests on the
    margin): one ``verdict ±X pt`` column per margin, beside the family-wise bound."""
    stacked = _stacked(endpoints)
    table = stacked[["sweep", "config", "difference_mean", "paired_n"]].copy()
    if stacked.empty:
        return table
    for margin in margins:
        judged = statistics.judge(stacked, margin)
        table[_verdict_at(margin)] = judged["verdict"]
    # The bound does not depend on the margin.
    table.insert(4, "equivalence_bound", judged["equivalence_bound"])
    return table


def one_margin(margins: set[float | None]) -> float | None:
    """The one margin a family is judged with, from its sweeps' margins (in accuracy).

    Raises:
        ConfigError: the sweeps declare different margins.
    """
    if len(margins) > 1:
        shown = ", ".join(sorted("none" if m is None else f"±{100 * m:g} pt" for m in margins))
        raise ConfigError(
            f"the sweeps declare different report.margin ({shown}): one family is judged with "
            "one margin, give --margin"
        )
    return next(iter(margins), None)


def _verdict_at(margin: float) -> str:
    return f"verdict ±{100 * margin:g} pt"


def _family_columns(margin: float | None) -> list[Column]:
    return [
        Column("sweep", "sweep"),
        Column("configuration", "config"),
        Column("from sparsity (%)", "sparsity_low", "pct"),
        Column("to sparsity (%)", "sparsity_high", "pct"),
        Column("Δ (pt)", "difference_mean", "points", "difference_std"),
        *judgement_columns(margin),
        Column("seeds", "paired_n", "int"),
    ]


def _sensitivity_columns(margins: Sequence[float]) -> list[Column]:
    return [
        Column("sweep", "sweep"),
        Column("configuration", "config"),
        Column("Δ (pt)", "difference_mean", "points"),
        Column("differences beyond (±pt) excluded", "equivalence_bound", "pct"),
        *[Column(_verdict_at(m), _verdict_at(m)) for m in margins],
    ]


def write_family(
    endpoints: Mapping[str, pd.DataFrame],
    output: Path,
    formats: Sequence[str],
    margin: float | None,
    margins: Sequence[float] = MARGINS,
) -> list[Path]:
    """Write the family and sensitivity tables of ``endpoints`` into ``output``.

    Args:
        endpoints: each sweep's endpoint table, by sweep name.
        output: the folder (created).
        formats: of csv, json, latex and md (``family.md`` holds both tables); html has no
            family page.
        margin: the equivalence margin the family is judged with, in accuracy.
        margins: the sensitivity table's margins.

    Returns:
        The files written.
    """
    output.mkdir(parents=True, exist_ok=True)
    shown = {
        "family": (family_table(endpoints, margin), _family_columns(margin)),
        "sensitivity": (sensitivity_table(endpoints, margins), _sensitivity_columns(margins)),
    }
    written = []
    for name, (table, columns) in shown.items():
        written += write_data(table, output / name, formats)
        if "latex" in formats:
            paper = [c for c in columns if c.paper]
            (output / f"{name}.tex").write_text(
                latex_table(cells(table, paper), [c.kind in NUMERIC for c in paper])
            )
            written.append(output / f"{name}.tex")
    if "md" in formats:
        written.append(output / "family.md")
        written[-1].write_text(_markdown(shown, endpoints, margin))
    return written


def _markdown(
    shown: Mapping[str, tuple[pd.DataFrame, list[Column]]],
    endpoints: Mapping[str, pd.DataFrame],
    margin: float | None,
) -> str:
    family, columns = shown["family"]
    members = int(family["family_size"].max()) if len(family) else 0
    lines = [
        f"# The primary endpoints of {len(endpoints)} sweeps, as one family",
        "",
        f"Sweeps: {', '.join(f'`{name}`' for name in endpoints)}. The {members} endpoints that "
        "can carry a verdict are adjusted together (Bonferroni: each test at 0.05/"
        f"{members}); each sweep's own report adjusts within the sweep only. Equivalence "
        + ("is not tested (no margin)." if margin is None else f"margin ±{100 * margin:g} pt."),
        "",
        markdown_table(cells(family, columns), [c.kind in NUMERIC for c in columns]),
        "",
        "## The verdicts at other margins",
        "",
    ]
    table, columns = shown["sensitivity"]
    lines += [markdown_table(cells(table, columns), [c.kind in NUMERIC for c in columns]), ""]
    return "\n".join(lines)

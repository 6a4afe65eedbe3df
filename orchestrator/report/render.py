"""Presentation: the report's tables as rounded text, and the files they are written to.

CSV and JSON hold every table complete and unrounded; LaTeX, Markdown and HTML show the
columns each table's entry declares (``tables.TABLES``) as ``mean ± std`` text, in percent
and points.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from orchestrator.report.figures import FIGURES
from orchestrator.report.schema import (
    NUMERIC,
    Column,
    Report,
    is_missing,
    param_text,
    shorten,
)
from orchestrator.report.tables import TABLES, table_spec

if TYPE_CHECKING:
    from compression.alds import AldsPlan

__all__ = [
    "cells",
    "latex_escape",
    "latex_table",
    "markdown_table",
    "plan_markdown",
    "present",
    "write",
    "write_data",
    "write_json",
]


# --------------------------------------------------------------------------- cells


def _number(value: Any, kind: str) -> str:
    match kind:
        case "pct":
            return f"{100 * value:.2f}"
        case "points":
            return f"{100 * value:+.2f}"
        case "int":
            return f"{round(value):,}"
        case "ratio":
            return f"{value:.2f}"
        case "p":
            return f"{value:.3g}"
        case "seconds":
            return f"{value:.0f}"
        case "param":
            return param_text(value)
        case "flag":
            return "yes" if value else "no"
    return str(value)


def _cell(row: Mapping[Hashable, Any], column: Column) -> str:
    value = row.get(column.source)
    if is_missing(value) or value == "":
        return "–"
    text = shorten(_number(value, column.kind), column.limit)
    if column.upper:
        upper = row.get(column.upper)
        return "–" if is_missing(upper) else f"[{text}, {_number(upper, column.kind)}]"
    spread = row.get(column.std) if column.std else None
    if spread is not None and not is_missing(spread):
        text += f" ± {_number(spread, 'pct' if column.kind == 'points' else column.kind)}"
    if column.bound and not is_missing(row.get(column.bound)) and bool(row.get(column.bound)):
        text = "≥ " + text
    return text


def _columns(name: str, report: Report, paper: bool) -> list[Column]:
    spec = table_spec(name)
    if spec is None:
        raise ValueError(f"no presentation for table '{name}'")
    return [c for c in spec.shown(report) if c.paper or not paper]


def present(
    report: Report, name: str, *, paper: bool = False, rows: int | None = None
) -> pd.DataFrame:
    """A table as rounded text cells with ``mean ± std``, ready to paste.

    ``paper`` drops the columns a paper has no use for (run ids, notes); ``rows`` keeps only
    the first rows.
    """
    columns = _columns(name, report, paper)
    table = report.tables[name]
    if rows is not None:
        table = table.head(rows)
    arms = [c.source for c in columns if c.kind == "arm"]
    if arms:
        named = {s: table[s].map(lambda c: report.names.get(c, c)) for s in arms}
        table = table.assign(**named)
    return cells(table, columns)


def cells(table: pd.DataFrame, columns: Sequence[Column]) -> pd.DataFrame:
    """The ``columns`` of ``table`` as rounded text cells, headed by their headers.

    Args:
        table: a computed table.
        columns: the columns to show, each naming its source column in ``table``.

    Returns:
        One text cell per row and column.
    """
    rows = [[_cell(row, c) for c in columns] for row in table.to_dict("records")]
    return pd.DataFrame(rows, columns=[c.header for c in columns], dtype=object)


def _aligned(name: str, report: Report, paper: bool) -> list[bool]:
    return [c.kind in NUMERIC for c in _columns(name, report, paper)]


# --------------------------------------------------------------------------- table formats


def markdown_table(table: pd.DataFrame, numeric: Sequence[bool]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned."""

    def line(cells: Iterable[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if right else "---" for right in numeric) + "|"
    return "\n".join([line(table.columns), rule, *(line(row) for row in table.to_numpy())])


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
    "–": "--",
    "≥": r"$\geq$",
    "…": r"\ldots{}",
}


def latex_escape(text: str) -> str:
    """``text`` safe in a LaTeX tabular (pdfLaTeX: the report's symbols as math)."""
    return "".join(_LATEX.get(char, char) for char in text)


def latex_table(table: pd.DataFrame, numeric: Sequence[bool]) -> str:
    """A booktabs ``tabular`` fragment to ``\\input`` in a paper."""
    spec = "".join("r" if right else "l" for right in numeric)
    # Written directly: pandas' to_latex goes through a template engine, seconds on the
    # tables of a sweep of thousands of trials.
    header = " & ".join(latex_escape(str(c)) for c in table.columns)
    rows = [" & ".join(latex_escape(str(v)) for v in row) for row in table.to_numpy()]
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", header + " \\\\", "\\midrule"]
    lines += [row + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def write_json(table: pd.DataFrame, path: Path, chunk: int = 10_000) -> None:
    """The rows as a JSON list of objects, floats exact (pandas' writer keeps 15 digits),
    missing values ``null``; written a chunk of rows at a time (one encoder call each), so a
    large sweep's steps never stand in memory as Python objects all at once."""
    with path.open("w") as file:
        file.write("[")
        for start in range(0, len(table), chunk):
            part = table.iloc[start : start + chunk].astype(object)
            records = part.where(part.notna(), None).to_dict(orient="records")
            file.write(("," if start else "") + json.dumps(records, allow_nan=False)[1:-1])
        file.write("]")


_PLAN_COLUMNS = ["name", "kind", "shape", "k", "rank", "error", "exact_error"]
_PLAN_COLUMNS += ["params_before", "params_after"]


def plan_markdown(plan: AldsPlan) -> str:
    """An ALDS plan as Markdown: a row per layer, then a line of totals.

    A layer left dense shows ``dense`` as its rank; errors have 4 decimals, sizes separators.
    """
    columns = list(_PLAN_COLUMNS)
    if plan.flops_before is not None:
        columns += ["flops_before", "flops_after"]
    cells = [[_plan_cell(c, row[c]) for c in columns] for row in plan.to_rows()]
    table = pd.DataFrame(cells, columns=columns, dtype=object)
    totals = plan.summary()
    flops = (
        f"; FLOPs {plan.flops_before:,} → {plan.flops_after:,}"
        if plan.flops_before is not None
        else ""
    )
    return "\n".join(
        [
            markdown_table(table, [False] * len(columns)),
            "",
            f"rate {plan.rate:.3f} ({plan.error}): removed {totals['achieved_rate']:.4f} of "
            f"{totals['compressible_before']:,} compressible weights, {totals['total_rate']:.4f} "
            f"of all {totals['params_before']:,} parameters; max error "
            f"{totals['max_error']:.4f}, max exact error {totals['max_exact_error']:.4f}{flops}",
        ]
    )


def _plan_cell(column: str, value: Any) -> str:
    if column == "rank" and value is None:
        return "dense"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# --------------------------------------------------------------------------- the files


def write(report: Report, output: Path, formats: Sequence[str]) -> list[Path]:
    """Write the report's tables in ``formats`` and its figures (PNG) into ``output``.

    CSV and JSON hold every table complete and unrounded (``<table>.csv``/``.json``; the raw
    steps, a row per step of every trial, as CSV only: ``TableSpec.data``); LaTeX writes one
    booktabs fragment per table (``<table>.tex``); Markdown and HTML one document each
    (``report.md``, ``report.html``) with tables and figures.

    Returns:
        The files written, figures first.
    """
    output.mkdir(parents=True, exist_ok=True)
    shown = _Presented(report)
    written = []
    for name, figure in report.figures.items():
        path = output / f"{name}.png"
        figure.savefig(path, dpi=150)
        written.append(path)
    for name, table in report.tables.items():
        spec = table_spec(name)
        kinds = formats
        if spec is not None and spec.data is not None:
            kinds = spec.data if any(kind in formats for kind in ("csv", "json")) else ()
        written += write_data(table, output / name, kinds)
        if "latex" in formats and spec is not None and spec.presented:
            path = output / f"{name}.tex"
            cut = shown.cut(name)
            path.write_text(
                (f"% {cut}\n" if cut else "")
                + latex_table(shown(name, paper=True), _aligned(name, report, True))
            )
            written.append(path)
    if "md" in formats:
        written.append(output / "report.md")
        written[-1].write_text(_markdown_document(report, shown))
    if "html" in formats:
        written.append(output / "report.html")
        written[-1].write_text(_html_document(report, output, shown))
    return written


def write_data(table: pd.DataFrame, stem: Path, formats: Sequence[str]) -> list[Path]:
    """A table as data, complete and unrounded: ``<stem>.csv`` and ``<stem>.json``, those of
    ``formats`` asks for.

    Returns:
        The files written.
    """
    written = []
    if "csv" in formats:
        table.to_csv(stem.with_suffix(".csv"), index=False)
        written.append(stem.with_suffix(".csv"))
    if "json" in formats:
        write_json(table, stem.with_suffix(".json"))
        written.append(stem.with_suffix(".json"))
    return written


def _in_short(report: Report) -> list[str]:
    """The answer first, in words, from the primary endpoint's verdicts: a line for the top of
    report.md and report.html."""
    table = report.tables.get("endpoint")
    if table is None or table.empty:
        return []
    said = []
    for row in table.to_dict("records"):
        name = report.names.get(row["config"], row["config"])
        twin = report.names.get(row["baseline"], "its IMP-only twin")
        difference = (
            ""
            if is_missing(row["difference_mean"])
            else (f"{100 * row['difference_mean']:+.2f} points against {twin}, ")
        )
        said.append(f"{name}: {row['verdict']} ({difference}{int(row['paired_n'])} seed pairs)")
    return [
        "In short (the primary endpoint, ALDS + IMP minus its IMP-only twin, one family): "
        + "; ".join(said)
        + "."
    ]


def _introduction(report: Report) -> list[str]:
    directions = ", ".join(
        f"{d} {o}" for d, o in zip(report.directions, report.objectives, strict=True)
    )
    parent = f", parent run `{report.parent_run_id}`" if report.parent_run_id else ""
    return [
        f"Study `{report.study}` (objective: {directions}); MLflow `{report.tracking_uri}`"
        f"{parent}.",
        f"{report.status()}. Aggregates use complete trials only; n counts the seeds behind a "
        "number, ± is the standard deviation over seeds; accuracies and sparsities in percent, "
        "differences in accuracy points (Δ > 0: ALDS + IMP is better than IMP only at the same "
        "sparsity).",
    ]


# The rows a table shows in Markdown, HTML and LaTeX (CSV and JSON hold every row): a sampled
# sweep of thousands of configurations has tables of hundreds of thousands of rows.
PRESENTED_ROWS = 2000


class _Presented:
    """:func:`present` of a report's tables, each computed once (Markdown and HTML show the
    same cells; a large sweep's tables have hundreds of thousands)."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.done: dict[tuple[str, bool], pd.DataFrame] = {}

    def __call__(self, name: str, *, paper: bool = False) -> pd.DataFrame:
        if (name, paper) not in self.done:
            self.done[(name, paper)] = present(self.report, name, paper=paper, rows=PRESENTED_ROWS)
        return self.done[(name, paper)]

    def cut(self, name: str) -> str | None:
        """What a reader of a shown table must know when it shows only its first rows."""
        total = len(self.report.tables[name])
        if total <= PRESENTED_ROWS:
            return None
        return f"the first {PRESENTED_ROWS:,} of {total:,} rows: {name}.csv has them all"


def _markdown_document(report: Report, shown: _Presented) -> str:
    short = [f"**{line}**" for line in _in_short(report)]
    lines = [f"# Sweep report: {report.study}", "", *short, "", *_introduction(report), ""]
    lines += [f"- {note}" for note in report.notes] + ([""] if report.notes else [])
    lines += _markdown_figures(report, None)
    for spec in TABLES:
        if spec.presented and spec.name in report.tables:
            lines += [f"## {spec.title}", ""]
            numeric = _aligned(spec.name, report, False)
            lines += [markdown_table(shown(spec.name), numeric), ""]
            cut = shown.cut(spec.name)
            lines += [f"_Shown: {cut}._", ""] if cut else []
            lines += _markdown_figures(report, spec.name)
    return "\n".join(lines)


def _markdown_figures(report: Report, after: str | None) -> list[str]:
    """The image lines of the figures shown after the table ``after`` (``None``: the top)."""
    lines = []
    for spec in FIGURES:
        if spec.after == after and spec.name in report.figures:
            lines += [f"![{spec.title}]({spec.name}.png)", ""]
    return lines


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}"
    "table{border-collapse:collapse;margin:1em 0}"
    "th,td{padding:.25em .6em;border-bottom:1px solid #ddd}"
    "th{border-bottom:2px solid #444;text-align:left}td.n{text-align:right}"
    "img{max-width:100%}"
)


def _html_document(report: Report, output: Path, shown: _Presented) -> str:
    """One self-contained page (figures embedded), to share or put on a team page."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Sweep report: {html.escape(report.study)}</title><style>{_CSS}</style>",
        f"</head><body><h1>Sweep report: {html.escape(report.study)}</h1>",
        *(f"<p><strong>{html.escape(text)}</strong></p>" for text in _in_short(report)),
        *(f"<p>{html.escape(text)}</p>" for text in _introduction(report)),
    ]
    if report.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
    for figure in FIGURES:
        if figure.name in report.figures:
            data = base64.b64encode((output / f"{figure.name}.png").read_bytes()).decode()
            title = html.escape(figure.title)
            parts.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{data}'>")
    for spec in TABLES:
        if spec.presented and spec.name in report.tables:
            table = _html_table(shown(spec.name), _aligned(spec.name, report, False))
            cut = shown.cut(spec.name)
            table += f"<p><em>Shown: {html.escape(cut)}.</em></p>" if cut else ""
            parts.append(f"<h2>{html.escape(spec.title)}</h2>{table}")
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(table: pd.DataFrame, numeric: Sequence[bool]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{html.escape(v)}</td>" if right else f"<td>{html.escape(v)}</td>"
            for v, right in zip(row, numeric, strict=True)
        )
        + "</tr>"
        for row in table.to_numpy()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

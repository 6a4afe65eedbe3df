"""Fills the tables docs/results.md quotes from the reports' published CSVs, each number rounded
once from full precision (never a rounded number rounded again).

Every block of docs/results.md between ``<!-- table:NAME -->`` and ``<!-- /table -->`` is
replaced by the table NAME below, computed from docs/results/<sweep>/*.csv:

    .venv/bin/python benchmarks/results_tables.py          # after the reports are written
    .venv/bin/python benchmarks/results_tables.py --check  # exit 1 if a block is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
DOCUMENT = ROOT / "docs" / "results.md"
BLOCK = re.compile(r"(<!-- table:(\w+) -->\n)(.*?)(<!-- /table -->)", re.DOTALL)


def _csv(sweep: str, table: str) -> pd.DataFrame:
    return pd.read_csv(RESULTS / sweep / f"{table}.csv")


def _pt(value: float) -> str:
    return "–" if pd.isna(value) else f"{100 * value:+.2f}".replace("-", "−")


def _pct(value: float, digits: int = 2) -> str:
    return "–" if pd.isna(value) else f"{100 * value:.{digits}f}"


def _interval(low: float, high: float) -> str:
    return "–" if pd.isna(low) else f"[{_pt(low)}, {_pt(high)}]"


def _p(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3g}"


def _arm(config: str, sweep: str) -> str:
    """``alds.mode=factorize,alds.rate=0.2`` → ``factorize 0.2`` (the mode the sweep's YAML
    fixes where it is not searched)."""
    parts = dict(part.split("=", 1) for part in config.split(","))
    if float(parts.get("alds.rate", "nan")) == 0:
        return "IMP only"
    mode = parts.pop("alds.mode", None) or _mode(sweep)
    return " ".join([mode, *parts.values()])


def _mode(sweep: str) -> str:
    from orchestrator.sweep_file import load_config

    return load_config(ROOT / "sweeps" / f"{sweep}.yaml").alds.mode


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _verdict(text: object) -> str:
    text = "" if pd.isna(text) else str(text)
    return f"**{text}**" if text.startswith(("ALDS", "equivalent", "ticket")) else text


SCOPES = {
    "fashion_mnist_alds_imp": "LeNet layer-wise",
    "fashion_mnist_global": "LeNet global",
    "fashion_mnist_rewind_control": "LeNet layer-wise, rewind control",
    "fashion_mnist_global_rewind_control": "LeNet global, rewind control",
    "fashion_mnist_conv": "Conv-6 ¼ width",
    "fashion_mnist_conv_rewind_control": "Conv-6 ¼ width, rewind control",
}


def headline() -> str:
    table = _csv("family", "family")
    rows = [
        [
            SCOPES.get(row["sweep"], row["sweep"]),
            _arm(row["config"], row["sweep"]),
            f"{_pct(row['sparsity_low'], 1)}–{_pct(row['sparsity_high'], 1)}%",
            _pt(row["difference_mean"]),
            _interval(row["adjusted_ci_low"], row["adjusted_ci_high"]),
            _p(row["p_adjusted"]),
            _p(row.get("p_equivalence_adjusted")),
            _verdict(row["verdict"]),
        ]
        for row in table.to_dict("records")
    ]
    interval = f"family-wise CI (m = {len(table)})"
    header = ["sweep", "ALDS", "range", "Δ (pt)", interval, "p (Bonferroni)"]
    return _markdown([*header, "p equivalence", "verdict"], rows)


def sensitivity() -> str:
    table = _csv("family", "sensitivity")
    margins = [c for c in table if str(c).startswith("verdict ±")]
    rows = [
        [
            SCOPES.get(row["sweep"], row["sweep"]),
            _arm(row["config"], row["sweep"]),
            _pt(row["difference_mean"]),
            _pct(row["equivalence_bound"]),
            *[_verdict(row[m]) for m in margins],
        ]
        for row in table.to_dict("records")
    ]
    header = ["sweep", "ALDS", "Δ (pt)", "differences beyond ±X pt excluded", *margins]
    return _markdown(header, rows)


def _endpoint(sweep: str) -> str:
    table = _csv(sweep, "endpoint")
    rows = [
        [
            _arm(row["config"], sweep),
            _pct(row["auc_mean"]),
            _pct(row["baseline_auc_mean"]),
            _pt(row["difference_mean"]),
            _interval(row["adjusted_ci_low"], row["adjusted_ci_high"]),
            _p(row["p_adjusted"]),
            _verdict(row["verdict"]),
            f"{_pct(row['pair_sparsity_low'], 1)}–{_pct(row['pair_sparsity_high'], 1)}%: "
            f"{_pt(row['pair_difference_mean'])}",
        ]
        for row in table.to_dict("records")
    ]
    first = table.iloc[0]
    span = f"{_pct(first['sparsity_low'], 1)}–{_pct(first['sparsity_high'], 1)}%"
    header = ["ALDS", f"ALDS + IMP over {span}", "IMP only", "Δ (pt)", "family-wise CI"]
    return _markdown([*header, "p (Bonferroni)", "verdict", "pair's own range: Δ"], rows)


def decisions(sweep: str, fixed: str) -> str:
    """A sweep that decides, against the fixed 5-seed sweep of the same question."""
    table = _csv(sweep, "decisions")
    before = _csv(fixed, "endpoint").set_index("config")
    rows = []
    for row in table.to_dict("records"):
        then = before.loc[row["config"]] if row["config"] in before.index else None
        rows.append(
            [
                _arm(row["config"], sweep),
                _verdict(row["decision"]),
                f"{row['look']}",
                f"{row['seeds']}",
                _pt(row["difference_mean"]),
                _interval(row["ci_low"], row["ci_high"]),
                "–" if pd.isna(row["fixed_seeds"]) else f"{row['fixed_seeds']:.0f}",
                "–"
                if then is None
                else f"{_pt(then['difference_mean'])}, {_verdict(then['verdict'])}",
            ]
        )
    header = ["ALDS", "decision", "look", "seeds", "Δ (pt)", "repeated CI (pt)"]
    header += ["fixed design, same power (seeds)", "the fixed 5-seed sweep: Δ, verdict"]
    return _markdown(header, rows)


def controls() -> str:
    table = _csv("fashion_mnist_alds_imp", "controls")
    wide = table.pivot_table(
        index="step",
        columns="control",
        values=["sparsity", "baseline_accuracy_mean", "accuracy_mean", "difference_mean"],
    )
    judged = table.set_index(["step", "control"])
    rows = []
    for step in wide.index:
        row = [_pct(wide.loc[step, ("sparsity", "random_mask")], 1) + "%"]
        row.append(_pct(wide.loc[step, ("baseline_accuracy_mean", "random_mask")]))
        for control in ("random_mask", "reinit"):
            cell = judged.loc[(step, control)]
            row += [
                _pct(cell["accuracy_mean"]),
                f"{_pt(cell['difference_mean'])} "
                f"{_interval(cell['adjusted_ci_low'], cell['adjusted_ci_high'])}",
                _verdict(cell["verdict"]),
            ]
        rows.append(row)
    header = ["sparsity", "IMP only (ticket)", "random mask", "Δ [family-wise]", "verdict"]
    return _markdown([*header, "reinit", "Δ [family-wise]", "verdict"], rows)


def _magnitudes(sweep: str) -> str:
    table = _csv(sweep, "magnitudes")
    rows = [
        [
            _arm(row["config"], sweep),
            *[
                part
                for decile in ("smallest", "largest")
                for part in (
                    f"{_pct(row[f'{decile}_alds'])} vs {_pct(row[f'{decile}_baseline'])}",
                    _interval(row[f"{decile}_adjusted_ci_low"], row[f"{decile}_adjusted_ci_high"]),
                    _verdict(row[f"{decile}_verdict"]),
                )
            ],
        ]
        for row in table.to_dict("records")
    ]
    header = ["ALDS", "smallest tenth: ALDS vs twin (%)", "Δ family-wise (pt)", "verdict"]
    return _markdown([*header, "largest tenth: ALDS vs twin (%)", "Δ family-wise", "verdict"], rows)


def collapse() -> str:
    table = _csv("fashion_mnist_collapse", "collapse")
    rows = [
        [
            _arm(row["config"], "fashion_mnist_collapse"),
            f"{int(row['collapsed'])} of {int(row['n'])}",
            "–" if pd.isna(row["sparsity_median"]) else f"{_pct(row['sparsity_median'])}%",
            "–"
            if pd.isna(row["sparsity_min"])
            else f"{_pct(row['sparsity_min'])}–{_pct(row['sparsity_max'])}%",
            "" if pd.isna(row["reason"]) else str(row["reason"]),
            "–" if pd.isna(row["difference_mean"]) else f"{row['difference_mean']:+.2f}",
            "–"
            if pd.isna(row["adjusted_ci_low"])
            else f"[{row['adjusted_ci_low']:+.2f}, {row['adjusted_ci_high']:+.2f}]",
            _verdict(row["verdict"]),
        ]
        for row in table.to_dict("records")
    ]
    header = ["configuration", "collapsed", "sparsity at collapse (median)", "range"]
    return _markdown([*header, "first sign", "Δ halvings", "family-wise CI", "verdict"], rows)


def conv_layers() -> str:
    table = _csv("fashion_mnist_conv", "layers")
    arms = {
        "alds.mode=project,alds.rate=0.0": "IMP only",
        "alds.mode=factorize,alds.rate=0.3": "factorize 0.3",
        "alds.mode=factorize,alds.rate=0.6": "factorize 0.6",
    }
    at = table.drop_duplicates("config").set_index("config")["sparsity"]
    order = table["layer"].unique()
    cells = table.set_index(["config", "layer"])
    rows = []
    for layer in sorted(order, key=lambda name: (not name.startswith("features"), _index(name))):
        row = [layer]
        for config in list(arms)[1:]:
            row.append(_pct(cells.loc[(config, layer), "after_alds_mean"], 1) + "%")
        for config in arms:
            row.append(_pct(cells.loc[(config, layer), "remaining_mean"], 1) + "%")
        rows.append(row)
    header = ["layer", "after ALDS 0.3", "after ALDS 0.6"]
    header += [f"{name} at {_pct(at[config], 1)}%" for config, name in arms.items()]
    return _markdown(header, rows)


def _index(layer: str) -> int:
    return int(layer.rsplit(".", 1)[1])


TABLES: dict[str, Callable[[], str]] = {
    "headline": headline,
    "sensitivity": sensitivity,
    "endpoint_layer": lambda: _endpoint("fashion_mnist_alds_imp"),
    "endpoint_global": lambda: _endpoint("fashion_mnist_global"),
    "endpoint_rewind": lambda: _endpoint("fashion_mnist_rewind_control"),
    "endpoint_global_rewind": lambda: _endpoint("fashion_mnist_global_rewind_control"),
    "endpoint_conv": lambda: _endpoint("fashion_mnist_conv"),
    "endpoint_conv_rewind": lambda: _endpoint("fashion_mnist_conv_rewind_control"),
    "decisions_layer": lambda: decisions(
        "fashion_mnist_alds_imp_sequential", "fashion_mnist_alds_imp"
    ),
    "decisions_conv": lambda: decisions("fashion_mnist_conv_sequential", "fashion_mnist_conv"),
    "controls": controls,
    "magnitudes": lambda: _magnitudes("fashion_mnist_alds_imp"),
    "magnitudes_conv": lambda: _magnitudes("fashion_mnist_conv"),
    "collapse": collapse,
    "conv_layers": conv_layers,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a block is stale")
    args = parser.parse_args()
    text = DOCUMENT.read_text()

    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"docs/results.md names an unknown table '{name}'")
        return match.group(1) + TABLES[name]() + match.group(4)

    filled = BLOCK.sub(fill, text)
    if args.check:
        return int(filled != text)
    DOCUMENT.write_text(filled)
    return 0


if __name__ == "__main__":
    sys.exit(main())

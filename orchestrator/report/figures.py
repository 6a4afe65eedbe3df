"""The figures: accuracy against remaining weights, against the ALDS rate, and the heat map.

Drawn on :class:`matplotlib.figure.Figure` directly (no pyplot: no global state, no GUI
backend), from the curve table (``describe.curve_table``); the worker draws each trial's curve
with :func:`trial_figure`, on the same axes as the report's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from orchestrator import plan
from orchestrator.report.schema import FRACTION, RATE, TOLERANCE, FigureSpec, param_text

if TYPE_CHECKING:
    from matplotlib.collections import PathCollection
    from matplotlib.image import AxesImage

__all__ = [
    "FIGURES",
    "plot_accuracy_vs_flops",
    "plot_accuracy_vs_rate",
    "plot_accuracy_vs_remaining",
    "plot_heatmap",
    "plot_paired_differences",
    "trial_figure",
]


def _accuracy_against_remaining(axis: Any) -> None:
    """The axes of accuracy against weights remaining: a log scale that decreases to the
    right, as in the lottery-ticket papers."""
    axis.set_xscale("log")
    axis.invert_xaxis()
    axis.set_xlabel("weights remaining (%, log scale)")
    axis.set_ylabel("test accuracy (%)")
    axis.grid(True, alpha=0.3)


def trial_figure(remaining: Sequence[float], accuracy: Sequence[float]) -> Figure:
    """One trial's curve: accuracy against weights remaining, one point per step.

    Args:
        remaining: the fraction of weights remaining at each step.
        accuracy: the test accuracy (a fraction) at each step.
    """
    figure = Figure(figsize=(5, 3.5), layout="tight")
    axis = figure.add_subplot()
    axis.plot([100 * r for r in remaining], [100 * a for a in accuracy], marker="o")
    _accuracy_against_remaining(axis)
    return figure


def _wide() -> tuple[Figure, Any]:
    """A figure of the report's curves against the weights remaining, and its one axis."""
    figure = Figure(figsize=(9.0, 4.8), layout="constrained")
    return figure, figure.add_subplot()


def _colors(rates: Iterable[float]) -> dict[float, Any]:
    compressed = sorted({float(r) for r in rates if plan.is_alds(r)})
    return dict(zip(compressed, _palette(len(compressed), upper=0.85), strict=True))


def _others_label(row: pd.Series | Mapping[str, Any], others: Sequence[str]) -> str:
    return " · ".join(f"{p.split('.')[-1]} {param_text(row[p])}" for p in others)


def _dense_lines(axis: Any, curves: pd.DataFrame, tolerance: float = TOLERANCE) -> None:
    dense = curves.loc[curves["step"] == 0, "accuracy_mean"]
    if dense.empty:
        return
    level = 100 * float(dense.mean())
    axis.axhline(level, color="0.4", linestyle=":", linewidth=1, label="dense network")
    axis.axhline(
        level - 100 * tolerance,
        color="0.7",
        linestyle=":",
        linewidth=1,
        label=f"dense − {100 * tolerance:g} point",
    )


def _thin(levels: Sequence[float], count: int = 9) -> list[float]:
    """At most ``count`` of ``levels`` (descending, positive), evenly spread on a log scale."""
    if len(levels) <= count:
        return list(levels)
    logs = np.log(levels)
    targets = np.linspace(logs[0], logs[-1], count)
    return sorted({levels[int(np.argmin(abs(logs - t)))] for t in targets}, reverse=True)


def plot_accuracy_vs_remaining(
    curves: pd.DataFrame,
    params: Sequence[str],
    *,
    title: str = "",
    names: Mapping[str, str] | None = None,
) -> Figure | None:
    """Accuracy against remaining weights (log, decreasing), one line per configuration.

    The IMP-only baseline is the thick black line; bands are ± one std over seeds.
    """
    if curves.empty:
        return None
    figure, axis = _wide()
    if curves["config"].nunique() > LEGEND_LIMIT:
        _many_curves(figure, axis, curves)
        axis.set_title(title or "Accuracy against remaining weights")
        return figure
    others = [p for p in params if p != RATE]
    colors = _colors(curves[RATE])
    styles = ["-", "--", "-.", ":"]
    other_values = curves.drop_duplicates(others)[others] if others else pd.DataFrame()
    style_of = {
        tuple(row): styles[i % len(styles)] for i, row in enumerate(other_values.to_numpy())
    }
    order = curves.drop_duplicates("config").sort_values([RATE, *others])
    by_config = dict(tuple(curves.groupby("config", sort=False)))
    for _, head in order.iterrows():
        curve = by_config[head["config"]].sort_values("step")
        x = 100 * curve["remaining_mean"].to_numpy(float)
        y = 100 * curve["accuracy_mean"].to_numpy(float)
        spread = 100 * curve["accuracy_std"].fillna(0).to_numpy(float)
        baseline = not plan.is_alds(head[RATE])
        label = (names or {}).get(head["config"], head["config"])
        color = "black" if baseline else colors[float(head[RATE])]
        style = style_of.get(tuple(head[others]), "-") if others else "-"
        axis.plot(
            x,
            y,
            style,
            marker="o",
            markersize=4,
            color=color,
            linewidth=2.6 if baseline else 1.6,
            zorder=3 if baseline else 2,
            label=label,
        )
        if (curve["n"] > 1).any():
            axis.fill_between(x, y - spread, y + spread, color=color, alpha=0.12, linewidth=0)
    _dense_lines(axis, curves)
    _accuracy_against_remaining(axis)
    imp_only = ~plan.is_alds(curves[RATE])
    reference = curves[imp_only] if imp_only.any() else curves
    _remaining_ticks(axis, 100 * reference["remaining_mean"])
    axis.set_title(title or "Accuracy against remaining weights")
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def plot_accuracy_vs_flops(
    curves: pd.DataFrame,
    params: Sequence[str],
    *,
    title: str = "",
    names: Mapping[str, str] | None = None,
) -> Figure | None:
    """Accuracy against the effective FLOPs kept (log, decreasing), relative to each
    configuration's dense network: the figure of :func:`plot_accuracy_vs_remaining` at equal
    cost instead of equal sparsity (a convolution's weights are few and its FLOPs many)."""
    if curves.empty or curves["flops_effective_mean"].isna().all():
        return None
    dense = curves["flops_effective_mean"].where(curves["step"] == 0)
    kept = curves["flops_effective_mean"] / dense.groupby(curves["config"]).transform("max")
    figure = plot_accuracy_vs_remaining(
        curves.assign(remaining_mean=kept),
        params,
        title=title or "Accuracy against effective FLOPs kept",
        names=names,
    )
    if figure is not None:
        figure.axes[0].set_xlabel("effective FLOPs kept (% of dense, log scale)")
    return figure


# Beyond this many configurations (a sampled sweep: every trial its own), lines are coloured
# by ALDS rate on a colour bar instead of being named in a legend.
LEGEND_LIMIT = 16
# The most lines that figure draws: Agg renders 10,000 curves in 3 s, and a reader sees no more.
DRAWN_LINES = 2000


def _many_curves(figure: Figure, axis: Any, curves: pd.DataFrame) -> None:
    """Every configuration as a thin line coloured by its ALDS rate (IMP only in black), drawn
    as one collection: thousands of lines in a second."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    ordered = curves.sort_values(["config", "step"], kind="stable")
    points = 100 * ordered[["remaining_mean", "accuracy_mean"]].to_numpy(float)
    config = ordered["config"].to_numpy()
    starts = np.flatnonzero(np.r_[True, config[1:] != config[:-1]])
    lines = np.split(points, starts[1:])
    rates_array = ordered[RATE].to_numpy(float)[starts]
    if len(lines) > DRAWN_LINES:  # evenly spread over the configurations, in their order
        picked = np.linspace(0, len(lines) - 1, DRAWN_LINES).round().astype(int)
        lines = [lines[i] for i in picked]
        rates_array = rates_array[picked]
        axis.text(
            0.99,
            0.01,
            f"{DRAWN_LINES:,} of {len(starts):,} configurations drawn",
            transform=axis.transAxes,
            ha="right",
            va="bottom",
            fontsize="small",
            color="0.4",
        )
    alds = plan.is_alds(pd.Series(rates_array)).to_numpy()
    scale = Normalize(vmin=float(rates_array.min()), vmax=float(max(rates_array.max(), 1e-9)))
    colormap = "viridis"
    if alds.any():
        chosen = [line for line, keep in zip(lines, alds, strict=True) if keep]
        collection = LineCollection(chosen, cmap=colormap, norm=scale, linewidths=0.7, alpha=0.6)
        collection.set_array(rates_array[alds])
        axis.add_collection(collection)
    if (~alds).any():
        baseline = [line for line, keep in zip(lines, alds, strict=True) if not keep]
        axis.add_collection(
            LineCollection(baseline, colors="black", linewidths=1.2, label=plan.IMP_ONLY)
        )
    figure.colorbar(ScalarMappable(norm=scale, cmap=colormap), ax=axis, label="ALDS rate")
    _dense_lines(axis, curves)
    _accuracy_against_remaining(axis)
    axis.autoscale_view()
    _remaining_ticks(axis, 100 * curves["remaining_mean"])
    axis.legend(fontsize="small", loc="lower left")


def _remaining_ticks(axis: Any, percents: Iterable[float]) -> None:
    """Ticks at the measured levels of weights remaining (percent): log-scale decades alone
    say little between 100 and 1 %."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    # Rounded first: a level under 0.0005 % would round to a tick at 0, which a log axis
    # cannot place.
    levels = sorted({r for v in percents if (r := round(float(v), 3)) > 0}, reverse=True)
    axis.set_xticks(_thin(levels))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.xaxis.set_minor_formatter(NullFormatter())


def _step_label(step: int, rows: pd.DataFrame) -> str:
    if step == 1:
        return "after ALDS (before IMP)"
    return f"IMP cycle {step - 1} (≈{100 * rows['remaining_mean'].mean():.3g}% left)"


def plot_accuracy_vs_rate(
    curves: pd.DataFrame,
    params: Sequence[str],
    *,
    title: str = "",
    names: Mapping[str, str] | None = None,
    panels: int = 4,
) -> Figure | None:
    """Accuracy against the ALDS rate after ALDS and at fixed IMP cycles (± std over seeds).

    One panel per combination of the other searched parameters that has several rates (at
    most ``panels``); ``None`` when no combination has two rates.
    """
    if curves.empty or RATE not in params:
        return None
    others = [p for p in params if p != RATE]
    if not others:
        groups = [(None, curves)] if curves[RATE].nunique() >= 2 else []
    else:
        # Which combinations have several rates, counted at once: a sampled sweep has one
        # combination a trial.
        counts = curves.groupby(others, sort=True)[RATE].nunique()
        chosen = list(counts[counts >= 2].index[:panels])
        grouped = curves.groupby(others, sort=True)
        groups = [(key, grouped.get_group(key if len(others) > 1 else (key,))) for key in chosen]
    if not groups:
        return None
    import matplotlib

    steps = sorted(s for s in curves["step"].unique() if s >= 1)
    if len(steps) > 5:
        steps = sorted({steps[int(i)] for i in np.linspace(0, len(steps) - 1, 5)})
    figure = Figure(figsize=(5.5 * len(groups) + 2.5, 4.2), layout="constrained")
    axes = figure.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    cmap = matplotlib.colormaps["plasma"]
    rates = curves[RATE].unique()
    # Side by side, so the error bars stay apart (only when there are error bars to separate).
    dodge = 0.012 * (rates.max() - rates.min()) if (curves["n"] > 1).any() else 0.0
    for axis, (key, group) in zip(axes, groups, strict=True):
        for i, step in enumerate(steps):
            rows = group[group["step"] == step].sort_values(RATE)
            axis.errorbar(
                rows[RATE] + dodge * (i - (len(steps) - 1) / 2),
                100 * rows["accuracy_mean"],
                yerr=100 * rows["accuracy_std"].fillna(0),
                marker="o",
                markersize=4,
                capsize=3,
                color=cmap(0.85 * i / max(len(steps) - 1, 1)),
                label=_step_label(int(step), rows),
            )
        _dense_lines(axis, group)
        axis.set_xlabel("ALDS rate (fraction of weights removed by ALDS)")
        axis.grid(True, alpha=0.3)
        if key is not None:
            values = key if isinstance(key, tuple) else (key,)
            axis.set_title(_others_label(dict(zip(others, values, strict=True)), others))
    axes[0].set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.suptitle(title or "Accuracy against the ALDS rate")
    return figure


def plot_heatmap(
    curves: pd.DataFrame,
    params: Sequence[str],
    *,
    title: str = "",
    names: Mapping[str, str] | None = None,
) -> Figure | None:
    """Final accuracy (mean over seeds) over ALDS rate and prune fraction, 2-D sweeps only.

    A full grid is drawn as cells annotated with accuracy and weights left; scattered samples
    (a sampler other than grid) as coloured points.
    """
    if curves.empty or RATE not in params or FRACTION not in params:
        return None
    final = curves.sort_values("step").groupby("config").tail(1)
    if final[RATE].nunique() < 2 or final[FRACTION].nunique() < 2:
        return None
    figure = Figure(figsize=(6.5, 4.8), layout="constrained")
    axis = figure.add_subplot()
    label = "final test accuracy (%), mean over seeds"
    # More cells than configurations cannot be a full grid (sampled values): no pivot, which
    # for thousands of samples would be a table of their square.
    cells = final[RATE].nunique() * final[FRACTION].nunique()
    full = False
    image: AxesImage | PathCollection
    if cells <= len(final):
        accuracy = final.pivot_table(index=FRACTION, columns=RATE, values="accuracy_mean")
        remaining = final.pivot_table(index=FRACTION, columns=RATE, values="remaining_mean")
        full = bool(accuracy.notna().all().all())
    if full:
        image = axis.imshow(100 * accuracy.to_numpy(), origin="lower", aspect="auto")
        axis.set_xticks(range(accuracy.shape[1]), [f"{v:g}" for v in accuracy.columns])
        axis.set_yticks(range(accuracy.shape[0]), [f"{v:g}" for v in accuracy.index])
        middle = 100 * np.nanmean(accuracy.to_numpy())
        for (i, j), value in np.ndenumerate(100 * accuracy.to_numpy()):
            left = 100 * remaining.to_numpy()[i, j]
            axis.text(
                j,
                i,
                f"{value:.1f}\n{left:.3g}% left",
                ha="center",
                va="center",
                fontsize="small",
                color="white" if value < middle else "black",
            )
    else:
        image = axis.scatter(
            final[RATE], final[FRACTION], c=100 * final["accuracy_mean"], s=80, cmap="viridis"
        )
    figure.colorbar(image, ax=axis, label=label)
    axis.set_xlabel("ALDS rate")
    axis.set_ylabel("IMP prune fraction per cycle")
    axis.set_title(title or "Final accuracy")
    return figure


# In the order the report draws them.
def plot_paired_differences(
    versus: pd.DataFrame,
    params: Sequence[str],
    *,
    title: str = "",
    names: Mapping[str, str] | None = None,
) -> Figure | None:
    """ALDS + IMP minus its IMP-only twin at matched sparsity, per configuration: the paired
    mean over seeds with its 95% interval (none where fewer than two seeds pair); ``None``
    without a pair."""
    rows = versus.dropna(subset=["difference_mean"])
    if rows.empty:
        return None
    figure, axis = _wide()
    configs = list(rows["config"].unique())
    colors = _palette(len(configs))
    for color, (config, group) in zip(colors, rows.groupby("config", sort=False), strict=True):
        x = 100 * group["remaining"].to_numpy()
        y = 100 * group["difference_mean"].to_numpy()
        low = 100 * group["difference_ci_low"].to_numpy()
        high = 100 * group["difference_ci_high"].to_numpy()
        spread = np.vstack([y - low, high - y])
        axis.errorbar(
            x,
            y,
            yerr=np.nan_to_num(spread),
            marker="o",
            capsize=3,
            color=color,
            label=(names or {}).get(str(config), str(config)),
        )
    axis.axhline(0.0, color="black", linewidth=0.8)
    _accuracy_against_remaining(axis)
    axis.set_ylabel("Δ accuracy vs IMP-only twin (points)")
    _remaining_ticks(axis, 100 * rows["remaining"])
    axis.set_title(title or "paired differences with 95% intervals")
    axis.legend(fontsize="small")
    return figure


def plot_controls(
    controls: pd.DataFrame,
    params: Sequence[str],
    *,
    title: str = "",
    names: Mapping[str, str] | None = None,
) -> Figure | None:
    """Each IMP-only configuration that ran controls (the report's controls table): its
    accuracy and that of each control at the control's sparsities, means over the seeds;
    ``None`` without a control."""
    rows = controls.dropna(subset=["accuracy_mean"])
    if rows.empty:
        return None
    figure, axis = _wide()
    twins = list(rows["baseline"].unique())
    kinds = sorted(rows["control"].unique())
    styles = dict(zip(kinds, ("--", ":", "-."), strict=False))
    for color, twin in zip(_palette(len(twins), 0.8), twins, strict=True):
        group = rows[rows["baseline"] == twin]
        # The twin's curve at its controls' sparsities: one line however many controls.
        ticket = group.drop_duplicates("step").sort_values("step")
        prefix = f"{twin}: " if len(twins) > 1 else ""
        axis.plot(
            100 * ticket["remaining"],
            100 * ticket["baseline_accuracy_mean"],
            marker="o",
            color=color,
            label=f"{prefix}{plan.IMP_ONLY} (the ticket)",
        )
        for control, curve in group.groupby("control", sort=True):
            axis.plot(
                100 * curve["remaining"],
                100 * curve["accuracy_mean"],
                marker="x",
                linestyle=styles.get(control, "--"),
                color=color,
                label=f"{prefix}control {control}",
            )
    _accuracy_against_remaining(axis)
    _remaining_ticks(axis, 100 * rows["remaining"])
    axis.set_title(title or "the ticket against its controls")
    axis.legend(fontsize="small")
    return figure


def _palette(count: int, upper: float = 1.0) -> list[Any]:
    """``count`` distinct colours of the report's colormap, up to ``upper`` along it."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(upper * i / max(count - 1, 1)) for i in range(count)]


FIGURES = (
    FigureSpec(
        "accuracy_vs_remaining", "Accuracy against remaining weights", plot_accuracy_vs_remaining
    ),
    FigureSpec(
        "accuracy_vs_flops",
        "Accuracy against effective FLOPs kept",
        plot_accuracy_vs_flops,
        after="at_flops",
    ),
    FigureSpec(
        "accuracy_vs_alds_rate",
        "Accuracy against the ALDS rate at fixed IMP cycles",
        plot_accuracy_vs_rate,
        after="summary",
    ),
    FigureSpec(
        "heatmap_rate_fraction",
        "Final accuracy over ALDS rate and prune fraction",
        plot_heatmap,
        after="summary",
    ),
    FigureSpec(
        "paired_differences",
        "ALDS + IMP minus its IMP-only twin, with 95% intervals",
        plot_paired_differences,
        after="versus_baseline",
        table="versus_baseline",
    ),
    FigureSpec(
        "controls",
        "The IMP-only ticket against its lottery-ticket controls",
        plot_controls,
        after="controls",
        table="controls",
    ),
)

"""What a report is asked for on the command line: its table formats and sparsity levels,
checked before anything is read (a module of its own, light: no pandas, no stores)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from orchestrator import ConfigError

if TYPE_CHECKING:
    from orchestrator.config import SweepConfig

__all__ = ["FORMATS", "LEVELS", "levels_within_reach", "parse_formats", "parse_levels"]

FORMATS = ("csv", "md", "latex", "html", "json")
LEVELS = (0.5, 0.8, 0.9, 0.95)  # sparsities of the at_sparsity table


def parse_formats(text: str) -> list[str]:
    """``csv,md,latex,html,json`` → a list; unknown names are an error naming them."""
    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(
            f"unknown report format(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(FORMATS)}"
        )
    return formats


def parse_levels(text: str) -> tuple[float, ...]:
    """``0.5,0.9`` → sparsity levels of the at_sparsity table, each in (0, 1)."""
    try:
        levels = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        levels = ()
    if not levels or not all(0.0 < level < 1.0 for level in levels):
        raise ConfigError(
            f"--sparsity-levels '{text}': give comma-separated sparsities in (0, 1), "
            "e.g. 0.5,0.8,0.9,0.95"
        )
    return levels


def levels_within_reach(config: SweepConfig) -> tuple[float, ...]:
    """The at_sparsity table's levels when none are asked for: those of :data:`LEVELS` that
    every configuration's schedule reaches (a level past it would show no number), else that
    reach itself, to the percent below.

    Args:
        config: the sweep's config.
    """
    from orchestrator.plan import reachable_sparsity

    reach = reachable_sparsity(config)[0]
    return tuple(level for level in LEVELS if level <= reach) or (math.floor(100 * reach) / 100,)

"""The ``orchestrate`` command line: thin click commands over the orchestrator modules."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.table import Table

from orchestrator import __version__
from orchestrator.config import ConfigError, SweepConfig, config_hash, load_config

EXIT_USAGE = 2


def _load(path: Path) -> SweepConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orchestrate")
def main() -> None:
    """Run and track ALDS + IMP compression sweeps (Optuna studies, MLflow runs)."""


@main.command()
@click.argument("sweep", type=click.Path(path_type=Path))
def validate(sweep: Path) -> None:
    """Check SWEEP.yaml; print the resolved config and the search space."""
    config = _load(sweep)
    console = Console()
    console.print(
        f"[bold]{sweep}[/]: valid sweep '{config.name}' (config hash {config_hash(config)})"
    )
    resolved = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    console.print(resolved, highlight=False, markup=False)
    table = Table(title="search space", show_lines=False)
    for column in ("parameter", "kind", "values"):
        table.add_column(column)
    for path, space in config.search.space.items():
        if space.choices is not None:
            table.add_row(path, "choice", ", ".join(map(str, space.choices)))
        else:
            step = f", step {space.step}" if space.step else ""
            scale = " (log)" if space.log else ""
            table.add_row(path, "range" + scale, f"[{space.low}, {space.high}]{step}")
    table.add_row("seed", "repeat", ", ".join(map(str, config.seeds)))
    console.print(table)
    objectives = ", ".join(f"{o.direction} {o.metric} at {o.at}" for o in config.search.objective)
    console.print(
        f"sampler {config.search.sampler}, pruner {config.search.pruner}, "
        f"{config.search.n_trials} trials; objective: {objectives}"
    )


if __name__ == "__main__":
    main()

"""The ``orchestrate`` command line: thin click commands over the orchestrator modules.

torch, mlflow and optuna take seconds to import: each command imports what it needs, so
``--help`` and ``validate`` answer at once (the launchers, whose options the sweep command
offers, import nothing heavy until they start workers).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from orchestrator import __version__, launchers
from orchestrator.execution.exit_codes import INTERRUPTED, TRIALS_FAILED, USAGE

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

    from orchestrator.config import SweepConfig

# The trials ``status`` and a finished sweep list (the latest): a sweep of thousands would
# scroll its counts away.
STATUS_TRIALS = 50


class _Commands(click.Group):
    """The command group: bad input (a ``ConfigError`` from any command, a ``DatasetError``
    of data the sweep's parent reads to key its trials) is reported as one line naming the
    file or field, with exit code 2 and no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from orchestrator.config import ConfigError
            from orchestrator.data.errors import DatasetError

            if not isinstance(exc, ConfigError | DatasetError):
                raise
            _fail(str(exc))


def _fail(message: str, code: int = USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _check_failures(study: optuna.Study, config: SweepConfig, allow_failures: bool) -> None:
    """Print the trials that failed after their retries, and why; exit 1 unless allowed."""
    from orchestrator.execution import progress

    failed = progress.failures(study, config)
    for line in failed:
        click.echo(line, err=True)
    if failed and allow_failures:
        click.echo(f"{len(failed)} trial(s) failed (--allow-failures: exit 0)", err=True)
    elif failed:
        _fail(
            f"{len(failed)} trial(s) failed after their retries (--allow-failures to exit 0); "
            "once the cause is fixed, the same command with --retry-failed runs them again",
            TRIALS_FAILED,
        )


def _allow_failures(command: Callable) -> Callable:
    return click.option(
        "--allow-failures",
        is_flag=True,
        help="exit 0 even when trials failed after their retries",
    )(command)


def _storage_lost(error: Exception) -> NoReturn:
    _fail(
        f"{error}; stopped. Run the same command again once the storage is back: a trial "
        "left running is failed and retried when its heartbeats are found missing",
        TRIALS_FAILED,
    )


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orchestrate")
def main() -> None:
    """Run and track ALDS + IMP compression sweeps (Optuna studies, MLflow runs)."""
    # MLflow sets its loggers' level when imported (from MLFLOW_LOGGING_LEVEL, default INFO):
    # its notices ("Creating initial MLflow database tables") are not about the user's input.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _console() -> Console:
    """The console of a command: lines are not wrapped where the output is not a terminal (a
    file, a pipe), so hashes, paths and URLs stay whole for the reader and for grep."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=100_000, soft_wrap=True)


def _storage_option(default: str | None) -> Callable[[Callable], Callable]:
    """``--storage URL`` (or ``ORCHESTRATE_STORAGE``): every command's study storage, required
    where there is no ``default`` to say."""
    where = f"; default: {default}" if default else ""
    return click.option(
        "--storage",
        "storage_url",
        required=default is None,
        envvar="ORCHESTRATE_STORAGE",
        help=f"Optuna storage URL [env ORCHESTRATE_STORAGE{where}]",
    )


def _quiet_optuna() -> None:
    """Keep Optuna's notices off the console of the commands that use it."""
    import optuna

    # Heartbeats, retries and metric names are marked experimental in Optuna; we rely on them
    # knowingly, and the warnings would bury the progress display.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@main.command()
@click.argument("sweep", type=click.Path(path_type=Path))
@_storage_option("the sweep's")
def validate(sweep: Path, storage_url: str | None) -> None:
    """Check SWEEP.yaml; print the resolved config, the search space and the plan against
    its study storage (reading it, creating nothing)."""
    import yaml
    from rich.table import Table

    from orchestrator import plan, workspace
    from orchestrator.study import growth
    from orchestrator.sweep_file import load_config, warnings as sweep_warnings
    from orchestrator.trial.identity import experiment_hash

    config = load_config(sweep)
    _check_data_files(config)
    console = _console()
    console.print(
        f"[bold]{sweep}[/]: valid sweep '{config.name}' (config hash {experiment_hash(config)})"
    )
    resolved = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    console.print(resolved, highlight=False, markup=False)
    table = Table(title="search space", show_lines=False)
    for column in ("parameter", "kind", "values"):
        table.add_column(column)
    for path, space in config.search.space.items():
        table.add_row(path, space.kind, space.describe())
    table.add_row("seed", "repeat", ", ".join(map(str, config.seeds)))
    console.print(table)
    from orchestrator.trial import network

    size = network.size(config)
    console.print(f"network {config.model} on {config.dataset.name}: {size.describe()}")
    objectives = ", ".join(f"{o.direction} {o.metric} at {o.at}" for o in config.search.objective)
    console.print(
        f"sampler {config.search.sampler}, pruner {config.search.pruner}, "
        f"{plan.describe(config)}; objective: {objectives}"
    )
    launcher = launchers.get(config)
    url = storage_url or launcher.default_storage()
    if workspace.holds_nothing(url):  # read nothing, import nothing heavy
        found = growth.assess(config, [], lambda params, seed: [], {})
    else:
        from orchestrator.execution import sweep as sweeps

        found = sweeps.preview(config, url, launcher.device_class)
    console.print(f"against its study storage {url}: {found.describe()}")
    summary = launcher.summary()
    if summary:
        console.print(summary)
    from orchestrator.curve import PRUNING_GRID

    levels = ", ".join(f"{100 * level:.4g}%" for level in PRUNING_GRID[:8])
    console.print(
        f"intermediate values (what the pruner compares) at the sparsities {levels}, ... "
        f"({len(PRUNING_GRID)} levels, every trial alike)"
    )
    from orchestrator.report.planner import declared_plan

    # Fixed before any data: what the report's verdict on the sweep's question rests on.
    for line in declared_plan(config):
        console.print(line)
    if config.sequential is not None:
        from orchestrator.report.looks import plan_lines

        for line in plan_lines(config):
            console.print(line)
    for warning in sweep_warnings(config):
        console.print(f"[yellow]warning:[/] {warning}")


def _check_data_files(config: SweepConfig) -> None:
    """Stop (exit 2) where the sweep's data files are missing, with its reader's message."""
    from orchestrator.data import places, registry

    why = places.missing(config.dataset, registry.spec(config.dataset.name))
    if why is not None and not config.dataset.download:
        _fail(why)
    if why is not None:
        click.echo(
            "note: the data files are not here yet: dataset.download fetches them when "
            "the sweep starts (internet access needed)",
            err=True,
        )


def _study_arguments(*, several: bool = False) -> Callable[[Callable], Callable]:
    """SWEEP.yaml (``several``: any number of them), or --study and --storage: how status and
    report name a study."""

    def declare(command: Callable) -> Callable:
        command = _storage_option("the sweep's, with SWEEP.yaml")(command)
        command = click.option(
            "--study", "study_name", help="the study name (instead of SWEEP.yaml)"
        )(command)
        kind = click.Path(path_type=Path)
        if several:
            return click.argument("sweep", nargs=-1, type=kind)(command)
        return click.argument("sweep", type=kind, required=False)(command)

    return declare


def _open_study(
    sweep: Path | None, study_name: str | None, storage_url: str | None
) -> tuple[optuna.Study, SweepConfig, str]:
    """The study named by a sweep file or by --study/--storage (``results.open_study``)."""
    from orchestrator.results import open_study

    _quiet_optuna()
    return open_study(sweep, study_name, storage_url)


def _launcher_options(command: Callable) -> Callable:
    """Every launcher's options of the sweep command (``--partition``, ``--wait``, ...), as
    the launchers declare them (:attr:`launchers.Launcher.options`)."""
    for option in reversed(launchers.options()):
        kind: dict = {"is_flag": True} if option.is_flag else {"type": click.STRING}
        if option.bounds is not None:
            kind = {"type": click.IntRange(*option.bounds)}
        command = click.option(option.flag, option.dest, help=option.help, **kind)(command)
    return command


@main.command()
@click.argument("sweep", type=click.Path(path_type=Path))
@click.option("--devices", help="auto, cpu, or GPU indices like 0,1,3 (default: the YAML's)")
@click.option(
    "--workers-per-device", type=click.IntRange(1, 64), help="worker processes per device"
)
@_storage_option("SQLite in the workspace")
@click.option(
    "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, workspace)"
)
@click.option("--enqueue-only", is_flag=True, help="create and fill the study, run no worker")
@click.option("--fresh", is_flag=True, help="delete an existing study of this name first")
@click.option(
    "--retry-failed",
    is_flag=True,
    help="queue again every configuration and seed whose trials failed for good",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="print the plan (trials done, to copy, to train) and change nothing",
)
@click.option(
    "--launcher",
    type=click.Choice(list(launchers.LAUNCHERS)),
    help="where the workers run: local processes, or a Slurm job array (default: the YAML's)",
)
@_launcher_options
@_allow_failures
def sweep(
    sweep: Path,
    storage_url: str | None,
    tracking_uri: str | None,
    enqueue_only: bool,
    fresh: bool,
    retry_failed: bool,
    dry_run: bool,
    allow_failures: bool,
    **launch: object,
) -> None:
    """Create or resume the study of SWEEP.yaml and run its trials on local workers, or
    submit them as a Slurm job array (--launcher slurm)."""
    from orchestrator import plan, workspace
    from orchestrator.execution import progress, sweep as sweeps
    from orchestrator.study.retrying_storage import StorageUnavailable

    _quiet_optuna()
    config = _load_sweep(sweep)
    given = _given(launch)
    options = {name: value for name, value in given.items() if name not in launchers.FLAGS}
    launcher = launchers.get(launchers.with_flags(config, given), options)
    if options.get("cancel"):
        click.echo(launcher.cancel(_load_study(sweep, storage_url or launcher.default_storage())))
        return
    url = storage_url or launcher.default_storage()
    console = _console()
    if dry_run:
        _check_data_files(config)
        found = sweeps.preview(config, url, launcher.device_class) if not fresh else None
        growth = found.describe() if found else plan.describe(config) + ": all to train (--fresh)"
        console.print(f"study '{config.name}' in {url}: {growth} (dry run: nothing changed)")
        return
    created = " (created now)" if workspace.holds_nothing(url) else ""  # only sweep creates one
    prepared = sweeps.prepare(
        config,
        storage_url=url,
        tracking_uri=tracking_uri,
        fresh=fresh,
        device=launcher.device_class,
        retry_failed=retry_failed,
    )
    growth = prepared.growth.describe() if prepared.growth else plan.describe(config)
    console.print(
        f"study '{config.name}' in {prepared.storage_url}{created}: {growth} "
        f"({prepared.enqueued} enqueued now); MLflow {prepared.tracking_uri}, "
        f"parent run {prepared.parent_run_id}"
    )
    if enqueue_only:
        console.print(
            "enqueue only: start workers with\n"
            f"  orchestrate worker --study {config.name} --storage {prepared.storage_url} "
            f"--tracking-uri {prepared.tracking_uri}"
        )
        return
    outcome = launchers.Outcome()  # a no-op starts no worker (nothing queued or to redraw)
    try:
        if not prepared.idle:
            outcome = launcher.start(prepared, console, wait="wait" in options, sweep_file=sweep)
    except StorageUnavailable as exc:
        _storage_lost(exc)
    if not outcome.followed:
        return
    console.print(progress.summary(prepared.study, config, limit=STATUS_TRIALS))
    if outcome.interrupted:
        click.echo(outcome.stopped, err=True)
        sys.exit(INTERRUPTED)
    if outcome.unfinished:
        _fail(outcome.unfinished, TRIALS_FAILED)
    _check_failures(prepared.study, config, allow_failures)


def _load_sweep(path: Path) -> SweepConfig:
    """The sweep file, its warnings printed."""
    from orchestrator.sweep_file import load_config, warnings as sweep_warnings

    config = load_config(path)
    for warning in sweep_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    return config


def _given(launch: dict[str, object]) -> dict[str, object]:
    """The launch options set on the command line (``is``: ``--gpus-per-worker 0`` is set)."""
    return {name: v for name, v in launch.items() if v is not None and v is not False}


def _load_study(sweep: Path, storage_url: str) -> optuna.Study:
    from orchestrator.results import open_study

    return open_study(sweep, None, storage_url)[0]


@main.command()
@click.option("--study", "study_name", required=True, help="the study (sweep) name")
@_storage_option(None)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N")
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI [env MLFLOW_TRACKING_URI; default: the one the sweep recorded]",
)
@click.option("--threads", type=click.IntRange(1), help="CPU threads for this worker")
@click.option("--index", type=click.IntRange(0), hidden=True, help="slot number (set by sweep)")
@click.option(
    "--supervised",
    is_flag=True,
    hidden=True,
    help="a sweep's parent follows this worker: it reports the failed trials, once (set by sweep)",
)
@click.option(
    "--close-sweep",
    is_flag=True,
    help="when the study is finished, log the comparison to the sweep's parent run and end it",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="first queue again every configuration and seed whose trials failed for good",
)
@_allow_failures
def worker(
    study_name: str,
    storage_url: str,
    device: str,
    tracking_uri: str | None,
    threads: int | None,
    index: int | None,
    supervised: bool,
    close_sweep: bool,
    retry_failed: bool,
    allow_failures: bool,
) -> None:
    """Run trials of an existing study until its queue is done (on any host)."""
    from orchestrator import launchers, stopping, tracking
    from orchestrator.execution import worker as workers
    from orchestrator.study.retrying_storage import StorageUnavailable

    _quiet_optuna()
    if tracking_uri:
        tracking.check_reachable(tracking_uri)
    try:
        done = workers.run_worker(
            study_name,
            storage_url,
            device=device,
            tracking_uri=tracking_uri,
            threads=threads,
            index=index,
            retry_failed=retry_failed,
            host=launchers.hosting().host(),
        )
    except KeyboardInterrupt:  # a second SIGINT/SIGTERM: its trial was requeued on the way
        click.echo("interrupted at once: its trial was requeued", err=True)
        sys.exit(INTERRUPTED)
    except StorageUnavailable as exc:
        if stopping.requested():  # a signal ended the wait for the storage
            _fail(f"interrupted during a storage outage: {exc}", INTERRUPTED)
        _storage_lost(exc)
    trained = done.done - done.copied
    copied = f", {done.copied} copied from earlier results" if done.copied else ""
    click.echo(f"worker done: {trained} trial(s) trained here{copied}")
    if done.stopping:
        click.echo("interrupted: its trial was requeued", err=True)
        sys.exit(INTERRUPTED)
    if close_sweep:
        from orchestrator.execution import sweep as sweeps

        sweeps.close(done.study, done.config, done.tracker.uri)
    if not supervised:
        _check_failures(done.study, done.config, allow_failures)


@main.command()
@_study_arguments()
@click.option(
    "--all",
    "every",
    is_flag=True,
    help=f"list every trial (default: the latest {STATUS_TRIALS})",
)
def status(
    sweep: Path | None, study_name: str | None, storage_url: str | None, every: bool
) -> None:
    """Print a study's progress: trials by state, the best value, what is running, the latest
    trials, and the tasks of the launcher that runs its workers."""
    from orchestrator.execution import progress
    from orchestrator.study import growth, snapshot

    study, config, _ = _open_study(sweep, study_name, storage_url)
    # One read of the study serves every table (a sequential sweep's looks read the curves).
    stored = snapshot.trials(study, curves=config.sequential is not None)
    asked = growth.in_sweep(config, stored)
    console = _console()
    console.print(progress.render(progress.rows(study, config, asked), config))
    limit = None if every else STATUS_TRIALS
    console.print(
        progress.summary(study, config, asked, left_out=len(stored) - len(asked), limit=limit)
    )
    if sweep is not None:
        from orchestrator.sweep_file import load_config

        for launcher in launchers.recorded(load_config(sweep)):
            table = launcher.tasks_table(study)
            if table is not None:
                console.print(table)


@main.command()
@click.argument("sweep", type=click.Path(path_type=Path))
@_storage_option("the sweep's")
def cancel(sweep: Path, storage_url: str | None) -> None:
    """Cancel the launcher tasks of SWEEP.yaml (a Slurm job array) and requeue the trials
    they were running."""
    from orchestrator.sweep_file import load_config

    _quiet_optuna()
    config = load_config(sweep)
    found = launchers.recorded(config)
    if not found:
        _fail(
            f"sweep '{config.name}' has no launcher tasks recorded in its workspace (a Slurm "
            "job array; local workers stop with their sweep's Ctrl-C)"
        )
    for launcher in found:
        url = storage_url or launcher.default_storage()
        click.echo(launcher.cancel(_load_study(sweep, url)))


@main.command()
@_study_arguments(several=True)
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI [env MLFLOW_TRACKING_URI; default: the one the sweep recorded]",
)
@click.option(
    "--format",
    "formats",
    default="csv,md,latex,html,json",
    show_default=True,
    help="comma-separated formats of the tables",
)
@click.option(
    "--sparsity-levels",
    "levels",
    help="comma-separated sparsities of the at_sparsity table [default: those of "
    "0.5,0.8,0.9,0.95 the sweep's schedule reaches]",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    help="folder for tables and plots (default: <workspace>/report); with several sweeps, "
    "each writes to OUTPUT/<name> and their family to OUTPUT/family",
)
@click.option(
    "--margin",
    type=click.FloatRange(min=0.0, min_open=True, max=100.0),
    help="equivalence margin in accuracy points: a family-wise TOST for every paired "
    "difference (default: the sweep's report.margin)",
)
@click.option(
    "--power",
    type=click.FloatRange(min=0.0, min_open=True, max=1.0, max_open=True),
    help="the seed planner's wanted chance of a verdict (default: the sweep's report.power)",
)
@click.option("--no-log", is_flag=True, help="write the files only; log nothing to MLflow")
@click.option(
    "--from-export",
    is_flag=True,
    help="compute the tables again from the trials.csv and steps.csv an earlier report wrote "
    "to the output folder, without the study or MLflow (nothing is logged)",
)
def report(
    sweep: tuple[Path, ...],
    study_name: str | None,
    storage_url: str | None,
    tracking_uri: str | None,
    formats: str,
    levels: str | None,
    output: Path | None,
    margin: float | None,
    power: float | None,
    no_log: bool,
    from_export: bool,
) -> None:
    """Write the tables and plots of SWEEP.yaml (or of --study); log them to its parent MLflow
    run. With several SWEEPs, also judge their primary endpoints as one family."""
    from orchestrator import report as reports, workspace
    from orchestrator.config import ConfigError
    from orchestrator.report import stamp as report_stamp
    from orchestrator.report.options import levels_within_reach
    from orchestrator.results.studies import differs
    from orchestrator.sweep_file import load_config

    try:
        chosen = reports.parse_formats(formats)
        asked_levels = None if levels is None else reports.parse_levels(levels)
        if len(sweep) > 1 and output is None:
            raise ConfigError("several sweeps need --output: each writes to OUTPUT/<name>")
        if from_export and not sweep:
            raise ConfigError("--from-export reads a sweep's export: give its SWEEP.yaml")
        given = None if margin is None else margin / 100
        results, stamp = [], None
        for path in sweep or (None,):
            if from_export and path is not None:
                config = load_config(path)
                folder = workspace.report_folder(config, output, several=len(sweep) > 1)
                sparsities = asked_levels or levels_within_reach(config)
                result = reports.rebuild(
                    folder, config, levels=sparsities, margin=given, power=power
                )
            else:
                study, config, _ = _open_study(path, study_name, storage_url)
                if path is not None:
                    for line in differs(load_config(path), config):
                        click.echo(f"note: {path}: {line}")
                folder = workspace.report_folder(config, output, several=len(sweep) > 1)
                sparsities = asked_levels or levels_within_reach(config)
                asked = dict(uri=tracking_uri, levels=sparsities, margin=given, power=power)
                asked["log"] = not no_log
                stamp = report_stamp.of(study, config, formats=chosen, **asked)
                if len(sweep) < 2 and report_stamp.written(folder, stamp):
                    click.echo(
                        f"study '{config.name}': nothing changed since the report in "
                        f"{folder} was written; nothing rewritten"
                    )
                    continue
                result = reports.build(
                    study,
                    config,
                    tracking_uri=tracking_uri,
                    levels=sparsities,
                    margin=given,
                    power=power,
                )
            for line in reports.publish(result, folder, chosen, stamp, log=not no_log):
                click.echo(line, err=line.startswith("warning:"))
            results.append(result)
        if len(sweep) > 1 and output is not None:
            from orchestrator.report.family import one_margin, write_family

            endpoints = {result.study: result.tables["endpoint"] for result in results}
            judged = one_margin({result.margin for result in results})
            written = write_family(endpoints, output / "family", chosen, judged)
            click.echo(f"{len(endpoints)} sweeps' endpoints as one family: {len(written)} files")
    except ConfigError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()

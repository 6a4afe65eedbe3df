"""The Slurm launcher: a sweep's workers as one job array (``--launcher slurm``).

Everything Slurm is here: the batch script, submission, the tasks' state, cancelling, the
task a worker runs in, what a worker does on Slurm's signals, and the status table.

The batch script is written into the sweep's workspace (:func:`batch_script_file`), so
users can read and adapt it; every array task ``exec``s one ``orchestrate worker`` so that
Slurm's signals reach it (USR1 before the time limit: the task abandons its step, requeues
its trial and itself; SIGTERM on ``scancel`` or preemption: the same without requeueing
itself). Only the Slurm client commands are used (``sbatch``, ``scontrol``, ``scancel``);
nothing here needs accounting (``sacct``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator import ConfigError, stored_names, workspace
from orchestrator.launchers.base import Launcher, Option, Outcome

if TYPE_CHECKING:
    import optuna
    from rich.console import Console
    from rich.table import Table

    from orchestrator.config import SweepConfig
    from orchestrator.execution.sweep import Prepared

POLL_SECONDS = 5.0
logger = logging.getLogger(__name__)
CANCELLED_REASON = "its Slurm task was cancelled"
# Task states in which a worker may still run or start (Slurm's JobState names).
ACTIVE_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}
)

FAILED_STATES = frozenset({"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"})

__all__ = [
    "SlurmLauncher",
    "SlurmTasks",
    "Task",
    "batch_script",
    "batch_script_file",
    "cancel",
    "cancel_and_requeue",
    "job_ids",
    "jobs_file",
    "log_file",
    "submit",
    "tasks",
]


@dataclass(frozen=True)
class Task:
    """One array task as ``scontrol show job`` describes it."""

    id: str  # "<array job>_<task>"
    state: str
    where: str  # the node it runs on, or why it waits
    run_time: str
    restarts: int

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def batch_script_file(config: SweepConfig) -> Path:
    """The batch script ``--launcher slurm`` writes and submits."""
    return workspace.launcher_folder(config, SlurmLauncher.name) / "worker.sbatch"


def jobs_file(config: SweepConfig) -> Path:
    """The ids of the job arrays submitted for the sweep, one per line."""
    return workspace.launcher_folder(config, SlurmLauncher.name) / "jobs"


def log_file(config: SweepConfig) -> str:
    """The output of every array task (``%A``: the array's job id, ``%a``: the task)."""
    return str((workspace.launcher_folder(config, SlurmLauncher.name) / "%A_%a.out").resolve())


def batch_script(
    config: SweepConfig, *, storage_url: str, tracking_uri: str, python: str = sys.executable
) -> str:
    """The batch script of the sweep's job array: every field of ``execution.slurm`` as an
    ``#SBATCH`` line, then one worker per task."""
    slurm = config.execution.slurm
    gpus = gpus_per_worker(config)
    options = [
        f"--job-name=orchestrate-{config.name}",
        f"--array=0-{slurm.workers - 1}",
        "--ntasks=1",
        f"--cpus-per-task={slurm.cpus_per_worker}",
    ]
    if gpus:
        options.append(f"--gres=gpu:{gpus}")
    for flag, value in (
        ("partition", slurm.partition),
        ("time", slurm.time),
        ("mem", slurm.memory),
        ("account", slurm.account),
    ):
        if value is not None:
            options.append(f"--{flag}={value}")
    if slurm.signal_seconds:
        options.append(f"--signal=B:USR1@{slurm.signal_seconds}")
    options += ["--requeue", "--open-mode=append", f"--output={log_file(config)}"]
    options += slurm.extra
    device = "cuda" if gpus else "cpu"
    worker = [
        python,
        "-m",
        "orchestrator",
        "worker",
        "--study",
        config.name,
        "--storage",
        storage_url,
        "--tracking-uri",
        tracking_uri,
        "--device",
        device,
        "--allow-failures",
        "--close-sweep",
    ]
    lines = [
        "#!/bin/bash",
        f"# Workers of the sweep '{config.name}', written by `orchestrate sweep --launcher slurm`",
        "# from execution.slurm (docs/slurm.md). Submit more workers with",
        f"#   sbatch {shlex.quote(str(batch_script_file(config).resolve()))}",
        *(f"#SBATCH {option}" for option in options),
        "",
        "set -e",
        f"cd {shlex.quote(os.getcwd())}",
        *slurm.setup,
        "# exec: Slurm's USR1 (time limit near) and SIGTERM (scancel, preemption) reach the",
        "# worker, which requeues its trial; it resumes at its last completed IMP cycle.",
        f'exec {shlex.join(worker)} --threads "${{SLURM_CPUS_PER_TASK:-1}}" '
        '--index "${SLURM_ARRAY_TASK_ID:-0}"',
        "",
    ]
    return "\n".join(lines)


# More tasks than this writing one SQLite tracking file over a shared filesystem wait on its
# lock (and NFS locks are not what SQLite expects): an MLflow server is what the cluster needs.
SQLITE_WRITERS = 4


def tracking_warning(config: SweepConfig, tracking_uri: str) -> str | None:
    """What to say when the job array's tasks would all write one SQLite tracking file."""
    from orchestrator import workspace

    workers = config.execution.slurm.workers
    if workers <= SQLITE_WRITERS or workspace.sqlite_file(tracking_uri) is None:
        return None
    return (
        f"{workers} tasks will write one SQLite tracking file ({tracking_uri}) over the shared "
        "filesystem: they wait on its lock, and the outbox keeps what cannot be sent. Start an "
        "MLflow server (on the login node or as its own job, docs/slurm.md#tracking) and pass "
        "--tracking-uri http://HOST:5000, or set tracking.uri"
    )


def gpus_per_worker(config: SweepConfig) -> int:
    """The GPUs each task asks for: ``execution.slurm.gpus_per_worker``, or when unset none
    for a sweep on ``execution.devices: cpu`` (a CPU cluster has no GPU to give) and one
    otherwise."""
    chosen = config.execution.slurm.gpus_per_worker
    if chosen is not None:
        return chosen
    return 0 if config.execution.devices == "cpu" else 1


def submit(config: SweepConfig, *, storage_url: str, tracking_uri: str) -> str:
    """Write the batch script into the workspace, submit it, record and return the job id."""
    script = batch_script_file(config)
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(batch_script(config, storage_url=storage_url, tracking_uri=tracking_uri))
    try:
        output = _slurm("sbatch", "--parsable", str(script))
    except ConfigError as exc:
        if "generic resource" not in str(exc) and "gres" not in str(exc).lower():
            raise
        raise ConfigError(
            f"the cluster refused --gres=gpu:{gpus_per_worker(config)} ({exc}): for CPU "
            "workers set execution.slurm.gpus_per_worker: 0 (or execution.devices: cpu), "
            "else pick a partition with GPUs (execution.slurm.partition)"
        ) from None
    job = output.strip().split(";", 1)[0]
    with jobs_file(config).open("a") as jobs:
        jobs.write(job + "\n")
    return job


def job_ids(config: SweepConfig) -> list[str]:
    """The job arrays submitted for the sweep, oldest first."""
    path = jobs_file(config)
    return path.read_text().split() if path.exists() else []


def tasks(jobs: Sequence[str]) -> list[Task]:
    """The array tasks of ``jobs`` that Slurm still knows (it forgets ended jobs after
    ``MinJobAge``), by ``scontrol show job``."""
    found = []
    for job in jobs:
        try:
            output = _slurm("scontrol", "show", "job", "--oneliner", job)
        except ConfigError as exc:
            if "Invalid job id" in str(exc):  # ended and forgotten
                continue
            raise
        for line in output.splitlines():
            fields = dict(token.split("=", 1) for token in line.split() if "=" in token)
            if "JobId" not in fields:
                continue
            index = fields.get("ArrayTaskId")
            state = fields.get("JobState", "?")
            where = fields.get("NodeList") if state == "RUNNING" else fields.get("Reason")
            found.append(
                Task(
                    id=f"{fields.get('ArrayJobId', job)}_{index}" if index else fields["JobId"],
                    state=state,
                    where=where if where not in (None, "(null)", "None") else "-",
                    run_time=fields.get("RunTime", "-"),
                    restarts=int(fields.get("Restarts", 0)),
                )
            )
    return found


def cancel(jobs: Sequence[str]) -> None:
    """Cancel the tasks of ``jobs``; their workers get SIGTERM and requeue their trials."""
    if jobs:
        _slurm("scancel", *jobs)


def cancel_and_requeue(
    study: optuna.Study, jobs: Sequence[str], *, timeout: float = 180.0
) -> tuple[int, list[int]]:
    """Cancel the tasks of ``jobs``, wait until they have ended, and requeue (without counting
    a failure) the trials still RUNNING on them: their workers were killed before they could.

    Returns:
        How many tasks were active, and the numbers of the trials requeued here.
    """
    active = [task for task in tasks(jobs) if task.active]
    if active:  # scancel fails on jobs that have all ended
        cancel(jobs)
    deadline = time.monotonic() + timeout
    while active:
        time.sleep(2.0)
        if not any(task.active for task in tasks(jobs)):
            break
        # Again: a task that got its time-limit warning just before may have requeued itself
        # after the first scancel (scancel complains about the tasks that already ended).
        with contextlib.suppress(ConfigError):
            cancel(jobs)
        if time.monotonic() > deadline:
            still = ", ".join(jobs)
            raise ConfigError(f"Slurm tasks of {still} still active after {timeout:.0f} s")
    from optuna.trial import TrialState

    from orchestrator import tracking
    from orchestrator.study import queue

    ours = tuple(f"{job}_" for job in jobs)
    requeued = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        task = trial.user_attrs.get(stored_names.TRIAL_TASK, "")
        if (task in jobs or task.startswith(ours)) and queue.fail_and_requeue(
            study, trial, CANCELLED_REASON, max_retries=None, on_failed=tracking.close_trial_run
        ):
            requeued.append(trial.number)
    return len(active), requeued


def _slurm(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ConfigError(
            f"'{command[0]}' not found: --launcher slurm runs on a host with the Slurm client "
            "commands (a login node)"
        ) from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"'{shlex.join(command)}' did not answer within 60 s") from None
    if done.returncode != 0:
        raise ConfigError(f"'{shlex.join(command)}' failed: {done.stderr.strip()}")
    return done.stdout


class SlurmTasks:
    """Follows a sweep's job arrays for ``--wait``, as
    :class:`orchestrator.launchers.local.Supervisor` follows local workers: until no task is
    active, showing progress meanwhile."""

    def __init__(self, study: optuna.Study, config: SweepConfig, jobs: Sequence[str]) -> None:
        self.study = study
        self.config = config
        self.jobs = list(jobs)
        self.signals = 0
        self.started: set[str] = set()  # its workers run in Slurm tasks, not started here

    STOPPING = (
        "stopped following: the Slurm tasks go on (`orchestrate status` shows them, "
        "`orchestrate cancel` stops them)"
    )

    def interrupt(self, *_: object) -> None:
        """Stop following; the tasks go on (``orchestrate cancel`` stops them)."""
        self.signals += 1

    def run(self, show: Callable[[dict[str, Any]], None] = lambda rows: None) -> int:
        """Follow until every task has ended; returns how many ended in a failed state."""
        from orchestrator.execution import progress

        seen: dict[str, Task] = {}
        while not self.signals:
            try:
                current = tasks(self.jobs)
            except ConfigError as exc:  # the controller restarting, say: ask again
                logger.warning("could not read the Slurm tasks' state: %s", exc)
                time.sleep(POLL_SECONDS)
                continue
            seen.update((task.id, task) for task in current)
            show(progress.rows(self.study, self.config))
            if not any(task.active for task in current):
                break
            time.sleep(POLL_SECONDS)
        show(progress.rows(self.study, self.config))
        return sum(1 for task in seen.values() if task.state in FAILED_STATES)


def tasks_table(tasks: Sequence[Task], jobs: Sequence[str], study: optuna.Study) -> Table:
    """The sweep's Slurm array tasks, with the trial each one runs."""
    from optuna.trial import TrialState
    from rich.table import Table

    running = {
        t.user_attrs.get(stored_names.TRIAL_TASK): t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    }
    table = Table(title=f"Slurm job(s) {', '.join(jobs)}")
    for column in ("task", "state", "node / reason", "run time", "restarts", "trial"):
        table.add_column(column)
    for task in tasks:
        trial = running.get(task.id)
        table.add_row(
            task.id,
            task.state,
            task.where,
            task.run_time,
            str(task.restarts),
            "-" if trial is None else str(trial),
        )
    if not tasks:
        table.caption = "no task known to Slurm any more (ended jobs are forgotten after MinJobAge)"
    return table


class SlurmLauncher(Launcher):
    """The sweep's workers as one Slurm job array (``execution.slurm``), submitted from a
    login node; ``--wait`` follows it, else the tasks run on without the sweep command."""

    name: ClassVar[str] = "slurm"
    options: ClassVar[tuple[Option, ...]] = (
        Option(
            "--workers",
            "slurm: array tasks (workers)",
            "execution.slurm.workers",
            bounds=(1, 100_000),
        ),
        Option("--partition", "slurm: partition", "execution.slurm.partition"),
        Option("--time", "slurm: time limit per task, e.g. 4:00:00", "execution.slurm.time"),
        Option(
            "--gpus-per-worker",
            "slurm: GPUs per task",
            "execution.slurm.gpus_per_worker",
            bounds=(0, 64),
        ),
        Option(
            "--cpus-per-worker",
            "slurm: CPUs per task",
            "execution.slurm.cpus_per_worker",
            bounds=(1, 1024),
        ),
        Option("--account", "slurm: account to charge", "execution.slurm.account"),
        Option("--wait", "slurm: follow the sweep until its tasks have ended", is_flag=True),
        Option("--cancel", "slurm: cancel the sweep's tasks (as `cancel`)", is_flag=True),
    )
    # USR1 comes before the time limit, SIGTERM on scancel or preemption; Slurm follows its
    # SIGTERM with SIGKILL after KillWait (30 s by default): too soon to finish a step.
    preemption_signals: ClassVar[tuple[signal.Signals, ...]] = (signal.SIGUSR1, signal.SIGTERM)
    requeue_signals: ClassVar[tuple[signal.Signals, ...]] = (signal.SIGUSR1,)
    shared_filesystem: ClassVar[bool] = True

    def device_class(self) -> str:
        """``cuda`` when each task gets a GPU (``gpus_per_worker``), else ``cpu``."""
        return "cuda" if gpus_per_worker(self.config) else "cpu"

    def summary(self) -> str:
        """The job array's resolved options: tasks, and each task's CPUs and GPUs."""
        slurm = self.config.execution.slurm
        gpus = gpus_per_worker(self.config)
        asked = f"--gres=gpu:{gpus}" if gpus else "no GPU"
        chosen = "" if slurm.gpus_per_worker is not None else " (from execution.devices)"
        return (
            f"Slurm job array: {slurm.workers} task(s), each --cpus-per-task="
            f"{slurm.cpus_per_worker} and {asked}{chosen}, workers on {self.device_class()}"
        )

    def start(
        self, prepared: Prepared, console: Console, *, wait: bool, sweep_file: Path
    ) -> Outcome:
        """Submit the job array; with ``wait``, follow it until no task is active."""
        from orchestrator.execution import sweep
        from orchestrator.study import counts

        warning = tracking_warning(self.config, prepared.tracking_uri)
        if warning:
            console.print(f"[yellow]warning:[/] {warning}")
        job = submit(
            self.config, storage_url=prepared.storage_url, tracking_uri=prepared.tracking_uri
        )
        console.print(
            f"submitted job array {job}: {self.config.execution.slurm.workers} worker(s), batch "
            f"script {batch_script_file(self.config)}"
        )
        if not wait:
            console.print(
                f"follow it with `orchestrate status {sweep_file}`; stop it with "
                f"`orchestrate cancel {sweep_file}`"
            )
            return Outcome(followed=False)
        tasks = SlurmTasks(prepared.study, self.config, [job])
        _, interrupted = sweep.follow(prepared, self.config, tasks, console, replay_spools=False)
        if interrupted:
            return Outcome(
                interrupted=True,
                stopped=f"stopped following: the Slurm tasks go on (`orchestrate status "
                f"{sweep_file}`; `orchestrate cancel {sweep_file}` stops them)",
            )
        study = prepared.study
        left = counts.expected(study, self.config) - counts.finished(study, self.config)
        if left <= 0:
            return Outcome()
        return Outcome(
            unfinished=f"the Slurm tasks ended with {left} trial(s) not finished (time limits, "
            "cancellation?): run the same command again to resume"
        )

    def cancel(self, study: optuna.Study) -> str:
        """Cancel the sweep's tasks, wait until they have ended, requeue their trials."""
        jobs = job_ids(self.config)
        if not jobs:
            raise ConfigError(
                f"sweep '{self.config.name}' has no Slurm job recorded in its workspace"
            )
        cancelled, requeued = cancel_and_requeue(study, jobs)
        return (
            f"cancelled {cancelled} task(s) of job(s) {', '.join(jobs)}; "
            f"requeued {len(requeued)} running trial(s)"
            + (f" ({', '.join(map(str, requeued))})" if requeued else "")
        )

    def has_tasks(self) -> bool:
        return bool(job_ids(self.config))

    def tasks_table(self, study: optuna.Study) -> Table | None:
        jobs = job_ids(self.config)
        return tasks_table(tasks(jobs), jobs, study) if jobs else None

    @classmethod
    def current_task(cls) -> str | None:
        """``<array job>_<task>`` (or the job id) from the environment Slurm gives its tasks."""
        array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        if array and index:
            return f"{array}_{index}"
        return os.environ.get("SLURM_JOB_ID")

    @classmethod
    def requeue_task(cls, task: str) -> None:
        """``scontrol requeue``: the task goes back to Slurm's queue (stopped if it still runs)."""
        try:
            _slurm("scontrol", "requeue", task)
        except ConfigError as exc:
            print(f"warning: could not requeue Slurm task {task}: {exc}", file=sys.stderr)

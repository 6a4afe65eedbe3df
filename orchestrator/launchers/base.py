"""The launcher interface: how a sweep's workers are started, followed and stopped.

Workers coordinate only through the study (they claim queued trials, heartbeat, requeue), so a
launcher does little: it starts ``orchestrate worker`` processes somewhere, follows them while
the sweep command shows progress, cancels them, says which of its tasks a worker runs in, and
what a worker does after a preemption signal. Everything else (the study, the queue, tracking,
the report) is the same for every launcher.

This module imports nothing heavy: ``orchestrate --help`` builds the sweep command's options
from the launchers' :attr:`Launcher.options`.
"""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from orchestrator import ConfigError

if TYPE_CHECKING:
    import optuna
    from rich.console import Console, RenderableType

    from orchestrator.config import SweepConfig
    from orchestrator.execution.sweep import Prepared
    from orchestrator.execution.worker import Host

__all__ = ["Launcher", "Option", "Outcome"]


@dataclass(frozen=True)
class Option:
    """A command-line option of ``orchestrate sweep`` that sets a field of the launcher's
    config section (``--partition`` → ``execution.slurm.partition``).

    ``path`` ``None``: a flag the launcher reads itself (``--wait``, ``--cancel``). ``bounds``:
    an integer option's range, the schema's for its field (a test holds them equal), shown in
    ``--help`` and checked by click; without them the option is text.
    """

    flag: str
    help: str
    path: str | None = None
    is_flag: bool = False
    bounds: tuple[int, int] | None = None

    @property
    def dest(self) -> str:
        """The keyword click passes the value as (``--gpus-per-worker`` → ``gpus_per_worker``)."""
        return self.flag.removeprefix("--").replace("-", "_")


@dataclass(frozen=True)
class Outcome:
    """How a launch ended, for the sweep command's exit code.

    Args:
        followed: False when the workers were submitted and run on without this process (a
            Slurm job array without ``--wait``): nothing more to say.
        interrupted: a signal stopped the following.
        stopped: what to print when interrupted (how to resume, or that the workers go on).
        unfinished: why the study is not finished though every worker has ended (exit 1).
    """

    followed: bool = True
    interrupted: bool = False
    stopped: str = "interrupted: run the same command again to resume"
    unfinished: str | None = None


class Launcher(ABC):
    """Starts a sweep's workers on one kind of machine and follows them.

    A new engine (Kubernetes, a cloud batch service) is one subclass in a module of
    ``orchestrator/launchers/``, its section in ``ExecutionConfig`` (``config.py``) and one
    entry in ``launchers.LAUNCHERS``.
    """

    name: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    # Signals after which a worker abandons its step and requeues its trial (a preemption),
    # however often they come; SIGINT and SIGTERM do the same, and stop it at once the
    # second time unless they are listed here.
    preemption_signals: ClassVar[tuple[signal.Signals, ...]] = (signal.SIGUSR1,)
    # Of those, the signals after which the worker also asks to be started again.
    requeue_signals: ClassVar[tuple[signal.Signals, ...]] = ()
    # Workers on other hosts share the study through a network filesystem, where SQLite's
    # locking breaks: the default study storage is then a journal file.
    shared_filesystem: ClassVar[bool] = False

    def __init__(self, config: SweepConfig) -> None:
        self.config = config

    def default_storage(self) -> str:
        """The sweep's study storage URL when none is given."""
        from orchestrator import workspace

        return workspace.default_storage(self.config, journal=self.shared_filesystem)

    def summary(self) -> str | None:
        """What this launcher will ask of its machines, resolved (``validate`` prints it);
        None where there is nothing to say beyond the config."""
        return None

    @abstractmethod
    def device_class(self) -> str:
        """Where the workers will train, as a trial's key names it (``cpu``, ``cuda``): what
        the sweep plans its reuse of finished results with (``identity.device_class``)."""

    @abstractmethod
    def start(
        self, prepared: Prepared, console: Console, *, wait: bool, sweep_file: Path
    ) -> Outcome:
        """Start the sweep's workers; follow them with live progress until they have ended
        (always, or only with ``wait`` where they can run without this process).

        Args:
            prepared: the study, filled, and where its runs are tracked (``sweep.prepare``).
            console: where progress and notices go.
            wait: follow workers that could run on without this process.
            sweep_file: the sweep's YAML, named in the hints printed.
        """

    def cancel(self, study: optuna.Study) -> str:
        """Stop the sweep's workers and requeue the trials they were running.

        Returns:
            What was done, as one line.
        """
        raise ConfigError(f"the {self.name} launcher records no tasks to cancel")

    def has_tasks(self) -> bool:
        """Whether the sweep's workspace records tasks of this launcher (submitted jobs)."""
        return False

    def tasks_table(self, study: optuna.Study) -> RenderableType | None:
        """The launcher's tasks for ``orchestrate status``, with the trial each one runs."""
        return None

    @classmethod
    def current_task(cls) -> str | None:
        """The task of this launcher the calling process runs in, if any."""
        return None

    @classmethod
    def host(cls) -> Host:
        """What a worker running in this launcher's task needs of it: the task, the signals
        it reacts to, and how to requeue the task (handed to ``execution.worker``)."""
        from orchestrator.execution.worker import Host

        return Host(
            task=cls.current_task(),
            preemption_signals=tuple(cls.preemption_signals),
            requeue_signals=tuple(cls.requeue_signals),
            requeue_task=cls.requeue_task,
        )

    @classmethod
    def requeue_task(cls, task: str) -> None:
        """Start ``task`` again later: a worker that got one of :attr:`requeue_signals` and
        left work behind calls it as it exits."""
        raise NotImplementedError(f"the {cls.name} launcher cannot requeue a task")

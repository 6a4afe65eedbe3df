"""Where a sweep's workers run: local processes, one per device slot, or a Slurm job array.

``execution.launcher`` (or ``--launcher``) picks one from :data:`LAUNCHERS`. A new engine is
one module here with a :class:`Launcher` subclass, its section in ``ExecutionConfig``, and one
entry below (docs/ARCHITECTURE.md, "A launcher").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator import ConfigError
from orchestrator.launchers.base import Launcher, Option, Outcome
from orchestrator.launchers.local import LocalLauncher
from orchestrator.launchers.slurm import SlurmLauncher

if TYPE_CHECKING:
    from orchestrator.config import SweepConfig

LAUNCHERS: dict[str, type[Launcher]] = {
    LocalLauncher.name: LocalLauncher,
    SlurmLauncher.name: SlurmLauncher,
}

# The sweep command's flags that set launch fields of the config, by option name.
FLAGS = {
    "launcher": "execution.launcher",
    "devices": "execution.devices",
    "workers_per_device": "execution.workers_per_device",
}

__all__ = [
    "FLAGS",
    "LAUNCHERS",
    "Launcher",
    "Option",
    "Outcome",
    "get",
    "hosting",
    "options",
    "recorded",
    "with_flags",
]


def get(config: SweepConfig, given: Mapping[str, Any] | None = None) -> Launcher:
    """The launcher ``execution.launcher`` names, for ``config``.

    Args:
        config: the sweep, its launch fields resolved.
        given: the launcher options set on the command line (by :attr:`Option.dest`); one
            that the chosen launcher does not take is refused, naming the launcher that does.
    """
    try:
        launcher = LAUNCHERS[config.execution.launcher](config)
    except KeyError:
        known = ", ".join(LAUNCHERS)
        raise ConfigError(
            f"execution.launcher: unknown launcher '{config.execution.launcher}' ({known})"
        ) from None
    own = {option.dest for option in launcher.options}
    # In the order the options are declared, whatever the order on the command line.
    foreign = [o.dest for o in options() if o.dest in (given or {}) and o.dest not in own]
    if foreign:
        owners = sorted(
            {cls.name for cls in LAUNCHERS.values() for o in cls.options if o.dest in foreign}
        )
        flags = ", ".join(f"--{dest.replace('_', '-')}" for dest in foreign)
        raise ConfigError(f"{flags}: only with --launcher {' or '.join(owners)}")
    return launcher


def options() -> list[Option]:
    """Every launcher's command-line options, once each (the sweep command offers them all)."""
    seen: dict[str, Option] = {}
    for cls in LAUNCHERS.values():
        for option in cls.options:
            seen.setdefault(option.dest, option)
    return list(seen.values())


def recorded(config: SweepConfig) -> list[Launcher]:
    """The launchers that recorded tasks in the sweep's workspace (for cancel and status)."""
    found = (cls(config) for cls in LAUNCHERS.values())
    return [launcher for launcher in found if launcher.has_tasks()]


def hosting() -> type[Launcher]:
    """The launcher whose task this process runs in (a worker asks: Slurm sets its task in
    the environment); local when none claims it."""
    for cls in LAUNCHERS.values():
        if cls.current_task() is not None:
            return cls
    return LocalLauncher


def with_flags(config: SweepConfig, given: Mapping[str, Any]) -> SweepConfig:
    """``config`` with the launch fields the command line sets (``--devices``, ``--launcher``,
    a launcher's options, by option name in ``given``); they leave the study's identity as
    it is."""
    paths = {**FLAGS, **{o.dest: o.path for o in options() if o.path}}
    for name, value in given.items():
        if name in paths:
            try:
                config = config.with_params({paths[name]: value})
            except ConfigError as exc:
                # The schema's words, for the flag the user typed rather than the field.
                detail = str(exc).rsplit(f"{paths[name]}: ", 1)[-1]
                raise ConfigError(f"--{name.replace('_', '-')} {value}: {detail}") from None
    return config

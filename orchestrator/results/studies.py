"""A study as a read command names it: by its sweep file, or by its name and storage.

``orchestrate status``, ``orchestrate report`` and :func:`orchestrator.open` find a study
here, so they take the same arguments and say the same things when it is not there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import ConfigError, launchers, workspace

if TYPE_CHECKING:
    import optuna

    from orchestrator.config import SweepConfig

__all__ = ["differs", "open_study"]


def open_study(
    sweep: Path | None,
    study_name: str | None,
    storage_url: str | None,
) -> tuple[optuna.Study, SweepConfig, str]:
    """The study named by a sweep file (its storage: ``storage_url``, else the sweep's own),
    or by ``study_name`` in ``storage_url``, with the config it holds; a sweep file's
    ``report`` section replaces the stored one (how the report judges is the file's to say
    now, and changing it changes no result: ``identity.experiment_hash``).

    Args:
        sweep: the sweep's YAML, or None.
        study_name: the study's name, with ``storage_url``, when no ``sweep`` is given.
        storage_url: the Optuna storage URL; a file that does not exist is refused, never
            created (only ``orchestrate sweep`` creates a sweep's storage).

    Returns:
        The study, its config and the storage URL it was read from.

    Raises:
        ConfigError: no sweep file or study name given, the file is bad, the storage's file
            is missing, it cannot be opened or holds no such study; the message names the
            storage.
    """
    from orchestrator.study import study as studies
    from orchestrator.sweep_file import load_config

    config = None
    if sweep is not None:
        config = load_config(sweep)
        url = storage_url or launchers.get(config).default_storage()
        study_name = config.name
    elif study_name and storage_url:
        url = storage_url
    else:
        raise ConfigError("give a SWEEP.yaml, or both --study and --storage")
    # Where the sweep ran with its own --storage, its default is the wrong place to look.
    hint = (
        "; a sweep run with --storage is read with the same --storage (or ORCHESTRATE_STORAGE)"
        if storage_url is None
        else ""
    )
    if workspace.holds_nothing(url):
        raise ConfigError(
            f"no study storage at {url}: no sweep has run with it (orchestrate sweep creates "
            f"it){hint}"
        )
    try:
        study, stored = studies.load_study(study_name, studies.open_storage(url))
    except ConfigError as exc:
        raise ConfigError(f"{exc} at {url}{hint}") from None
    if config is not None:
        stored = stored.model_copy(update={"report": config.report})
    return study, stored, url


# What a trial computes, and which trials the sweep asks for: where the YAML and the study
# differ there, a report of the study is not a report of the YAML.
_COMPARED = ("seeds", "model", "dataset", "train", "alds", "imp", "search", "sequential")


def differs(given: SweepConfig, stored: SweepConfig) -> list[str]:
    """What a sweep file sets otherwise than the configuration its study holds (the study's
    is what status and the report show), a line per section.

    Args:
        given: the sweep file's config.
        stored: the config its study holds.
    """
    from orchestrator.config_fields import shorten

    lines = []
    for section in _COMPARED:
        ours, theirs = getattr(given, section), getattr(stored, section)
        if ours != theirs:
            shown, held = (shorten(str(_plain(value))) for value in (ours, theirs))
            lines.append(
                f"its {section} ({shown}) is not the study's ({held}); this reports the study's "
                "trials, as its last start left them"
            )
    return lines


def _plain(value: object) -> object:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump else list(value) if isinstance(value, tuple) else value

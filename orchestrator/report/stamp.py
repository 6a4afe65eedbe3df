"""What a report folder was written from, so that a report with nothing new rewrites nothing.

A report is a function of the study's trials (their states, values and runs: a trial's curve
is logged before it completes and never after), of the options it was asked with and of the
code that draws it. :func:`of` hashes those, without reading MLflow; :func:`written` says
whether ``folder`` holds every file of a report with that stamp; :func:`keep` records it
after a report is written and logged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import workspace
from orchestrator.data.digests import sources_digest

if TYPE_CHECKING:
    import optuna

    from orchestrator.config import SweepConfig

__all__ = ["keep", "of", "written"]


def of(study: optuna.Study, config: SweepConfig, **options: Any) -> str:
    """The stamp of the report of ``study`` asked with ``options`` (tracking URI, levels,
    margin, power, formats): 24 hex digits."""
    content = hashlib.sha256(config.model_dump_json().encode())
    content.update(json.dumps(options, sort_keys=True, default=str).encode())
    for trial in study.get_trials(deepcopy=False):
        ended = trial.datetime_complete.isoformat() if trial.datetime_complete else ""
        attrs = json.dumps(trial.user_attrs, sort_keys=True, default=str)
        content.update(
            f"|{trial.number}:{trial.state.name}:{trial.values}:{ended}:{attrs}".encode()
        )
    content.update(sources_digest(tuple(sorted(Path(__file__).parent.glob("*.py")))).encode())
    return content.hexdigest()[:24]


def written(folder: Path, stamp: str) -> bool:
    """Whether ``folder`` holds a report of ``stamp``, every one of its files still there."""
    path = workspace.report_stamp_file(folder)
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return kept.get("stamp") == stamp and all((folder / name).is_file() for name in kept["files"])


def keep(folder: Path, stamp: str, files: Sequence[Path]) -> None:
    """Record that ``folder`` holds ``files``, the report of ``stamp``."""
    names = sorted(str(Path(f).relative_to(folder)) for f in files)
    workspace.report_stamp_file(folder).write_text(json.dumps({"stamp": stamp, "files": names}))

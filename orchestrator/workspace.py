"""Every file of a sweep on disk, each named by one small function.

A sweep's workspace (``execution.workspace``, default ``.orchestrate/<name>``) holds the
embedded stores and what local workers leave behind; checkpoints live beside it (or in
``execution.cache_dir``) so that sweeps with the same model and data share them. Nothing
else in the tool spells a file name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.config import SweepConfig

_SQLITE = "sqlite:///"
_JOURNAL = "journal://"

__all__ = [
    "artifacts_folder",
    "cache_folder",
    "checkpoint_file",
    "corrupt_file",
    "data_digest_file",
    "default_storage",
    "default_tracking_uri",
    "digest_file",
    "journal_file",
    "journal_url",
    "launcher_folder",
    "lock_file",
    "mask_file",
    "masks_folder",
    "network_size_file",
    "progress_file",
    "progress_folder",
    "report_folder",
    "report_stamp_file",
    "root",
    "spool_file",
    "spool_files",
    "spool_folder",
    "sqlite_file",
    "sqlite_url",
    "study_file",
    "study_journal",
    "tracking_file",
]


def root(config: SweepConfig) -> Path:
    """The sweep's folder for embedded stores and local files."""
    return Path(config.execution.workspace or Path(".orchestrate") / config.name).expanduser()


def study_file(config: SweepConfig) -> Path:
    """The SQLite file of the Optuna study when no storage URL is given."""
    return root(config) / "study.db"


def study_journal(config: SweepConfig) -> Path:
    """The journal file of the Optuna study, for launchers whose workers share a network
    filesystem, when no storage URL is given."""
    return root(config) / "study.journal"


def tracking_file(config: SweepConfig) -> Path:
    """The SQLite file of the MLflow store when no tracking URI is given."""
    return root(config) / "mlflow.db"


def artifacts_folder(config: SweepConfig) -> Path:
    """Where a local MLflow store keeps artifacts (not the current directory)."""
    return root(config) / "mlartifacts"


def spool_folder(config: SweepConfig) -> Path:
    """Where workers keep the MLflow calls a tracking outage kept them from sending."""
    return root(config) / "spool"


def spool_file(config: SweepConfig, host: str, pid: int) -> Path:
    """One worker's spool."""
    return spool_folder(config) / f"{host}-{pid}.jsonl"


def spool_files(config: SweepConfig) -> list[Path]:
    """Every worker's spool that is still there (the calls in it were never sent)."""
    folder = spool_folder(config)
    return sorted(folder.glob("*.jsonl")) if folder.exists() else []


def launcher_folder(config: SweepConfig, launcher: str) -> Path:
    """What a launcher writes about its tasks (Slurm: the batch script, job ids, the logs)."""
    return root(config) / launcher


def report_folder(
    config: SweepConfig, output: Path | None = None, *, several: bool = False
) -> Path:
    """Where ``orchestrate report`` writes: ``--output``, ``OUTPUT/<name>`` among several
    sweeps, else the workspace's ``report`` folder."""
    if output is None:
        return root(config) / "report"
    return output / config.name if several else output


def report_stamp_file(folder: Path) -> Path:
    """What the report in ``folder`` was written from (``report.stamp``)."""
    return folder / ".report-stamp.json"


def cache_folder(config: SweepConfig) -> Path:
    """``execution.cache_dir``, else ``checkpoints/`` beside the sweep's workspace."""
    if config.execution.cache_dir:
        return Path(config.execution.cache_dir).expanduser()
    return root(config).parent / "checkpoints"


def data_digest_file(config: SweepConfig, fingerprint: str) -> Path:
    """The digest of a sweep's data at one seed, kept by the fingerprint of the files it was
    read from (``data.digests``)."""
    return cache_folder(config) / "data" / f"{fingerprint}.digest"


def network_size_file(config: SweepConfig, fingerprint: str) -> Path:
    """The counts ``validate`` prints of a network, kept by its configuration and code."""
    return cache_folder(config) / "networks" / f"{fingerprint}.json"


def progress_folder(config: SweepConfig) -> Path:
    """Where trials keep their per-cycle state, so a retry resumes where its try stopped."""
    return cache_folder(config) / "trials"


def progress_file(config: SweepConfig, trial_hash: str, seed: int) -> Path:
    """The per-cycle state of the trial whose config hashes to ``trial_hash``, at ``seed``."""
    return progress_folder(config) / f"{trial_hash}-{seed}.pt"


def masks_folder(config: SweepConfig, trial_key: str) -> Path:
    """The masks an IMP-only trial had at each cycle, by its result's key: what its controls
    start from, in any sweep that shares the cache."""
    return cache_folder(config) / "masks" / trial_key


def mask_file(folder: Path, cycle: int) -> Path:
    """The masks after IMP cycle ``cycle`` in a :func:`masks_folder`."""
    return folder / f"cycle-{cycle}.pt"


def checkpoint_file(folder: Path, kind: str, key: str) -> Path:
    """A content-addressed checkpoint (``init``, ``dense``) in a cache folder."""
    return folder / f"{kind}-{key}.pt"


def digest_file(path: Path) -> Path:
    """The SHA-256 digest written beside a checkpoint or progress file."""
    return path.with_name(path.name + ".sha256")


def corrupt_file(path: Path, stamp: str) -> Path:
    """Where a file that failed its check is kept for inspection."""
    return path.with_name(f"{path.name}.corrupt-{stamp}")


def lock_file(path: Path) -> Path:
    """The lock that processes making ``path`` take first. Not ``<path>.lock``: Optuna's
    journal storage takes that name for its own lock, and finding it held waits 30 s, then
    breaks it."""
    return path.with_name(path.name + ".flock")


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL; ``None`` for other URLs and in-memory databases."""
    if not url.startswith(_SQLITE):
        return None
    path = url.removeprefix(_SQLITE).split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).expanduser()


def sqlite_url(path: Path) -> str:
    """The ``sqlite:///`` URL of a file, absolute so that every process finds the same one."""
    return f"{_SQLITE}{path.resolve()}"


def journal_file(url: str) -> Path | None:
    """The file of a ``journal://`` URL (``journal:///abs/path``); ``None`` for other URLs."""
    if not url.startswith(_JOURNAL):
        return None
    path = url.removeprefix(_JOURNAL)
    return Path(path).expanduser() if path else None


def journal_url(path: Path) -> str:
    """The ``journal://`` URL of a file, absolute so that every process finds the same one."""
    return f"{_JOURNAL}{path.resolve()}"


def default_storage(config: SweepConfig, *, journal: bool = False) -> str:
    """The study storage URL: ``execution.storage``, else a file in the workspace: a journal
    file when ``journal`` (a launcher whose workers share it over a network filesystem, where
    SQLite's locking breaks) or when one is already there, else SQLite."""
    if config.execution.storage:
        return config.execution.storage
    journal_path = study_journal(config)
    found = journal_path.exists() and not study_file(config).exists()
    if journal or found:
        return journal_url(journal_path)
    # study.open_storage creates the folder of a SQLite file.
    return sqlite_url(study_file(config))


def default_tracking_uri(config: SweepConfig) -> str:
    """The MLflow tracking URI: ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite
    store in the workspace (its folder made)."""
    if config.tracking.uri:
        return config.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = tracking_file(config)
    store.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_url(store)


def holds_nothing(url: str) -> bool:
    """Whether the storage at ``url`` is a local file that does not exist yet (a sweep never
    started here): reading it would create it."""
    local = sqlite_file(url) or journal_file(url)
    return local is not None and not local.exists()

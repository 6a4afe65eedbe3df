"""A dataset's digest without reading its data: kept in the sweep's cache folder by a
fingerprint of what it is computed from.

A trial's key covers the digest of its data (``trial.identity``), so every start of a sweep
needs the digest of each seed's data; computing it reads and splits the whole dataset (seconds,
and torch). The fingerprint costs a few ``stat`` calls: the ``dataset:`` section, the seed, the
name, size and modification time of every file in the folders the reader looks in, and the
source of the code that reads, splits and hashes the data (for generated data, also torch's
version, whose generator makes it). A changed file or a changed reader gives a new fingerprint,
so a kept digest is never one of other data; a missing dataset keeps nothing and raises as
:func:`loading.digest` does.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.data import places, registry

if TYPE_CHECKING:
    from orchestrator.config import DatasetConfig

__all__ = ["digest", "fingerprint", "keep", "sources_digest"]

# What the digest is computed with: reading, generating, splitting and hashing the data.
_CODE = tuple(
    Path(__file__).with_name(name)
    for name in ("files.py", "synthetic.py", "splits.py", "tensors.py", "loading.py")
)


@functools.lru_cache(maxsize=16)
def sources_digest(files: tuple[Path, ...]) -> str:
    """A hash of the contents of ``files`` (source files), read once per process: what a
    value kept by the code that computes it (a data digest, a network's counts, a report)
    also depends on.

    Args:
        files: the source files, in a fixed order.

    Returns:
        64 hex digits.
    """
    content = hashlib.sha256()
    for path in files:
        content.update(path.read_bytes())
    return content.hexdigest()


def fingerprint(section: DatasetConfig, seed: int) -> str:
    """What the digest of ``section``'s data at ``seed`` is a function of, hashed.

    Args:
        section: a ``dataset:`` section.
        seed: the trial's seed (it picks the subsets and the validation split).

    Returns:
        20 hex digits.
    """
    content = hashlib.sha256(f"{section.model_dump_json()}|{int(seed)}".encode())
    content.update(sources_digest(_CODE).encode())
    spec = registry.spec(section.name)
    if spec.files is None:
        content.update(metadata.version("torch").encode())
        return content.hexdigest()[:20]
    root = places.root_of(section)
    for folder in spec.files.folders:
        path = root / folder
        content.update(f"|{path}".encode())
        if not path.is_dir():
            continue
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_file():
                info = entry.stat()
                content.update(f"|{entry.name}:{info.st_size}:{info.st_mtime_ns}".encode())
    return content.hexdigest()[:20]


def digest(section: DatasetConfig, seed: int, kept_in: Callable[[str], Path]) -> str:
    """:func:`loading.digest` of ``section`` at ``seed``, from the file where a start has kept
    it for the same fingerprint; else computed (reading the data) and kept there.

    Args:
        section: the ``dataset:`` section a trial trains on.
        seed: the trial's seed.
        kept_in: the file a digest is kept in, by its fingerprint
            (``workspace.data_digest_file`` of the sweep).

    Raises:
        DatasetError: as :func:`loading.digest`, when the data cannot be read.
    """
    path = kept_in(fingerprint(section, seed))
    if path.is_file():
        return path.read_text().strip()
    from orchestrator.data import loading

    value = loading.digest(section, seed)
    _write(path, value)
    return value


def keep(section: DatasetConfig, seed: int, value: str, kept_in: Callable[[str], Path]) -> None:
    """Keep ``value``, the digest of ``section``'s data at ``seed`` that a worker computed on
    loading it, for the next start (a sweep's first start plans without keys, so its workers
    are the first to know the digests)."""
    path = kept_in(fingerprint(section, seed))
    if not path.is_file():
        _write(path, value)


def _write(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f"{path.name}.{os.getpid()}")
    scratch.write_text(value + "\n")
    os.replace(scratch, path)  # whole or absent: workers of several hosts may share it

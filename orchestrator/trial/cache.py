"""Content-addressed checkpoints shared by every trial and every sweep with the same key.

A checkpoint is named by the hash of what determines it (model, data, training config, seed),
so θ0 and the dense-trained network are computed once and found again by any later sweep.
Workers that need the same missing checkpoint at once serialise on a file lock: one computes
it, the others wait and then load it.

Every file is written with a SHA-256 digest beside it (``<file>.sha256``) and checked against
it when read. A file that fails the check or does not load (a truncated copy, a bad disk, a
full disk during an older version's write) is moved aside as ``<file>.corrupt-<time>``, kept
for inspection, and computed again once, under the same lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from orchestrator import workspace
from orchestrator.locks import exclusive
from orchestrator.trial.identity import checkpoint_key

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointCache",
    "CorruptCheckpoint",
    "load",
    "move_aside",
    "save_atomically",
]


class CorruptCheckpoint(Exception):
    """A checkpoint file that does not match its digest or does not load."""


def save_atomically(payload: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file, with its digest beside it: readers, and a crash
    mid-write, never see half a file (the previous version stays until the new one is whole).

    The digest is written first, so a reader that finds the file finds its digest.
    """
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(dict(payload), temporary)
    digest = _digest(temporary)
    sidecar = workspace.digest_file(path)
    sidecar_temporary = sidecar.with_suffix(f".tmp{os.getpid()}")
    sidecar_temporary.write_text(digest + "\n")
    os.replace(sidecar_temporary, sidecar)
    os.replace(temporary, path)


def load(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_atomically`, on the CPU (tensors only, no code).

    Raises:
        CorruptCheckpoint: the file does not match the digest written with it, or does not
            load (a file from before digests were written is only loaded).
    """
    sidecar = workspace.digest_file(path)
    if sidecar.exists():
        expected = sidecar.read_text().strip()
        found = _digest(path)
        if found != expected:
            raise CorruptCheckpoint(
                f"{path}: SHA-256 {found[:12]}… differs from the {expected[:12]}… written with it"
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise CorruptCheckpoint(f"{path}: does not load ({type(exc).__name__}: {exc})") from exc


def move_aside(path: Path) -> Path:
    """Rename a corrupt checkpoint (and its digest) to ``<name>.corrupt-<time>``; returns the
    new path of the checkpoint."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved = workspace.corrupt_file(path, stamp)
    os.replace(path, moved)
    sidecar = workspace.digest_file(path)
    if sidecar.exists():
        os.replace(sidecar, workspace.corrupt_file(sidecar, stamp))
    return moved


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CheckpointCache:
    """A folder of ``<kind>-<key>.pt`` files (local, or a folder every host mounts)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, description: Mapping[str, Any]) -> Path:
        return workspace.checkpoint_file(self.root, kind, checkpoint_key(description))

    def get_or_make(
        self,
        kind: str,
        description: Mapping[str, Any],
        make: Callable[[], dict[str, Any]],
    ) -> tuple[dict[str, Any], bool]:
        """The checkpoint for ``description``, computing it with ``make`` when it is missing.

        Returns the payload and whether this call computed it.
        """
        path = self.path(kind, description)
        if path.exists():
            try:
                return load(path), False
            except CorruptCheckpoint:
                pass  # checked again under the lock, where it is replaced
        with exclusive(workspace.lock_file(path)):
            if path.exists():  # another worker made it while we waited
                try:
                    return load(path), False
                except CorruptCheckpoint as exc:
                    moved = move_aside(path)
                    logger.warning(
                        "corrupt checkpoint %s; moved to %s, computing it again", exc, moved
                    )
            payload = {**make(), "description": json.dumps(description, default=str)}
            save_atomically(payload, path)
            return payload, True

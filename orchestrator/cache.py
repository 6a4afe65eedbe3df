"""Content-addressed checkpoints shared by every trial and every sweep with the same key.

A checkpoint is named by the hash of what determines it (model, data, training config, seed),
so θ0 and the dense-trained network are computed once and found again by any later sweep.
Workers that need the same missing checkpoint at once serialise on a file lock: one computes
it, the others wait and then load it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from orchestrator import workspace
from orchestrator.config import content_hash
from orchestrator.locks import exclusive

KEY_LENGTH = 20

__all__ = ["CheckpointCache", "key_of", "load", "save_atomically"]


def key_of(description: Mapping[str, Any]) -> str:
    """A stable hash of a JSON-serialisable description."""
    return content_hash(description, length=KEY_LENGTH)


def save_atomically(payload: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file: readers, and a crash mid-write, never see half
    a file (the previous version stays until the new one is complete)."""
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(dict(payload), temporary)
    os.replace(temporary, path)


def load(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_atomically`, on the CPU (tensors only, no code)."""
    return torch.load(path, map_location="cpu", weights_only=True)


class CheckpointCache:
    """A folder of ``<kind>-<key>.pt`` files (local, or a folder every host mounts)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, description: Mapping[str, Any]) -> Path:
        return workspace.checkpoint_file(self.root, kind, key_of(description))

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
            return load(path), False
        with exclusive(workspace.lock_file(path)):
            if path.exists():  # another worker made it while we waited
                return load(path), False
            payload = {**make(), "description": json.dumps(description, default=str)}
            save_atomically(payload, path)
            return payload, True

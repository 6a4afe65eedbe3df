"""Content-addressed checkpoints shared by every trial and every sweep with the same key.

A checkpoint is named by the hash of what determines it (model, data, training config, seed),
so θ0 and the dense-trained network are computed once and found again by any later sweep.
Workers that need the same missing checkpoint at once serialise on a file lock: one computes
it, the others wait and then load it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from orchestrator.locks import exclusive

__all__ = ["CheckpointCache", "key_of"]


def key_of(description: Mapping[str, Any]) -> str:
    """A stable hash of a JSON-serialisable description."""
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


class CheckpointCache:
    """A folder of ``<kind>-<key>.pt`` files (local, or a folder every host mounts)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, description: Mapping[str, Any]) -> Path:
        return self.root / f"{kind}-{key_of(description)}.pt"

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
            return self._read(path), False
        with self._locked(path):
            if path.exists():  # another worker made it while we waited
                return self._read(path), False
            payload = make()
            payload = {**payload, "description": json.dumps(description, default=str)}
            temporary = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(payload, temporary)
            os.replace(temporary, path)  # atomic: readers never see half a file
            return payload, True

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        return torch.load(path, map_location="cpu", weights_only=True)

    def _locked(self, path: Path) -> contextlib.AbstractContextManager[None]:
        return exclusive(path.with_suffix(".lock"))

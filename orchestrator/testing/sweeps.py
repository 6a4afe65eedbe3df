"""Sweep documents (the YAML's contents, as a dict) small enough to run in seconds on a CPU.

One document with keyword overrides serves every caller: the tests' tiny sweep as it is, the
slow one (:func:`slow_sweep`: steps long enough for a signal to land mid-trial), the chaos
check's and the benchmarks' with their own sections.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

__all__ = ["SLOW_DATASET", "slow_sweep", "sweep_document", "write_sweep"]

# Conv-2 on 16x16 colour images: each IMP cycle takes seconds on one CPU thread.
SLOW_DATASET = {
    "name": "synthetic",
    "synthetic": {
        "image_size": 16,
        "channels": 3,
        "num_classes": 4,
        "train_size": 1024,
        "test_size": 128,
    },
}


def sweep_document(folder: Path, name: str = "tiny", **sections: object) -> dict:
    """A sweep: LeNet-300-100 on 8x8 synthetic images (4 classes), Adam, ALDS in project mode,
    2 IMP cycles of 50%, a grid over ALDS rates 0 and 0.5, one seed, on the CPU.

    Args:
        folder: the workspace goes to ``folder/ws/<name>``, the shared checkpoint cache to
            ``folder/checkpoints`` (sweeps in one folder share their dense networks).
        name: the sweep's name (its study's and its experiment's).
        **sections: top-level sections to change. A dict updates the section's own keys, one
            level deep (``dataset={"synthetic": {...}}`` replaces the whole ``synthetic``
            block, ``execution={"workers_per_device": 2}`` keeps the workspace); anything else
            replaces the section.

    Returns:
        A new document: the caller may change it further.
    """
    document: dict = {
        "name": name,
        "seeds": [0],
        "model": "lenet300100",
        "dataset": {
            "name": "synthetic",
            "synthetic": {
                "image_size": 8,
                "channels": 1,
                "num_classes": 4,
                "train_size": 256,
                "test_size": 128,
                "noise": 0.5,
            },
        },
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 32, "epochs": 1},
        "alds": {"mode": "project"},
        "imp": {"cycles": 2, "prune_fraction": 0.5, "epochs_per_cycle": 1},
        "search": {
            "sampler": "grid",
            "space": {"alds.rate": {"choices": [0.0, 0.5]}},
        },
        "execution": {
            "devices": "cpu",
            "workspace": str(folder / "ws" / name),
            "cache_dir": str(folder / "checkpoints"),
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    # Nothing shared with the caller's overrides or SLOW_DATASET: callers edit documents in
    # place, and safe_dump would write shared objects as YAML anchors.
    return copy.deepcopy(document)


def slow_sweep(folder: Path, name: str, **sections: object) -> dict:
    """A :func:`sweep_document` whose steps take seconds (Conv-2 on :data:`SLOW_DATASET`, 4 IMP
    cycles of 2 epochs), so that a signal, a kill or a time limit lands in the middle of a
    trial, however fast the machine.

    Args:
        folder: as for :func:`sweep_document`.
        name: the sweep's name.
        **sections: as for :func:`sweep_document`; ``model``, ``dataset`` and ``imp`` given
            here replace the slow defaults instead of updating them.

    Returns:
        A new document.
    """
    sections.setdefault("imp", {"cycles": 4, "epochs_per_cycle": 2})
    sections.setdefault("model", "conv2")
    sections.setdefault("dataset", SLOW_DATASET)
    return sweep_document(folder, name, **sections)


def write_sweep(folder: Path, document: dict) -> Path:
    """Write a document as ``folder/<name>.yaml``.

    Args:
        folder: where the file goes.
        document: the sweep, e.g. from :func:`sweep_document`.

    Returns:
        The file's path, to pass to ``orchestrate``.
    """
    path = folder / f"{document['name']}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path

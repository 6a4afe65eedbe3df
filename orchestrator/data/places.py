"""Where a dataset's files are looked for: ``dataset.root``, else the default folder, and the
Debian package's folder; which files a reader needs there, and why they cannot be found. Free
of torch, so the registry, a sweep's plan and ``validate`` find the files (and say what is
missing, in the readers' own words) without importing the readers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.data.errors import DatasetError

if TYPE_CHECKING:
    from orchestrator.config import DatasetConfig
    from orchestrator.data.specs import DatasetFiles, DatasetSpec

__all__ = [
    "CIFAR_TEST",
    "CIFAR_TRAIN",
    "DEBIAN_FASHION_MNIST",
    "IDX_FILES",
    "cifar_folder",
    "cifar_missing",
    "default_root",
    "find_idx",
    "idx_folders",
    "idx_missing",
    "missing",
    "root_of",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the IDX files."""


def default_root() -> Path:
    """Where dataset files go when ``dataset.root`` is unset.

    Returns:
        ``$ORCHESTRATE_DATA``, else ``~/.cache/orchestrate/data``.
    """
    return Path(os.environ.get("ORCHESTRATE_DATA", "~/.cache/orchestrate/data")).expanduser()


def root_of(config: DatasetConfig) -> Path:
    """The folder the files of ``config``'s dataset are looked for under.

    Args:
        config: the sweep's ``dataset:`` section.

    Returns:
        ``dataset.root`` with ``~`` expanded, else :func:`default_root`.
    """
    if config.root and not config.download and not Path(config.root).expanduser().is_dir():
        # Else the system's copy would be read in its place, without a word.
        raise DatasetError(
            f"dataset.root: {config.root} is not a folder; set it to the folder that holds "
            f"the {config.name} files, or leave it out to look in {default_root()} and the "
            "system's copies (docs/data.md)"
        )
    return Path(config.root).expanduser() if config.root else default_root()


# CIFAR-10's python version: five training batches and one test batch.
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"

# The four IDX files of an MNIST-layout dataset, each also taken gzipped.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def cifar_folder(root: Path, folders: tuple[str, ...]) -> tuple[Path, list[str]]:
    """The folder of CIFAR-10's batches under ``root``, and the batches it lacks.

    torchvision's layout (``root/cifar-10-batches-py/``), or ``root`` pointing at the batches:
    the first folder holding a training batch, else the first, whose path a message names.
    """
    candidates = [root / folder for folder in folders]
    folder = next((f for f in candidates if (f / CIFAR_TRAIN[0]).is_file()), candidates[0])
    lacking = [name for name in (*CIFAR_TRAIN, CIFAR_TEST) if not (folder / name).is_file()]
    return folder, lacking


def cifar_missing(files: DatasetFiles, root: Path, folder: Path, lacking: list[str]) -> str:
    """Why CIFAR-10 cannot be read, and the fix."""
    return (
        f"CIFAR-10 not found: {folder} lacks {', '.join(lacking)}. Set dataset.download: "
        f"true on a machine with internet access, or download {files.url} and extract it "
        f"into {root} (it unpacks to {files.folders[0]}/); dataset.root chooses another "
        f"folder (docs/data.md)"
    )


def find_idx(folders: list[Path]) -> dict[str, Path] | None:
    """The four IDX files by their stem, all from the first folder that holds all four
    (never a mix of sources); None where no folder does."""
    for folder in folders:
        paths = {}
        for stem in (*IDX_FILES["train"], *IDX_FILES["test"]):
            for candidate in (folder / stem, folder / f"{stem}.gz"):
                if candidate.is_file():
                    paths[stem] = candidate
                    break
        if len(paths) == 4:
            return paths
    return None


def idx_folders(files: DatasetFiles, root: Path) -> list[Path]:
    """Where the IDX files are looked for: an absolute folder (a system package's) stays as
    it is under ``root / folder``."""
    return [root / folder for folder in files.folders]


def idx_missing(name: str, files: DatasetFiles, folders: list[Path]) -> str:
    """Why an MNIST-layout dataset cannot be read, and the fix."""
    stems = ", ".join(f"{stem}[.gz]" for stem in (*IDX_FILES["train"], *IDX_FILES["test"]))
    package = f" or `apt-get install {files.package}` (Debian/Ubuntu)," if files.package else ""
    return (
        f"{name} not found: none of {', '.join(map(str, folders))} holds all of "
        f"{stems}. Set dataset.download: true on a machine with internet access,{package} "
        f"or copy the four files into {folders[0]} (docs/data.md)"
    )


def missing(config: DatasetConfig, spec: DatasetSpec) -> str | None:
    """Why the sweep's data files are not there, in the words its reader would raise; None
    when they are, or generated. With ``download: true`` the sweep's start fetches them.
    What ``validate`` and ``sweep --dry-run`` check, reading no file.
    """
    if spec.files is None:
        return None
    try:
        root = root_of(config)
    except DatasetError as exc:
        return str(exc)
    if spec.files.torchvision == "CIFAR10":
        folder, lacking = cifar_folder(root, spec.files.folders)
        return cifar_missing(spec.files, root, folder, lacking) if lacking else None
    folders = idx_folders(spec.files, root)
    return None if find_idx(folders) else idx_missing(spec.name, spec.files, folders)

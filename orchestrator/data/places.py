"""Where a dataset's files are looked for: ``dataset.root``, else the default folder, and the
Debian package's folder. Free of torch, so the registry and a sweep's plan name the files
without importing the readers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.config import DatasetConfig

__all__ = ["DEBIAN_FASHION_MNIST", "default_root", "root_of"]

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
    return Path(config.root).expanduser() if config.root else default_root()

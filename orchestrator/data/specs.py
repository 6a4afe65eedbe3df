"""What the registry knows about a dataset: :class:`DatasetSpec` and the types of its parts.

A module of its own, below both the registry and the readers, so a reader can name the spec it
is given without importing the table that names the reader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from orchestrator.config import DatasetConfig

__all__ = ["Arrays", "DatasetFiles", "DatasetShape", "DatasetSpec", "RawSplits", "Reader"]

Arrays = tuple["Tensor", "Tensor"]
"""uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``, on the CPU."""

RawSplits = tuple[Arrays, Arrays]
"""The full training and test arrays of a dataset, before any subset or validation split."""

Reader = Callable[["DatasetSpec", "DatasetConfig", int], RawSplits]
"""``read(spec, config, seed) -> (train, test)``: the dataset ``spec`` describes, in full.

``config`` is the sweep's ``dataset:`` section (``root``, ``download``, ``synthetic``); ``seed``
is the trial's seed, which only generated data depends on. Raises :class:`DatasetError` when
files are missing or unreadable.
"""


@dataclass(frozen=True)
class DatasetShape:
    """What a network must fit: ``channels x image_size x image_size`` in, ``num_classes`` out."""

    num_classes: int
    channels: int
    image_size: int


@dataclass(frozen=True)
class DatasetFiles:
    """Where a file-backed dataset's files come from.

    Attributes:
        folders: where the reader looks, in order (relative to ``dataset.root``, or absolute).
        torchvision: the ``torchvision.datasets`` class that fetches them (``download: true``).
        url: where to fetch them by hand, for the error message; ``None``: not needed there.
        package: a Debian/Ubuntu package that installs them, for the error message.
    """

    folders: tuple[str, ...]
    torchvision: str
    url: str | None = None
    package: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: the function that reads it, its shape and where its files come from.

    Attributes:
        name: the ``dataset.name`` that selects it.
        read: the :data:`Reader` of its train and test arrays.
        shape: classes and image shape; ``None`` for generated data, whose config section
            (``dataset.synthetic``) sets them.
        files: where its files are; ``None`` for generated data.
    """

    name: str
    read: Reader
    shape: DatasetShape | None
    files: DatasetFiles | None

    def __post_init__(self) -> None:
        # A fixed shape belongs to fixed files; generated data takes both from its config.
        if (self.shape is None) != (self.files is None):
            raise ValueError(f"dataset '{self.name}': give both shape and files, or neither")

    @property
    def generated(self) -> bool:
        """Whether the data is generated from the seed rather than read from files."""
        return self.files is None

    def shape_for(self, config: DatasetConfig) -> DatasetShape:
        """The shape of the data ``config`` asks for.

        Args:
            config: the sweep's ``dataset:`` section naming this dataset.

        Returns:
            The registered shape, or for generated data the one ``config.synthetic`` sets.
        """
        if self.shape is not None:
            return self.shape
        task = config.synthetic
        return DatasetShape(task.num_classes, task.channels, task.image_size)

"""One table of datasets: name → :class:`DatasetSpec` (its reader, its shape, where its files are).

The loader looks every dataset up here, so the number of classes and the input shape a network
is built for come from this table (or, for the generated task, from its config section), never
from a constant elsewhere. ``DatasetConfig.name`` in ``orchestrator/config.py`` lists the same
names: the config stays free of torch and so cannot import this table, and a test checks that
the two lists agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from orchestrator.data.errors import DatasetError
from orchestrator.data.places import DEBIAN_FASHION_MNIST
from orchestrator.data.specs import DatasetFiles, DatasetShape, DatasetSpec, Reader

if TYPE_CHECKING:
    from orchestrator.config import DatasetConfig
    from orchestrator.data.specs import RawSplits

__all__ = ["available", "spec"]


def _reader(module: str, name: str) -> Reader:
    """The reader ``name`` of ``orchestrator.data.<module>``, imported when first called: the
    table names every dataset's shape and files without importing torch (``validate`` and a
    sweep's plan read it)."""

    def read(spec: DatasetSpec, config: DatasetConfig, seed: int) -> RawSplits:
        function = getattr(importlib.import_module(f"orchestrator.data.{module}"), name)
        return function(spec, config, seed)

    read.__name__ = read.__qualname__ = name
    return read


_DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="cifar10",
            read=_reader("files", "read_cifar10"),
            shape=DatasetShape(num_classes=10, channels=3, image_size=32),
            files=DatasetFiles(
                folders=("cifar-10-batches-py", "."),
                torchvision="CIFAR10",
                url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            ),
        ),
        DatasetSpec(
            name="mnist",
            read=_reader("files", "read_idx"),
            shape=DatasetShape(num_classes=10, channels=1, image_size=28),
            files=DatasetFiles(folders=("mnist", "MNIST/raw", "."), torchvision="MNIST"),
        ),
        DatasetSpec(
            name="fashion-mnist",
            read=_reader("files", "read_idx"),
            shape=DatasetShape(num_classes=10, channels=1, image_size=28),
            files=DatasetFiles(
                folders=("fashion-mnist", "FashionMNIST/raw", ".", str(DEBIAN_FASHION_MNIST)),
                torchvision="FashionMNIST",
                package="dataset-fashion-mnist",
            ),
        ),
        DatasetSpec(
            name="synthetic", read=_reader("synthetic", "generate"), shape=None, files=None
        ),
    )
}


def available() -> list[str]:
    """Names accepted by :func:`spec` (and by ``dataset.name``).

    Returns:
        The registered names, sorted.
    """
    return sorted(_DATASETS)


def spec(name: str) -> DatasetSpec:
    """The registered dataset called ``name``.

    Args:
        name: a name from :func:`available`.

    Returns:
        Its :class:`DatasetSpec`.

    Raises:
        DatasetError: no dataset has that name.
    """
    try:
        return _DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset '{name}'; available: {', '.join(available())}"
        ) from None

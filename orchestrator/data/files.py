"""Readers of the real dataset formats, and their download.

``cifar10``: the python-pickle batches of ``cifar-10-python.tar.gz``; ``mnist`` and
``fashion-mnist``: IDX files, gzipped or not. A reader takes what it looks for (folders, the
torchvision class that downloads the files, the shape the arrays must have) from the dataset's
:class:`~orchestrator.data.registry.DatasetSpec`, so one reader serves every dataset of its
format. The raw arrays are read once per process and kept on the CPU. ``docs/data.md`` says
where the files go.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from orchestrator.data import places
from orchestrator.data.errors import DatasetError

if TYPE_CHECKING:
    from orchestrator.config import DatasetConfig
    from orchestrator.data.specs import DatasetFiles, DatasetShape, DatasetSpec, RawSplits

__all__ = [
    "clear_cache",
    "read_cifar10",
    "read_idx",
]


def clear_cache() -> None:
    """Forget the raw arrays read so far."""
    _read_once.cache_clear()


def read_cifar10(spec: DatasetSpec, config: DatasetConfig, seed: int) -> RawSplits:
    """CIFAR-10's python batches: five training batches and one test batch.

    Args:
        spec: the registry entry: folders, download class, URL and shape.
        config: the ``dataset:`` section (``root``, ``download``).
        seed: unused; files do not depend on the trial's seed.

    Returns:
        The training and test arrays, on the CPU; the same objects on every call.
    """
    return _read_once(_cifar10, spec, places.root_of(config), config.download)


def read_idx(spec: DatasetSpec, config: DatasetConfig, seed: int) -> RawSplits:
    """The four IDX files of an MNIST-layout dataset (MNIST, Fashion-MNIST).

    Args:
        spec: the registry entry: folders, download class, Debian package and shape.
        config: the ``dataset:`` section (``root``, ``download``).
        seed: unused; files do not depend on the trial's seed.

    Returns:
        The training and test arrays, on the CPU; the same objects on every call.
    """
    return _read_once(_idx_dataset, spec, places.root_of(config), config.download)


@functools.lru_cache(maxsize=2)  # the raw arrays of the sweep's dataset, read once
def _read_once(
    read: Callable[[DatasetSpec, Path, bool], RawSplits],
    spec: DatasetSpec,
    root: Path,
    download: bool,
) -> RawSplits:
    return read(spec, root, download)


def _files(spec: DatasetSpec) -> DatasetFiles:
    if spec.files is None:
        raise DatasetError(f"dataset '{spec.name}' has no files to read")
    return spec.files


def _shape(spec: DatasetSpec) -> DatasetShape:
    if spec.shape is None:
        raise DatasetError(f"dataset '{spec.name}' registers no shape to check its files by")
    return spec.shape


def _download(spec: DatasetSpec, root: Path) -> None:
    """Fetch a dataset into ``root`` with torchvision (which verifies checksums)."""
    from torchvision import datasets

    source = getattr(datasets, _files(spec).torchvision)
    try:
        source(str(root), train=True, download=True)
    except Exception as exc:  # offline shows up as URLError, OSError or RuntimeError
        raise DatasetError(
            f"downloading {spec.name} into {root} failed ({exc}); on a machine without internet "
            f"access put the files there by hand (docs/data.md)"
        ) from exc


def _checked_labels(labels: Tensor, num_classes: int, path: Path, fix: str) -> Tensor:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: labels outside 0..{num_classes - 1}; {fix}")
    return labels


# --------------------------------------------------------------------------- CIFAR-10

# The python version (places.CIFAR_TRAIN, places.CIFAR_TEST): pickled dicts {b"data": uint8
# (10000, 3072) with rows R(32x32) G(32x32) B(32x32), b"labels": [int]}.


def _cifar10(spec: DatasetSpec, root: Path, download: bool) -> RawSplits:
    files = _files(spec)
    folder, missing = places.cifar_folder(root, files.folders)
    if missing and download:
        _download(spec, root)
        folder, missing = places.cifar_folder(root, files.folders)
    if missing:
        raise DatasetError(places.cifar_missing(files, root, folder, missing))
    shape = _shape(spec)
    batches = [_cifar_batch(folder / name, shape) for name in places.CIFAR_TRAIN]
    train = (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    return train, _cifar_batch(folder / places.CIFAR_TEST, shape)


# numpy rebuilds arrays with _reconstruct (protocols 0-4) or _frombuffer (5), named under
# numpy.core (NumPy 1) or numpy._core (NumPy 2); take the functions from numpy itself.
_RECONSTRUCT = np.zeros(1).__reduce_ex__(4)[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: a batch file cannot run code."""

    def find_class(self, module: str, name: str):
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}") from None


def _cifar_batch(path: Path, shape: DatasetShape) -> tuple[Tensor, Tensor]:
    fix = "delete it and extract the archive again (docs/data.md)"
    try:
        with path.open("rb") as file:
            batch = _ArrayUnpickler(file, encoding="bytes").load()
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as exc:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch ({exc}); {fix}") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    row = shape.channels * shape.image_size * shape.image_size
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == row
        and labels is not None
        and len(labels) == data.shape[0]
    ):
        raise DatasetError(
            f"{path}: not a CIFAR-10 python batch (expected b'data' uint8 (N, {row}) and N "
            f"b'labels'); {fix}"
        )
    images = torch.from_numpy(np.ascontiguousarray(data)).view(
        -1, shape.channels, shape.image_size, shape.image_size
    )
    labels = torch.as_tensor(labels, dtype=torch.int64)
    return images, _checked_labels(labels, shape.num_classes, path, fix)


# --------------------------------------------------------------------------- IDX

# MNIST and Fashion-MNIST: IDX files, big-endian header (0, 0, dtype 0x08 = ubyte, ndim),
# ndim uint32 sizes, then the bytes (places.IDX_FILES names them).


def _idx_dataset(spec: DatasetSpec, root: Path, download: bool) -> RawSplits:
    files, shape = _files(spec), _shape(spec)
    folders = places.idx_folders(files, root)
    paths = places.find_idx(folders)
    if paths is None and download:
        _download(spec, root)
        paths = places.find_idx(folders)
    if paths is None:
        raise DatasetError(places.idx_missing(spec.name, files, folders))
    side = shape.image_size
    splits = []
    for images_stem, labels_stem in (places.IDX_FILES["train"], places.IDX_FILES["test"]):
        images = _read_idx(paths[images_stem], ndim=3)
        if images.shape[1:] != (side, side):
            raise DatasetError(
                f"{paths[images_stem]}: {images.shape[1]}x{images.shape[2]} images where "
                f"{spec.name} has {side}x{side}; copy the right file"
            )
        labels = _read_idx(paths[labels_stem], ndim=1).long()
        if len(labels) != len(images):
            raise DatasetError(
                f"{paths[labels_stem]} holds {len(labels)} labels but {paths[images_stem]} "
                f"holds {len(images)} images; copy a matching pair"
            )
        labels = _checked_labels(labels, shape.num_classes, paths[labels_stem], "copy it again")
        splits.append((images.unsqueeze(1), labels))
    return splits[0], splits[1]


def _read_idx(path: Path, *, ndim: int) -> Tensor:
    """A uint8 IDX file (gzipped when its name ends in .gz) as a tensor of its shape."""
    fix = "delete it and copy or download it again"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read ({exc}); {fix}") from None
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, 0x08, ndim)):
        raise DatasetError(f"{path}: not an IDX file of {ndim}-D unsigned bytes; {fix}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(shape))
    if len(data) - header != count:
        raise DatasetError(
            f"{path}: {len(data) - header} bytes of data where the header promises {count} "
            f"{shape}; {fix}"
        )
    return torch.from_numpy(np.frombuffer(data, np.uint8, count, header).reshape(shape).copy())

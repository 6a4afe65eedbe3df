"""``load``: a ``dataset:`` section and a seed → :class:`Datasets` on a device, memoised.

The dataset is looked up in the registry, read (or generated) in full, split and subset as the
section asks, and moved to the device. :func:`load` memoises per process, so the trials a worker
runs share one copy.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor

from orchestrator.config import DatasetConfig
from orchestrator.data import files, places, registry, splits
from orchestrator.data.errors import DatasetError
from orchestrator.data.specs import Arrays, DatasetShape, DatasetSpec
from orchestrator.data.tensors import Datasets, ImageSplit, channel_stats

__all__ = ["clear_cache", "digest", "load", "source_of"]

_CACHE_SIZE = 4  # distinct (config, seed, device) entries kept; a sweep has a few seeds

_cache: OrderedDict[tuple[str, int, str], Datasets] = OrderedDict()
_digests: dict[tuple[str, int], str] = {}


def source_of(config: DatasetConfig) -> str:
    """Where the dataset's files are read from.

    Args:
        config: the sweep's ``dataset:`` section.

    Returns:
        The folder the files are looked for under, or the dataset's name for generated data.
    """
    spec = registry.spec(config.name)
    return spec.name if spec.generated else str(places.root_of(config))


def clear_cache() -> None:
    """Forget every dataset :func:`load` has kept and the raw arrays read from files.

    Frees their device and host memory; the next :func:`load` reads again.
    """
    _cache.clear()
    files.clear_cache()


def load(config: DatasetConfig, *, device: torch.device | str = "cpu", seed: int = 0) -> Datasets:
    """The datasets ``config`` describes, on ``device``; the same arguments return the same object.

    Args:
        config: the sweep's ``dataset:`` section.
        device: where the tensors go.
        seed: fixes the generated data and which images the subsets and the validation split
            take.

    Returns:
        The training, test and (optional) validation splits with their statistics.

    Raises:
        DatasetError: files are missing or unreadable, or the sizes asked for exceed what the
            data holds.
    """
    device = _canonical(torch.device(device))
    key = (config.model_dump_json(), seed, str(device))
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    datasets = _build(config, device, seed)
    _cache[key] = datasets
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return datasets


def digest(config: DatasetConfig, seed: int = 0) -> str:
    """:attr:`Datasets.digest` of the data ``load(config, seed=seed)`` gives, on any device:
    what a trial's key (``orchestrator.trial.identity``) knows of its data. Read on the CPU once per
    process for each section and seed; raises :class:`DatasetError` as :func:`load` does."""
    key = (config.model_dump_json(), int(seed))
    if key not in _digests:
        _digests[key] = load(config, device="cpu", seed=seed).digest
    return _digests[key]


def _canonical(device: torch.device) -> torch.device:
    # "cuda" and "cuda:0" name one device; key the cache by the explicit index.
    if device.type != "cpu" and device.index is None:
        module = getattr(torch, device.type, None)
        if module is not None and hasattr(module, "current_device"):
            return torch.device(device.type, module.current_device())
    return device


def _build(config: DatasetConfig, device: torch.device, seed: int) -> Datasets:
    spec = registry.spec(config.name)
    shape = spec.shape_for(config)
    train, test = spec.read(spec, config, seed)
    for arrays in (train, test):
        _check_shape(spec, shape, arrays)
    val_index, train_index = splits.training_indices(train[1], config, seed)
    test_index = splits.kept_test_indices(test[1], config, seed)

    train_split = _take(train, train_index, device)
    mean, std = channel_stats(train_split.images)
    return Datasets(
        train=train_split,
        test=_take(test, test_index, device),
        val=None if val_index is None else _take(train, val_index, device),
        num_classes=shape.num_classes,
        in_channels=shape.channels,
        image_size=shape.image_size,
        mean=mean,
        std=std,
        augment=config.augment,
    )


def _check_shape(spec: DatasetSpec, shape: DatasetShape, arrays: Arrays) -> None:
    # Networks are built from the registered shape: a reader that disagrees would build one
    # that fails (or silently mis-sizes) on the first batch.
    images = arrays[0]
    expected = (shape.channels, shape.image_size, shape.image_size)
    if tuple(images.shape[1:]) != expected:
        raise DatasetError(
            f"{spec.name}: read images of shape {tuple(images.shape[1:])}, but the registry "
            f"gives {expected}"
        )


def _take(arrays: Arrays, index: Tensor | None, device: torch.device) -> ImageSplit:
    images, labels = arrays
    if index is not None:
        images, labels = images[index], labels[index]
    # Without an index, a CPU split shares storage with the cached source: no copy.
    return ImageSplit(images.to(device), labels.to(device))

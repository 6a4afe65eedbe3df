"""Datasets held as uint8 tensors on the trial's device, normalised and augmented per batch.

One concept a module:

- :mod:`~orchestrator.data.registry`: every dataset by name → its :class:`DatasetSpec`
  (:mod:`~orchestrator.data.specs`): its reader, its shape (classes, channels, image size) and
  where its files come from;
- :mod:`~orchestrator.data.files`: readers of the real formats (CIFAR-10 python batches, IDX
  files) and the download;
- :mod:`~orchestrator.data.synthetic`: the generated task, made from the seed;
- :mod:`~orchestrator.data.splits`: the validation hold-out and the stratified subsets;
- :mod:`~orchestrator.data.tensors`: :class:`Datasets` and :class:`ImageSplit` on the device,
  normalisation, batching and augmentation;
- :mod:`~orchestrator.data.loading`: :func:`load`, which puts them together and memoises.

Callers import from here. ``docs/data.md`` says where the files go and how to add a dataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face
from orchestrator.data import registry
from orchestrator.data.errors import DatasetError
from orchestrator.data.places import DEBIAN_FASHION_MNIST, default_root
from orchestrator.data.specs import DatasetFiles, DatasetShape, DatasetSpec

if TYPE_CHECKING:
    from orchestrator.data.loading import clear_cache, digest, load, source_of
    from orchestrator.data.tensors import Datasets, ImageSplit, random_crop_flip

# What needs torch is imported on first use (orchestrator.lazy_face): the registry, the files'
# places and the digests kept on disk (``digests``) serve validate and a sweep's plan without it.
_LAZY = {
    "clear_cache": "loading",
    "digest": "loading",
    "load": "loading",
    "source_of": "loading",
    "Datasets": "tensors",
    "ImageSplit": "tensors",
    "random_crop_flip": "tensors",
}

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "DatasetError",
    "DatasetFiles",
    "DatasetShape",
    "DatasetSpec",
    "Datasets",
    "ImageSplit",
    "clear_cache",
    "default_root",
    "digest",
    "load",
    "random_crop_flip",
    "registry",
    "source_of",
]


if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__ = lazy_face(__name__, _LAZY)

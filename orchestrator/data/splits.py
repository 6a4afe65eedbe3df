"""Which images a trial takes: the validation hold-out and the class-stratified subsets.

Each choice draws from its own seeded stream (:func:`stream`), so e.g. the validation split does
not change with the size of the training subset.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from orchestrator.data.errors import DatasetError

if TYPE_CHECKING:
    from orchestrator.config import DatasetConfig

__all__ = ["kept_test_indices", "stratified", "stream", "training_indices"]


def stream(seed: int, purpose: str) -> torch.Generator:
    """An independent CPU random stream for one ``purpose`` of one ``seed``.

    Args:
        seed: the trial's seed.
        purpose: what the stream draws (``"validation"``, ``"synthetic"``, ...).

    Returns:
        A generator seeded from both, so streams of different purposes do not overlap.
    """
    digest = hashlib.sha256(f"{purpose}:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def stratified(labels: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` indices into ``labels``, drawn at random and round-robin over the classes.

    Every class contributes equally (±1) until it runs out, so small subsets stay balanced.

    Args:
        labels: int64 class labels ``(N,)`` on the CPU.
        count: how many to pick, at most ``N``.
        generator: the random stream of the draw.

    Returns:
        The picked indices, sorted.
    """
    n = len(labels)
    order = torch.randperm(n, generator=generator)
    shuffled = labels[order]
    by_class = torch.argsort(shuffled, stable=True)
    counts = torch.bincount(shuffled)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[by_class] = torch.arange(n) - first[shuffled[by_class]]
    # Rank within the class first, then the random position: one image per class per round.
    picked = torch.argsort(rank * n + torch.arange(n))[:count]
    return order[picked].sort().values


def training_indices(
    labels: Tensor, config: DatasetConfig, seed: int
) -> tuple[Tensor | None, Tensor | None]:
    """Indices of the validation and training images among all training images.

    The validation split is drawn first from all training images, so it does not depend on
    ``train_subset``; the subset is then drawn from the rest.

    Args:
        labels: the labels of every training image.
        config: the ``dataset:`` section (``validation``, ``train_subset``).
        seed: the trial's seed.

    Returns:
        ``(validation, training)``; ``None`` for no validation split / all the images.

    Raises:
        DatasetError: the sizes asked for exceed the images there are.
    """
    val_index = train_index = None
    if config.validation:
        if config.validation >= len(labels):
            raise DatasetError(
                f"dataset.validation={config.validation} leaves no training images: "
                f"{config.name} has {len(labels)}"
            )
        val_index = stratified(labels, config.validation, stream(seed, "validation"))
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[val_index] = False
        train_index = keep.nonzero().squeeze(1)
    if config.train_subset is not None:
        remaining = labels if train_index is None else labels[train_index]
        if config.train_subset > len(remaining):
            raise DatasetError(
                f"dataset.train_subset={config.train_subset} exceeds the {len(remaining)} "
                f"training images of {config.name}"
                + (" left after validation" if val_index is not None else "")
            )
        chosen = stratified(remaining, config.train_subset, stream(seed, "train_subset"))
        train_index = chosen if train_index is None else train_index[chosen]
    return val_index, train_index


def kept_test_indices(labels: Tensor, config: DatasetConfig, seed: int) -> Tensor | None:
    """Indices of the test images ``test_subset`` keeps.

    Args:
        labels: the labels of every test image.
        config: the ``dataset:`` section (``test_subset``).
        seed: the trial's seed.

    Returns:
        The indices, or ``None`` for all the images.

    Raises:
        DatasetError: ``test_subset`` exceeds the test images there are.
    """
    if config.test_subset is None:
        return None
    if config.test_subset > len(labels):
        raise DatasetError(
            f"dataset.test_subset={config.test_subset} exceeds the {len(labels)} test "
            f"images of {config.name}"
        )
    return stratified(labels, config.test_subset, stream(seed, "test_subset"))

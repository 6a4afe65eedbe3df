"""What a trial trains on: uint8 images on its device, normalised and augmented per batch.

Images stay uint8 NCHW on the device (CIFAR-10: 150 MB, not 600 MB of float32) and become
normalised float32 one batch at a time; CIFAR-style augmentation (random crop with padding,
horizontal flip) runs on the device on whole batches.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CROP_PADDING", "Datasets", "ImageSplit", "channel_stats", "random_crop_flip"]

CROP_PADDING = 4
"""The standard CIFAR recipe: pad 4 pixels, crop back to the original size."""


@dataclass(frozen=True, eq=False)  # tensors: compare by identity
class ImageSplit:
    """One split: uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)`` on one device.

    Shared between the trials of a process: treat the tensors as read-only.
    """

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        if self.images.device != self.labels.device:
            raise ValueError(f"images on {self.images.device} but labels on {self.labels.device}")

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True, eq=False)  # tensors: compare by identity
class Datasets:
    """Train, test and optional validation splits with their normalisation statistics."""

    train: ImageSplit
    test: ImageSplit
    val: ImageSplit | None
    num_classes: int
    in_channels: int
    image_size: int
    mean: Tensor
    std: Tensor
    augment: bool

    @property
    def device(self) -> torch.device:
        return self.train.images.device

    @functools.cached_property
    def digest(self) -> str:
        """A hash of every image and label of every split: the same digest, the same data."""
        content = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            if split is not None:
                for tensor in (split.images, split.labels):
                    content.update(tensor.cpu().numpy().tobytes())
                content.update(b"|")
        return content.hexdigest()[:16]

    def profile(self) -> dict[str, int | str]:
        """Split sizes and the image shape, for a tracking store's dataset record.

        Returns:
            ``train``, ``validation`` and ``test`` sizes, ``classes`` and ``shape`` (``CxHxW``).
        """
        return {
            "train": len(self.train),
            "validation": 0 if self.val is None else len(self.val),
            "test": len(self.test),
            "classes": self.num_classes,
            "shape": f"{self.in_channels}x{self.image_size}x{self.image_size}",
        }

    @functools.cached_property
    def _affine(self) -> tuple[Tensor, Tensor]:
        # (x / 255 - mean) / std as one multiply-add: x * scale + shift.
        scale = (1.0 / (255.0 * self.std)).view(-1, 1, 1)
        shift = (-self.mean / self.std).view(-1, 1, 1)
        return scale, shift

    def normalize(self, images_uint8: Tensor) -> Tensor:
        """uint8 images → float32, standardised per channel with the training statistics.

        Args:
            images_uint8: ``(N, C, H, W)`` uint8 images on this data's device.

        Returns:
            float32 images of the same shape.
        """
        scale, shift = self._affine
        # One fused pass that reads uint8 and writes float32 (type promotion), no float copy.
        return torch.addcmul(shift, images_uint8, scale)

    def batches(
        self,
        split: ImageSplit,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
        augment: bool = False,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Normalised float32 ``x`` and int64 ``y`` batches of ``split``, on its device.

        The random draws for a whole pass are made up front, so a CPU generator costs one
        transfer per pass, not one per batch.

        Args:
            split: one of this data's splits.
            batch_size: images per batch (the last may be smaller).
            shuffle: whether to visit the images in a random order.
            generator: seeds the shuffle and augmentation; on the CPU or the data's device.
            augment: random crop and flip (:func:`random_crop_flip`) each batch.
            drop_last: leave out a last batch smaller than ``batch_size``.

        Returns:
            An iterator over ``(x, y)`` batches.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        n = len(split)
        device = split.images.device
        order = _randperm(n, generator, device) if shuffle else None
        if augment:
            offsets, flips = _draw_crop_flip(n, CROP_PADDING, generator, device)
        end = n - n % batch_size if drop_last else n
        for start in range(0, end, batch_size):
            stop = min(start + batch_size, n)
            if order is None:
                x, y = split.images[start:stop], split.labels[start:stop]
            else:
                index = order[start:stop]
                x, y = split.images[index], split.labels[index]
            if augment:
                x = _crop_flip(x, offsets[:, start:stop], flips[start:stop], CROP_PADDING)
            yield self.normalize(x), y


def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images, in [0, 1] units.

    Args:
        images: ``(N, C, H, W)`` uint8 images; read in chunks, so no float copy of all of them.

    Returns:
        float32 ``mean`` and ``std`` of shape ``(C,)``, ``std`` at least one grey level.
    """
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        values = chunk.float()
        total += values.sum(dim=(0, 2, 3), dtype=torch.float64)
        squares += values.square().sum(dim=(0, 2, 3), dtype=torch.float64)
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0.0).sqrt()
    # A constant channel would divide by zero; one grey level is the smallest meaningful spread.
    return (mean / 255).float(), (std / 255).clamp_min(1 / 255).float()


# --------------------------------------------------------------------------- augmentation


def random_crop_flip(
    images: Tensor, *, padding: int = CROP_PADDING, generator: torch.Generator | None = None
) -> Tensor:
    """Random crop after zero ``padding`` plus random horizontal flip, for a whole batch.

    Works on any dtype and device without a per-image loop.

    Args:
        images: ``(N, C, H, W)`` images.
        padding: pixels of zero padding on each side before the crop.
        generator: seeds the crops and flips; on the CPU or the images' device.

    Returns:
        The augmented images, of the same shape and dtype.
    """
    offsets, flips = _draw_crop_flip(images.shape[0], padding, generator, images.device)
    return _crop_flip(images, offsets, flips, padding)


def _draw_crop_flip(
    n: int, padding: int, generator: torch.Generator | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """(row, column) crop offsets ``(2, n)`` in [0, 2 * padding] and flip flags ``(n,)``."""
    offsets = _randint(2 * padding + 1, (2, n), generator, device)
    flips = _randint(2, (n,), generator, device).bool()
    return offsets, flips


def _crop_flip(images: Tensor, offsets: Tensor, flips: Tensor, padding: int) -> Tensor:
    """Crop each image at its (row, column) ``offsets`` into the padded batch, then flip.

    One ``gather`` over flattened pixels: the index of each output pixel in the padded image is
    ``row * padded_width + column``, with columns reversed for flipped images.
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    width = w + 2 * padding
    cols = torch.arange(w, device=images.device)
    cols = torch.where(flips[:, None], cols.flip(0), cols) + offsets[1, :, None]
    rows = torch.arange(h, device=images.device) + offsets[0, :, None]
    index = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)


def _randint(
    high: int, size: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.randint(high, size, generator=generator, device=where).to(device)


def _randperm(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.randperm(n, generator=generator, device=where).to(device)

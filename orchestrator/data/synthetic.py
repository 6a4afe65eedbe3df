"""The generated task: smooth random class prototypes plus noise, made from the trial's seed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from orchestrator.data.splits import stream

if TYPE_CHECKING:
    from orchestrator.config import DatasetConfig
    from orchestrator.data.specs import DatasetSpec, RawSplits

__all__ = ["generate"]


def generate(spec: DatasetSpec, config: DatasetConfig, seed: int) -> RawSplits:
    """Smooth random class prototypes plus Gaussian pixel noise, quantised to uint8.

    Prototypes are drawn at a quarter of the resolution and upsampled, so they have the spatial
    structure convolutions pick up. Classes are balanced (±1).

    Args:
        spec: the registry entry (its shape comes from ``config.synthetic``).
        config: the ``dataset:`` section; ``config.synthetic`` sets the shape, the sizes and
            ``noise``, the noise std in units of the [0, 1] range.
        seed: the trial's seed; the same seed gives the same images.

    Returns:
        The training and test arrays, on the CPU.
    """
    task = config.synthetic
    shape = spec.shape_for(config)
    generator = stream(seed, "synthetic")
    side = shape.image_size
    coarse = max(2, side // 4)
    prototypes = torch.rand(shape.num_classes, shape.channels, coarse, coarse, generator=generator)
    prototypes = F.interpolate(prototypes, size=(side, side), mode="bilinear", align_corners=False)

    def draw(size: int) -> tuple[Tensor, Tensor]:
        labels = torch.arange(size) % shape.num_classes
        labels = labels[torch.randperm(size, generator=generator)]
        noise = torch.randn(size, shape.channels, side, side, generator=generator)
        pixels = prototypes[labels] + task.noise * noise
        images = pixels.clamp_(0.0, 1.0).mul_(255).round_().to(torch.uint8)
        return images, labels

    return draw(task.train_size), draw(task.test_size)

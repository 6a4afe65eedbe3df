"""torchvision's classification networks as registry builders, with any number of input channels."""

from __future__ import annotations

from collections.abc import Callable

import torchvision
from torch import nn

__all__ = ["torchvision_builder"]


def torchvision_builder(arch: str) -> Callable[..., nn.Module]:
    """The builder of torchvision's ``arch``, with random weights.

    Args:
        arch: a name from ``torchvision.models.list_models()``, e.g. ``"resnet18"``.

    Returns:
        ``builder(num_classes, in_channels, input_size) -> nn.Module``; for ``in_channels``
        other than 3 the first 3-channel ``Conv2d`` is replaced by one of the same geometry.
    """
    try:
        factory = torchvision.models.get_model_builder(arch)
    except ValueError:
        names = ", ".join(torchvision.models.list_models(module=torchvision.models)[:20])
        raise ValueError(f"unknown torchvision model '{arch}'; e.g. {names}, ...") from None

    def make(num_classes: int, in_channels: int, input_size: int) -> nn.Module:
        model = factory(weights=None, num_classes=num_classes)
        if in_channels != 3:
            _replace_first_conv(model, in_channels)
        return model

    return make


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                setattr(
                    parent,
                    child_name,
                    nn.Conv2d(
                        in_channels,
                        child.out_channels,
                        _pair(child.kernel_size),
                        _pair(child.stride),
                        child.padding if isinstance(child.padding, str) else _pair(child.padding),
                        _pair(child.dilation),
                        child.groups,
                        child.bias is not None,
                    ),
                )
                return
    raise ValueError("cannot adapt the input channels of this torchvision model")


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's size (torch types it as a tuple of any length, as every conv's) as its pair."""
    first, second = values
    return first, second

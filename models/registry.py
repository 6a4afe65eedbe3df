"""One registry of network builders, seeded so the same seed gives bit-identical weights.

The built-in networks are named here by the module and function that build them and imported
on first :func:`build`, so listing the names (config validation) does not import torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Builder", "available", "build", "register"]

Builder = Callable[..., "nn.Module"]
"""``builder(num_classes=, in_channels=, input_size=) -> nn.Module``."""

_BUILTINS: dict[str, tuple[str, str]] = {
    "conv2": ("models.lottery", "conv2"),
    "conv4": ("models.lottery", "conv4"),
    "conv6": ("models.lottery", "conv6"),
    "lenet300100": ("models.lottery", "lenet300100"),
    "resnet20": ("models.resnet", "resnet20"),
    "vgg11": ("models.vgg", "vgg11"),
    "vgg16": ("models.vgg", "vgg16"),
}

_REGISTERED: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Register a builder of one's own network under ``name`` (a decorator).

    Args:
        name: the name :func:`build` accepts; it must not be taken yet.

    Returns:
        A decorator that records ``builder(num_classes, in_channels, input_size) -> nn.Module``
        and returns it unchanged.
    """

    def decorate(builder: Builder) -> Builder:
        if name in _BUILTINS or name in _REGISTERED:
            raise ValueError(f"model '{name}' is already registered")
        _REGISTERED[name] = builder
        return builder

    return decorate


def available() -> list[str]:
    """Names accepted by :func:`build` (besides ``torchvision:<name>``).

    Returns:
        The built-in and the registered names, sorted.
    """
    return sorted(_BUILTINS.keys() | _REGISTERED.keys())


def build(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    seed: int | None = 0,
    *,
    input_size: int = 32,
) -> nn.Module:
    """Build a network with weights drawn from ``seed``.

    Args:
        name: a name from :func:`available` or ``torchvision:<name>``.
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        seed: seed of the initial weights; ``None`` draws them from the global RNG.
        input_size: side of the square input images; networks with a flattening classifier
            (Conv-x, LeNet) size their first linear layer from it.

    Returns:
        The freshly initialised network.
    """
    import torch

    builder = _builder(name)
    if seed is None:
        return builder(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    # A forked RNG keeps building a model from changing the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(num_classes=num_classes, in_channels=in_channels, input_size=input_size)


def _builder(name: str) -> Builder:
    if name.startswith("torchvision:"):
        from models.torchvision_adapter import torchvision_builder

        return torchvision_builder(name.split(":", 1)[1])
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTINS:
        module, function = _BUILTINS[name]
        return getattr(importlib.import_module(module), function)
    raise ValueError(
        f"unknown model '{name}'; available: {', '.join(available())}, or torchvision:<name>"
    )

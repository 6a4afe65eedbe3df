"""One registry of network builders, seeded so the same seed gives bit-identical weights.

The built-in networks are named here by the module and function that build them and imported
on first :func:`build`, so listing the names (config validation) does not import torch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Builder", "available", "build", "register", "scalable"]

Builder = Callable[..., "nn.Module"]
"""``builder(num_classes=, in_channels=, input_size=) -> nn.Module``; a builder that also takes
``width=`` scales its layers' widths (:func:`scalable`)."""

_BUILTINS: dict[str, tuple[str, str]] = {
    "conv2": ("models.lottery", "conv2"),
    "conv4": ("models.lottery", "conv4"),
    "conv6": ("models.lottery", "conv6"),
    "lenet300100": ("models.lottery", "lenet300100"),
    "resnet20": ("models.resnet", "resnet20"),
    "vgg11": ("models.vgg", "vgg11"),
    "vgg16": ("models.vgg", "vgg16"),
}

# Every built-in but torchvision's networks takes a width multiplier; named here so that config
# validation knows it without importing torch.
_SCALABLE = frozenset(_BUILTINS)

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


def scalable(name: str) -> bool:
    """Whether the network ``name`` takes a width multiplier (``build(..., width=)``).

    Args:
        name: a name :func:`build` accepts.

    Returns:
        True for the built-in networks and for registered builders with a ``width`` parameter;
        False for ``torchvision:<name>`` and unknown names.
    """
    if name in _REGISTERED:
        return "width" in inspect.signature(_REGISTERED[name]).parameters
    return name in _SCALABLE


def build(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    seed: int | None = 0,
    *,
    input_size: int = 32,
    width: float = 1.0,
) -> nn.Module:
    """Build a network with weights drawn from ``seed``.

    Args:
        name: a name from :func:`available` or ``torchvision:<name>``.
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        seed: seed of the initial weights; ``None`` draws them from the global RNG.
        input_size: side of the square input images; networks with a flattening classifier
            (Conv-x, LeNet) size their first linear layer from it.
        width: multiplier of the layers' widths (Conv-x and VGG: every conv's channels;
            LeNet-300-100: the hidden layers; ResNet-20: every stage); 1 is the paper's network.

    Returns:
        The freshly initialised network.
    """
    import torch

    builder = _builder(name)
    arguments: dict[str, Any] = {
        "num_classes": num_classes,
        "in_channels": in_channels,
        "input_size": input_size,
    }
    # Width 1 is not passed, so that registered builders without a width keep working.
    if width != 1:
        if not scalable(name):
            raise ValueError(f"model '{name}' takes no width (width {width} was asked for)")
        arguments["width"] = width
    if seed is None:
        return builder(**arguments)
    # A forked RNG keeps building a model from changing the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(**arguments)


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

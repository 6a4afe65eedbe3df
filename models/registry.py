"""One registry of network builders, seeded so the same seed gives bit-identical weights."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Builder = Callable[..., nn.Module]

_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Register ``builder(num_classes, in_channels, input_size) -> nn.Module`` under ``name``."""

    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"model '{name}' is already registered")
        _BUILDERS[name] = builder
        return builder

    return decorate


def available() -> list[str]:
    """Names accepted by :func:`build` (besides ``torchvision:<name>``)."""
    _load_builtins()
    return sorted(_BUILDERS)


def build(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    seed: int | None = 0,
    *,
    input_size: int = 32,
) -> nn.Module:
    """Build a network with weights drawn from ``seed`` (``None``: the global RNG).

    ``input_size`` is the side of the square input images; networks with a flattening
    classifier (Conv-x) size their first linear layer from it.
    """
    _load_builtins()
    if name.startswith("torchvision:"):
        builder: Builder = _torchvision_builder(name.split(":", 1)[1])
    elif name in _BUILDERS:
        builder = _BUILDERS[name]
    else:
        raise ValueError(
            f"unknown model '{name}'; available: {', '.join(available())}, or torchvision:<name>"
        )
    if seed is None:
        return builder(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    # A forked RNG keeps building a model from changing the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(num_classes=num_classes, in_channels=in_channels, input_size=input_size)


def _torchvision_builder(arch: str) -> Builder:
    import torchvision

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
                        child.kernel_size,
                        child.stride,
                        child.padding,
                        child.dilation,
                        child.groups,
                        child.bias is not None,
                    ),
                )
                return
    raise ValueError("cannot adapt the input channels of this torchvision model")


_LOADED = False


def _load_builtins() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from models import lottery, resnet, vgg  # noqa: F401  (registers the builders)

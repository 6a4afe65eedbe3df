"""Parameter and FLOP accounting for dense, pruned and factorized networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["compression_ratio", "count_flops", "count_parameters"]


def count_parameters(model: nn.Module, nonzero: bool = False) -> int:
    """All parameters of ``model`` (biases and BatchNorm included), or only the nonzero ones."""
    if nonzero:
        return int(sum(int(torch.count_nonzero(p.detach())) for p in model.parameters()))
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of a single input of shape ``(C, H, W)``.

    Every Conv2d (grouped ones included, so ALDS encoders count) and Linear layer is
    counted by a forward hook; zeros in pruned weights are not subtracted, since dense
    kernels spend the same work on them.
    """
    total = 0

    def conv_hook(
        module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        nonlocal total
        kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        total += output[0].numel() * kernel

    def linear_hook(
        module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        nonlocal total
        total += output[0].numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return int(total)


def compression_ratio(model: nn.Module, original_parameters: int) -> float:
    """``original_parameters / nonzero parameters of model``: 1.0 for the dense original.

    Pass the parameter count of the *unfactorized dense* network, so a factorized or
    pruned network is compared with what it replaces.
    """
    nonzero = count_parameters(model, nonzero=True)
    return float("inf") if nonzero == 0 else original_parameters / nonzero

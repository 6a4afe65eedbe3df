"""Parameter and FLOP accounting for dense, pruned and factorized networks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

import torch
from torch import nn

from compression.factorized import FactorizedConv2d, FactorizedLinear

__all__ = [
    "LayerCost",
    "compression_ratio",
    "count_flops",
    "count_layer_flops",
    "count_parameters",
    "layer_costs",
    "magnitude_shares",
    "sparsity",
]


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
    return sum(count_layer_flops(model, input_shape).values())


def count_layer_flops(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """:func:`count_flops` per Conv2d/Linear layer, keyed by qualified module name."""
    flops: dict[str, int] = {}

    def hook(name: str, module: nn.Conv2d | nn.Linear, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kernel = module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            kernel = module.in_features
        flops[name] = flops.get(name, 0) + output[0].numel() * kernel

    handles = [
        module.register_forward_hook(
            lambda module, inputs, output, name=name: hook(name, module, output)
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]
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
    return {name: int(value) for name, value in flops.items()}


def compression_ratio(
    model: nn.Module, original_parameters: int, *, nonzero: int | None = None
) -> float:
    """``original_parameters / nonzero parameters of model``: 1.0 for the dense original.

    Pass the parameter count of the *unfactorized dense* network, so a factorized or
    pruned network is compared with what it replaces. ``nonzero``, when the caller has
    already counted the model's nonzero parameters, saves counting them again.
    """
    if nonzero is None:
        nonzero = count_parameters(model, nonzero=True)
    return float("inf") if nonzero == 0 else original_parameters / nonzero


class _LayerCount(TypedDict):
    """One tensor's entry of :func:`sparsity`: its nonzero and total entries, its sparsity."""

    alive: int
    total: int
    sparsity: float


def sparsity(tensors: Mapping[str, torch.Tensor]) -> dict:
    """Nonzero ("alive") entries per tensor and in total, with the sparsity they leave.

    Pass weights to measure them, or bool masks to count their ``True`` entries. Returns
    ``{"layers": {name: {"alive", "total", "sparsity"}}, "alive", "total", "sparsity"}``;
    the sparsity of no entries at all is 0.
    """
    layers: dict[str, _LayerCount] = {}
    for name, tensor in tensors.items():
        alive = int(torch.count_nonzero(tensor.detach()))
        total = tensor.numel()
        layers[name] = {"alive": alive, "total": total, "sparsity": _fraction_zero(alive, total)}
    alive = sum(layer["alive"] for layer in layers.values())
    total = sum(layer["total"] for layer in layers.values())
    overall = _fraction_zero(alive, total)
    return {"layers": layers, "alive": alive, "total": total, "sparsity": overall}


def _fraction_zero(alive: int, total: int) -> float:
    return 1.0 - alive / total if total else 0.0


@dataclass(frozen=True)
class LayerCost:
    """What one layer of the original network holds and costs now.

    ``weights`` counts the entries of the layer's weight (of both factors once ALDS factorized
    it), ``nonzero`` those that are not zero. ``params`` and ``flops`` are the effective cost:
    each weight stored in the cheaper of two exact forms, its nonzero entries (a sparse
    kernel skips the zeros) or factors at its numerical rank in each column block of its
    k-split (ALDS's form), and the multiply-accumulates of one input in that form.
    """

    weights: int
    nonzero: int
    params: int
    flops: int

    def __add__(self, other: LayerCost) -> LayerCost:
        """The cost of two weights of one layer (a factorized layer's encoder and decoder)."""
        return LayerCost(
            self.weights + other.weights,
            self.nonzero + other.nonzero,
            self.params + other.params,
            self.flops + other.flops,
        )


def layer_costs(
    model: nn.Module, input_shape: Sequence[int], splits: Mapping[str, int] | None = None
) -> dict[str, LayerCost]:
    """:class:`LayerCost` of every Conv2d/Linear layer, keyed by its name in the original
    network: the encoder and decoder of a factorized layer count together under its name.

    Args:
        model: the network, dense, projected, factorized or pruned.
        input_shape: ``(C, H, W)`` of one input.
        splits: layer name → the k of the layer's k-split (1 where absent); the column blocks
            whose ranks are counted. An ALDS-projected layer has low rank only per block.

    Returns:
        Layer name → its cost, in registration order.
    """
    splits = splits or {}
    flops = count_layer_flops(model, input_shape)
    owner = {
        f"{name}.{child}": name
        for name, module in model.named_modules()
        if isinstance(module, FactorizedConv2d | FactorizedLinear)
        for child in ("encoder", "decoder")
    }
    costs: dict[str, LayerCost] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d | nn.Linear):
            continue
        layer = owner.get(name, name)
        cost = _weight_cost(module, flops.get(name, 0), splits.get(name, 1))
        if layer in costs:
            cost = costs[layer] + cost
        costs[layer] = cost
    return costs


def _weight_cost(module: nn.Conv2d | nn.Linear, flops: int, k: int) -> LayerCost:
    weight = module.weight.detach()
    total = weight.numel()
    nonzero = int(torch.count_nonzero(weight))
    rows = weight.shape[0]
    per_position = flops // total if total else 0  # output positions a weight entry serves
    params = nonzero
    grouped = isinstance(module, nn.Conv2d) and module.groups > 1
    if not grouped and rows and total % (rows * k) == 0:
        blocks = weight.reshape(rows, k, -1).transpose(0, 1).float()
        columns = blocks.shape[-1]
        ranks = torch.linalg.matrix_rank(blocks)
        params = min(params, int(ranks.sum()) * (rows + columns))
    return LayerCost(weights=total, nonzero=nonzero, params=params, flops=params * per_position)


def magnitude_shares(weights: Sequence[torch.Tensor], fraction: float = 0.1) -> tuple[float, float]:
    """The share of the total magnitude held by the smallest and by the largest ``fraction``
    of the nonzero entries of ``weights`` (a decile each by default).

    A method that shrinks insignificant weights and grows significant ones lowers the first
    and raises the second. Returns ``(nan, nan)`` when there is no nonzero entry.
    """
    values = torch.cat([w.detach().abs().flatten().float() for w in weights]) if weights else None
    if values is None:
        return math.nan, math.nan
    values = values[values > 0]
    total = float(values.sum())
    if total == 0.0:
        return math.nan, math.nan
    ordered = torch.sort(values).values
    count = max(1, int(len(ordered) * fraction))
    return float(ordered[:count].sum()) / total, float(ordered[-count:].sum()) / total

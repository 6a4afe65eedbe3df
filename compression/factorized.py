"""Factorized layers: a dense layer replaced by a grouped ``encoder`` and a ``decoder``.

ALDS (:func:`compression.alds.apply` with ``mode="factorize"``) builds them; IMP
(:mod:`compression.imp`) gives both factors the role of the layer they replace.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FactorizedConv2d", "FactorizedLinear"]


class FactorizedConv2d(nn.Module):
    """A conv layer as a grouped ``encoder`` (c → k·j, the original kernel) and a 1x1 ``decoder``.

    ``decoder`` carries the original bias. Both are plain ``nn.Conv2d``, so masks and optimizers
    treat them like any other layer.
    """

    def __init__(self, encoder: nn.Conv2d, decoder: nn.Conv2d) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class FactorizedLinear(nn.Module):
    """A linear layer as a grouped 1x1 ``encoder`` conv (c → k·j) and a linear ``decoder``.

    The encoder sees the features as an ``(N, c, 1, 1)`` image, which is how a grouped linear
    map is expressed with stock layers; any leading batch dimensions are kept.
    """

    def __init__(self, encoder: nn.Conv2d, decoder: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leading = x.shape[:-1]
        code = self.encoder(x.reshape(-1, x.shape[-1], 1, 1)).flatten(1)
        return self.decoder(code).reshape(*leading, -1)

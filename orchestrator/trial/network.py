"""The sweep's network: built from ``model`` for a dataset's shape, and its size.

The trial, the cost estimate and ``orchestrate validate`` build the network here, so the name
and the width reach ``models.build`` by one path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import compression
import models
from orchestrator import workspace
from orchestrator.data import digests, registry

if TYPE_CHECKING:
    from torch import nn

    from orchestrator.config import SweepConfig
    from orchestrator.data.specs import DatasetShape

__all__ = ["NetworkSize", "build", "shape", "size"]


def shape(config: SweepConfig) -> DatasetShape:
    """Classes and input shape of the sweep's dataset, read from the dataset table (no data)."""
    return registry.spec(config.dataset.name).shape_for(config.dataset)


def build(config: SweepConfig, data_shape: DatasetShape, seed: int | None = 0) -> nn.Module:
    """The sweep's network (``model.name`` at ``model.width``) for data of ``data_shape``.

    Args:
        config: the sweep's config.
        data_shape: classes and input shape of the data it is trained on.
        seed: seed of the initial weights (``models.build``).

    Returns:
        The freshly initialised network.
    """
    return models.build(
        config.model.name,
        num_classes=data_shape.num_classes,
        in_channels=data_shape.channels,
        seed=seed,
        input_size=data_shape.image_size,
        width=config.model.width,
    )


@dataclass(frozen=True)
class NetworkSize:
    """What ``validate`` prints of the network before anything runs.

    Attributes:
        parameters: every parameter (biases and BatchNorm included).
        weights: the weights of Conv2d and Linear layers, what IMP's sparsity counts.
        conv_weights: the part of ``weights`` in Conv2d layers.
        macs: multiply-accumulates of one forward pass of one image (the ``flops_*`` metrics'
            unit).
        conv_macs: the part of ``macs`` in Conv2d layers.
    """

    parameters: int
    weights: int
    conv_weights: int
    macs: int
    conv_macs: int

    def describe(self) -> str:
        """One line: the counts, with the convolutions' shares of weights and of FLOPs."""
        return (
            f"{self.parameters:,} parameters ({self.weights:,} prunable weights, "
            f"{_share(self.conv_weights, self.weights)} in convolutions); "
            f"{self.macs:,} FLOPs (multiply-accumulates) per image, "
            f"{_share(self.conv_macs, self.macs)} in convolutions"
        )


def size(config: SweepConfig) -> NetworkSize:
    """The counts of the sweep's network on its dataset's input shape.

    Counting builds the network (torch, seconds); the counts are kept in the sweep's cache
    folder by the network's configuration, the input shape and the code that builds and
    counts it, where a sweep has made that folder (``validate`` makes no folder). A sweep's
    workers keep them as they run trials, so ``validate`` after a sweep imports no torch.

    Args:
        config: the sweep's config.

    Returns:
        Its :class:`NetworkSize`.
    """
    data_shape = shape(config)
    content = hashlib.sha256(
        json.dumps([config.model.model_dump(mode="json"), dataclasses.asdict(data_shape)]).encode()
    )
    sources = [Path(str(p.__file__)).parent.glob("*.py") for p in (models, compression)]
    content.update(digests.sources_digest(tuple(sorted(f for s in sources for f in s))).encode())
    path = workspace.network_size_file(config, content.hexdigest()[:20])
    if path.is_file():
        return NetworkSize(**json.loads(path.read_text()))
    counted = _count(config, data_shape)
    if path.parent.parent.is_dir():
        path.parent.mkdir(exist_ok=True)
        scratch = path.with_name(f"{path.name}.{os.getpid()}")
        scratch.write_text(json.dumps(dataclasses.asdict(counted)))
        os.replace(scratch, path)
    return counted


def _count(config: SweepConfig, data_shape: DatasetShape) -> NetworkSize:
    from torch import nn

    from compression import metrics

    model = build(config, data_shape, seed=0)
    layers = dict(model.named_modules())
    flops = metrics.count_layer_flops(
        model, (data_shape.channels, data_shape.image_size, data_shape.image_size)
    )
    convs = [name for name, module in layers.items() if isinstance(module, nn.Conv2d)]
    weighted = [module for module in layers.values() if isinstance(module, nn.Conv2d | nn.Linear)]
    return NetworkSize(
        parameters=metrics.count_parameters(model),
        weights=sum(module.weight.numel() for module in weighted),
        conv_weights=sum(layers[name].weight.numel() for name in convs),
        macs=sum(flops.values()),
        conv_macs=sum(flops.get(name, 0) for name in convs),
    )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "0%"

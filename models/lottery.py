"""The lottery-ticket networks (Frankle & Carbin 2019): Conv-2/4/6 and LeNet-300-100."""

from __future__ import annotations

from torch import nn

from models.width import scaled

__all__ = ["ConvNet", "LeNet300100", "conv2", "conv4", "conv6", "lenet300100"]


def _glorot(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def _fully_connected(features: int, hidden: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Flatten, then linear layers of the ``hidden`` widths with ReLUs between, then the output."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(features, width), nn.ReLU(inplace=True)]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


class ConvNet(nn.Module):
    """Conv-x: pairs of 3x3 'same' convs, each pair followed by 2x2 max-pooling, then 3 FCs.

    The fully connected layers keep the paper's 256-256 at every width: the width multiplier
    scales the convolutions, which are what ALDS's channel splitting acts on.
    """

    def __init__(
        self, widths: tuple[int, ...], num_classes: int, in_channels: int, input_size: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        side = input_size
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
            side //= 2
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for {len(widths)} poolings")
        self.features = nn.Sequential(*layers)
        self.classifier = _fully_connected(channels * side * side, (256, 256), num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet300100(nn.Module):
    """LeNet-300-100: a fully connected 784-300-100-10 network (any input size)."""

    def __init__(
        self, num_classes: int, in_channels: int, input_size: int, width: float = 1.0
    ) -> None:
        super().__init__()
        hidden = (scaled(300, width), scaled(100, width))
        self.classifier = _fully_connected(
            in_channels * input_size * input_size, hidden, num_classes
        )

    def forward(self, x):
        return self.classifier(x)


def conv2(num_classes: int, in_channels: int, input_size: int, width: float = 1.0) -> nn.Module:
    """Conv-2: one pair of 64-channel convs (times ``width``), Glorot-initialised."""
    channels = tuple(scaled(c, width) for c in (64,))
    return _glorot(ConvNet(channels, num_classes, in_channels, input_size))


def conv4(num_classes: int, in_channels: int, input_size: int, width: float = 1.0) -> nn.Module:
    """Conv-4: pairs of 64 and 128 channels (times ``width``), Glorot-initialised."""
    channels = tuple(scaled(c, width) for c in (64, 128))
    return _glorot(ConvNet(channels, num_classes, in_channels, input_size))


def conv6(num_classes: int, in_channels: int, input_size: int, width: float = 1.0) -> nn.Module:
    """Conv-6: pairs of 64, 128 and 256 channels (times ``width``), Glorot-initialised."""
    channels = tuple(scaled(c, width) for c in (64, 128, 256))
    return _glorot(ConvNet(channels, num_classes, in_channels, input_size))


def lenet300100(
    num_classes: int, in_channels: int, input_size: int, width: float = 1.0
) -> nn.Module:
    """LeNet-300-100 (hidden widths times ``width``), Glorot-initialised."""
    return _glorot(LeNet300100(num_classes, in_channels, input_size, width))

"""CIFAR VGG-11 and VGG-16 with BatchNorm (one linear classifier, as in open_lth)."""

from __future__ import annotations

from torch import nn

from models.width import scaled

__all__ = ["CifarVGG", "vgg11", "vgg16"]

_PLANS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
}


class CifarVGG(nn.Module):
    def __init__(
        self, plan: tuple[int | str, ...], num_classes: int, in_channels: int, width: float = 1.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                out = scaled(int(item), width)
                layers += [
                    nn.Conv2d(channels, out, 3, padding=1),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:  # every conv here has one
                    nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def vgg11(num_classes: int, in_channels: int, input_size: int, width: float = 1.0) -> nn.Module:
    """VGG-11 with BatchNorm, channels times ``width`` (``input_size`` is not needed: the
    pooling is adaptive)."""
    return CifarVGG(_PLANS["vgg11"], num_classes, in_channels, width)


def vgg16(num_classes: int, in_channels: int, input_size: int, width: float = 1.0) -> nn.Module:
    """VGG-16 with BatchNorm, channels times ``width`` (``input_size`` is not needed: the
    pooling is adaptive)."""
    return CifarVGG(_PLANS["vgg16"], num_classes, in_channels, width)

"""The model registry: parameter counts, seeding, shapes and unknown names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models


def weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))


def conv_weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))


def test_conv6_has_the_lottery_ticket_weight_count() -> None:
    model = models.build("conv6", num_classes=10, in_channels=3, seed=0)
    assert weights(model) == 2_261_184
    assert conv_weights(model) == 1_144_512


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Frankle & Carbin 2019, Figure 2 (Conv-2/4 with 3x3 convs, FC 256-256-10).
        ("conv2", 38_592 + 16384 * 256 + 256 * 256 + 2560),
        ("conv4", 38_592 + 221_184 + 8192 * 256 + 256 * 256 + 2560),
        ("lenet300100", 784 * 300 + 300 * 100 + 100 * 10),
    ],
)
def test_lottery_networks_weight_counts(name: str, expected: int) -> None:
    in_channels, size = (1, 28) if name == "lenet300100" else (3, 32)
    assert weights(models.build(name, in_channels=in_channels, input_size=size)) == expected


def test_resnet20_and_vgg_sizes() -> None:
    # ResNet-20 for CIFAR has about 0.27M parameters, VGG-16 about 14.7M.
    assert 0.26e6 < sum(p.numel() for p in models.build("resnet20").parameters()) < 0.28e6
    assert 14.6e6 < sum(p.numel() for p in models.build("vgg16").parameters()) < 14.8e6
    assert 9.1e6 < sum(p.numel() for p in models.build("vgg11").parameters()) < 9.3e6


@pytest.mark.parametrize("name", [*models.available(), "torchvision:resnet18"])
def test_forward_shapes(name: str) -> None:
    in_channels, size = (1, 28) if name.startswith(("lenet", "conv")) else (3, 32)
    model = models.build(name, num_classes=7, in_channels=in_channels, seed=1, input_size=size)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("name", ["conv4", "resnet20", "torchvision:mobilenet_v3_small"])
def test_same_seed_gives_identical_weights(name: str) -> None:
    first = models.build(name, seed=3).state_dict()
    second = models.build(name, seed=3).state_dict()
    other = models.build(name, seed=4).state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert any(not torch.equal(first[key], other[key]) for key in first)


def test_building_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    models.build("conv2", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_names_list_the_available_ones() -> None:
    with pytest.raises(ValueError, match="available: conv2, conv4, conv6"):
        models.build("conv5")
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet9000'"):
        models.build("torchvision:resnet9000")


def test_input_too_small_for_the_poolings() -> None:
    with pytest.raises(ValueError, match="too small"):
        models.build("conv6", input_size=4)


def _channels(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_width_scales_the_channels_and_keeps_the_layer_names() -> None:
    full = models.build("conv6", in_channels=1, input_size=28)
    quarter = models.build("conv6", in_channels=1, input_size=28, width=0.25)
    assert _channels(full) == [64, 64, 128, 128, 256, 256]
    assert _channels(quarter) == [16, 16, 32, 32, 64, 64]
    assert list(quarter.state_dict()) == list(full.state_dict())
    # The fully connected layers keep the paper's 256-256; the first one reads 64 x 3 x 3.
    linears = [m for m in quarter.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(576, 256), (256, 256), (256, 10)]


@pytest.mark.parametrize(
    ("name", "width", "expected"),
    [
        ("conv2", 0.5, [32, 32]),
        ("conv4", 0.125, [8, 8, 16, 16]),
        ("vgg11", 0.25, [16, 32, 64, 64, 128, 128, 128, 128]),
        ("resnet20", 2.0, [32] + [32] * 6 + [64] * 6 + [64] + [128] * 6 + [128]),
    ],
)
def test_width_scales_every_conv_of_the_other_networks(
    name: str, width: float, expected: list[int]
) -> None:
    model = models.build(name, width=width)
    assert sorted(_channels(model)) == sorted(expected)
    assert list(model.state_dict()) == list(models.build(name).state_dict())


def test_width_scales_the_hidden_layers_of_lenet() -> None:
    model = models.build("lenet300100", in_channels=1, input_size=28, width=0.5)
    assert weights(model) == 784 * 150 + 150 * 50 + 50 * 10


def test_width_one_is_the_papers_network_bit_for_bit() -> None:
    plain = models.build("conv4", seed=2).state_dict()
    one = models.build("conv4", seed=2, width=1.0).state_dict()
    assert all(torch.equal(plain[key], one[key]) for key in plain)


def test_networks_without_a_width_refuse_one() -> None:
    assert models.scalable("conv6") and not models.scalable("torchvision:resnet18")
    with pytest.raises(ValueError, match="'torchvision:resnet18' takes no width"):
        models.build("torchvision:resnet18", width=0.5)


def test_a_registered_builder_is_scalable_when_it_takes_a_width() -> None:
    @models.register("test_fixed_mlp")
    def fixed(num_classes: int, in_channels: int, input_size: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size**2, num_classes))

    @models.register("test_wide_mlp")
    def wide(num_classes: int, in_channels: int, input_size: int, width: float = 1) -> nn.Module:
        hidden = round(8 * width)
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * input_size**2, hidden),
            nn.Linear(hidden, num_classes),
        )

    assert not models.scalable("test_fixed_mlp") and models.scalable("test_wide_mlp")
    assert models.build("test_fixed_mlp", input_size=4) is not None  # width 1 is not passed
    with pytest.raises(ValueError, match="takes no width"):
        models.build("test_fixed_mlp", input_size=4, width=2)
    assert models.build("test_wide_mlp", input_size=4, width=2)[1].out_features == 16

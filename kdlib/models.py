"""Model zoo: CIFAR ResNets (RepDistiller), torchvision ImageNet ResNets and small convnets for digits.

Every model exposes ``embed(x) -> (N, D)`` (penultimate features after global pooling), ``head`` (the final
``nn.Linear``) and ``embedding_dim``, with ``forward(x) == head(embed(x))``.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn

from kdlib.registry import Registry

ModelFactory = Callable[[int, int], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model", "model")


def build_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Builds the registered model ``name`` with ``num_classes`` outputs and ``in_channels`` input channels."""
    return MODELS.get(name)(num_classes, in_channels)


def model_names() -> list[str]:
    """Sorted names of the registered models."""
    return MODELS.names()


def count_parameters(model: nn.Module) -> int:
    """Total number of parameters (BN running statistics are buffers and are not counted)."""
    return sum(p.numel() for p in model.parameters())


class Classifier(nn.Module):
    """Base class: subclasses set ``self.head`` (nn.Linear) and implement ``embed``."""

    head: nn.Linear

    @property
    def embedding_dim(self) -> int:
        return self.head.in_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions, BN weight 1 / bias 0, as in RepDistiller / torchvision."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


# ---------------------------------------------------------------------------------------------------------------
# CIFAR ResNets (He et al. 2016; HobbitLong/RepDistiller models/resnet.py)
# ---------------------------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection; 1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class CifarResNet(Classifier):
    """ResNet of depth 6n+2: 3x3 stem (stride 1), three stages of n BasicBlocks (strides 1, 2, 2), global
    average pooling (adaptive, so 8x8 and 28x28 inputs also work) and a linear head (RepDistiller)."""

    def __init__(self, depth: int, num_filters: list[int], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = _conv3x3(in_channels, num_filters[0])
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        stages, c_in = [], num_filters[0]
        for c_out, stride in zip(num_filters[1:], (1, 2, 2)):
            stages.append(nn.Sequential(*(BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1)
                                          for i in range(n))))
            c_in = c_out
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(num_filters[3], num_classes)
        _init_weights(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)


_CIFAR_RESNETS = {
    **{f"resnet{d}": (d, [16, 16, 32, 64]) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": (8, [32, 64, 128, 256]),
    "resnet32x4": (32, [32, 64, 128, 256]),
}
for _name, (_depth, _filters) in _CIFAR_RESNETS.items():
    MODELS.add(_name, partial(CifarResNet, _depth, _filters))


# ---------------------------------------------------------------------------------------------------------------
# ImageNet ResNets (torchvision, He et al. 2016)
# ---------------------------------------------------------------------------------------------------------------
class TorchvisionResNet(Classifier):
    """A torchvision ResNet (``weights=None``) whose ``fc`` becomes ``head``; ``conv1`` is replaced when
    ``in_channels != 3``."""

    def __init__(self, arch: str, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        import torchvision  # imported here: it costs seconds at start-up (spawned workers pay it too)

        body = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if in_channels != 3:
            old = body.conv1
            body.conv1 = nn.Conv2d(in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                                   padding=old.padding, bias=False)
            nn.init.kaiming_normal_(body.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.head = body.fc
        body.fc = nn.Identity()
        self.body = body

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


for _arch in ("resnet18", "resnet50"):
    MODELS.add(_arch, partial(TorchvisionResNet, _arch))


# ---------------------------------------------------------------------------------------------------------------
# Small convnets for sklearn digits (8x8x1)
# ---------------------------------------------------------------------------------------------------------------
class ConvNet(Classifier):
    """conv3x3(w)-BN-ReLU, conv3x3(2w)-BN-ReLU, maxpool 2, conv3x3(4w)-BN-ReLU, global average pool, linear."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [_conv3x3(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width), *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)
        _init_weights(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


for _name, _width in (("convnet_small", 16), ("convnet", 32), ("convnet_large", 64)):
    MODELS.add(_name, partial(ConvNet, width=_width))

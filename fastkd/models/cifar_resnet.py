"""CIFAR ResNets in the reference's module layout (docs/semantics.md §3.1), so state_dict keys match its checkpoints.

Key layout (fastkd == reference, minus DataParallel's ``module.`` prefix; maps in fastkd.reference.keys):
  backbone  ``conv1.{0,1}``, ``conv{2..5}_x.<block>.residual_function.<i>``, ``...shortcut.<i>``, ``fc``
  teacher   ``net.<backbone key>``
  student   ``net.<backbone key>``, ``linear1``, ``linear2`` (the 2-layer feature projector)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = _shortcut(in_channels, out_channels * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual_function(x) + self.shortcut(x))


class BottleNeck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        wide = out_channels * self.expansion
        self.residual_function = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, wide, 1, bias=False),
            nn.BatchNorm2d(wide),
        )
        self.shortcut = _shortcut(in_channels, wide, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual_function(x) + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Identity (empty Sequential, as the reference) unless the shape changes, then 1x1 conv + BN."""
    if stride == 1 and in_channels == out_channels:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class CifarResNet(nn.Module):
    """3x3 stem, no max-pool, stages at strides 1,2,2,2; forward returns (pooled feature, logits).

    ``downsample_factor`` d scales every width to int(w / sqrt(d)) (the reference's narrow teachers).
    """

    def __init__(self, block: type[nn.Module], num_blocks: list[int], num_classes: int = 100,
                 downsample_factor: float = 1.0):
        super().__init__()
        if downsample_factor <= 0:
            raise ValueError(f"downsample_factor must be > 0, got {downsample_factor}")
        scale = math.sqrt(downsample_factor)
        widths = [int(w / scale) for w in (64, 128, 256, 512)]
        self._in_channels = widths[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        self.conv2_x = self._make_layer(block, widths[0], num_blocks[0], 1)
        self.conv3_x = self._make_layer(block, widths[1], num_blocks[1], 2)
        self.conv4_x = self._make_layer(block, widths[2], num_blocks[2], 2)
        self.conv5_x = self._make_layer(block, widths[3], num_blocks[3], 2)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_size = widths[3] * block.expansion
        self.fc = nn.Linear(self.feature_size, num_classes)

    def _make_layer(self, block: type[nn.Module], out_channels: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self._in_channels, out_channels, s))
            self._in_channels = out_channels * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv5_x(self.conv4_x(self.conv3_x(self.conv2_x(self.conv1(x)))))
        feature = torch.flatten(self.avg_pool(x), 1)
        return feature, self.fc(feature)


_DEPTHS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (BottleNeck, [3, 4, 6, 3]),
    "resnet101": (BottleNeck, [3, 4, 23, 3]),
    "resnet152": (BottleNeck, [3, 8, 36, 3]),
}


def _build(name: str, num_classes: int, downsample_factor: float) -> CifarResNet:
    block, blocks = _DEPTHS[name]
    return CifarResNet(block, blocks, num_classes=num_classes, downsample_factor=downsample_factor)


@register_model
def resnet18(num_classes: int = 100, downsample_factor: float = 1.0) -> CifarResNet:
    return _build("resnet18", num_classes, downsample_factor)


@register_model
def resnet34(num_classes: int = 100, downsample_factor: float = 1.0) -> CifarResNet:
    return _build("resnet34", num_classes, downsample_factor)


@register_model
def resnet50(num_classes: int = 100, downsample_factor: float = 1.0) -> CifarResNet:
    return _build("resnet50", num_classes, downsample_factor)


@register_model
def resnet101(num_classes: int = 100, downsample_factor: float = 1.0) -> CifarResNet:
    return _build("resnet101", num_classes, downsample_factor)


@register_model
def resnet152(num_classes: int = 100, downsample_factor: float = 1.0) -> CifarResNet:
    return _build("resnet152", num_classes, downsample_factor)


class TeacherNet(nn.Module):
    """The reference's teacher wrapper: ``net`` returns (feature, logits)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.feature_size: int = net.feature_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x)


class StudentNet(nn.Module):
    """The reference's student wrapper: backbone plus a 2-layer projector onto the teacher's feature size.

    Logits come from the backbone's own fc on the *unprojected* feature (docs/semantics.md §3.1).
    """

    def __init__(self, net: nn.Module, teacher_feature_size: int):
        super().__init__()
        self.net = net
        hidden = int((net.feature_size + teacher_feature_size) / 2)
        self.linear1 = nn.Linear(net.feature_size, hidden)
        self.linear2 = nn.Linear(hidden, teacher_feature_size)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature, logits = self.net(x)
        return self.linear2(self.relu(self.linear1(feature))), logits


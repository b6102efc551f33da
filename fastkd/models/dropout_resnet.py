"""kuangliu-style CIFAR ResNet with a dropout op after each stage (docs/semantics.md §3.3), in the reference's key
layout.

State-dict keys equal the reference's ``cnn.state_dict()``: ``conv1``, ``bn1``,
``layer{1..4}.<block>.{conv1,bn1,conv2,bn2[,conv3,bn3]}``, ``...shortcut.{0,1}``, ``linear``.
The dropout sites ``dropout{1..4}`` keep their rates in non-persistent buffers, so they add no keys.
See docs/checkpoint-keys-selfkd-dropout.md.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn as nn

from .dropout import DROPOUT_OPS, DropoutSites, RateDropout
from .registry import register_model

def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Empty Sequential (identity) unless the shape changes, then 1x1 conv + BN: keys ``shortcut.{0,1}``."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


class DropoutResNet(DropoutSites, nn.Module):
    """3x3 stem, no max-pool, stages at strides 1,2,2,2, a dropout op after each stage; returns logits only.

    The rates are driven from outside (the spacing schedule lives in ``fastkd.methods``): call
    ``set_drop_rates`` (a scalar, or one rate per site after layer1..layer4) before a forward. PyTorch default
    init, as the reference.

    Args:
        drop_op: ``"max"`` (MaxDropout) or ``"standard"`` (inverted dropout).
        drop_rate: initial rate of every site (the upper bound of the draw when ``random_rates``).
        random_rates: every site draws ``rate * U[0, 1)`` independently at each forward, on the device.
        active_at_eval: keep dropping in eval mode, as the reference does (docs/semantics.md R14).
        downsample_factor: fastkd extension (the reference has no width knob): every width becomes
            int(w / sqrt(d)), as ``downsample_factor`` of the CIFAR ResNets; for small tests and benchmarks.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], num_blocks: list[int], num_classes: int = 100,
                 drop_op: Literal["max", "standard"] = "max", drop_rate: float = 0.3,
                 random_rates: bool = False, active_at_eval: bool = False, downsample_factor: float = 1.0):
        super().__init__()
        if drop_op not in DROPOUT_OPS:
            raise ValueError(
                f"drop_op must be one of {sorted(DROPOUT_OPS)}, got {drop_op!r}; the reference's SpacedDropout and "
                "MaxSpacedDropout are 'standard' and 'max' with rates set per step through set_drop_rates"
            )
        if downsample_factor <= 0:
            raise ValueError(f"downsample_factor must be > 0, got {downsample_factor}")
        w1, w2, w3, w4 = (int(w / math.sqrt(downsample_factor)) for w in (64, 128, 256, 512))
        self._in_planes = w1
        self.conv1 = nn.Conv2d(3, w1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.layer1 = self._make_layer(block, w1, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, w2, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, w3, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, w4, num_blocks[3], 2)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(w4 * block.expansion, num_classes)
        op = DROPOUT_OPS[drop_op]
        options: dict[str, Any] = {"random_rate": random_rates, "active_at_eval": active_at_eval}
        self.dropout1 = op(drop_rate, **options)
        self.dropout2 = op(drop_rate, **options)
        self.dropout3 = op(drop_rate, **options)
        self.dropout4 = op(drop_rate, **options)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(block(self._in_planes, planes, s))
            self._in_planes = planes * block.expansion
        return nn.Sequential(*blocks)

    @property
    def dropout_sites(self) -> tuple[RateDropout, ...]:
        return (self.dropout1, self.dropout2, self.dropout3, self.dropout4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.dropout1(self.layer1(out))
        out = self.dropout2(self.layer2(out))
        out = self.dropout3(self.layer3(out))
        out = self.dropout4(self.layer4(out))
        return self.linear(torch.flatten(self.avg_pool(out), 1))


@register_model
def dropout_resnet18(**kwargs: Any) -> DropoutResNet:
    """ResNet-18 with dropout sites; kwargs as ``DropoutResNet`` (num_classes, drop_op, drop_rate, ...)."""
    return DropoutResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model
def dropout_resnet50(**kwargs: Any) -> DropoutResNet:
    """ResNet-50 with dropout sites; kwargs as ``DropoutResNet``."""
    return DropoutResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model
def dropout_resnet101(**kwargs: Any) -> DropoutResNet:
    """ResNet-101 with dropout sites; kwargs as ``DropoutResNet``."""
    return DropoutResNet(Bottleneck, [3, 4, 23, 3], **kwargs)

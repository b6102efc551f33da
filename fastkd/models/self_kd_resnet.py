"""Multi-exit ResNet of Spaced self KD (docs/semantics.md §3.2, BYOT style) in the reference's key layout.

Four exits, returned deepest first: exit 4 pools layer4; exits 3..1 gate layer3..layer1 with an attention
mask and shrink them with SepConv heads (``scala3..scala1``). Each exit has its own Linear (``fc4..fc1``).
Keys equal the reference's model keys; its adaptation layers, which the reference hangs on the DataParallel
wrapper at the first iteration, are built here eagerly as ``adaptation_layers.{0,1,2}``.
See docs/checkpoint-keys-selfkd-dropout.md for the mapping (fastkd.reference.keys converts).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from .registry import register_model

NUM_EXITS = 4


class SepConv(nn.Module):
    """Depthwise-separable conv pair: dw3x3(stride) -> pw1x1 -> BN -> ReLU -> dw3x3 -> pw1x1 -> BN -> ReLU.

    Layer indices inside ``op`` (0, 1, 2, 4, 5, 6) are the reference's checkpoint keys.
    """

    def __init__(self, channel_in: int, channel_out: int, stride: int = 2):
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(channel_in, channel_in, 3, stride=stride, padding=1, groups=channel_in, bias=False),
            nn.Conv2d(channel_in, channel_in, 1, bias=False),
            nn.BatchNorm2d(channel_in),
            nn.ReLU(),
            nn.Conv2d(channel_in, channel_in, 3, stride=1, padding=1, groups=channel_in, bias=False),
            nn.Conv2d(channel_in, channel_out, 1, bias=False),
            nn.BatchNorm2d(channel_out),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def _attention(channels: int) -> nn.Sequential:
    """Mask generator: SepConv(stride 2) -> BN -> ReLU -> bilinear x2 upsample -> sigmoid (same size as input)."""
    return nn.Sequential(
        SepConv(channels, channels),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Sigmoid(),
    )


def _head(widths: list[int]) -> nn.Sequential:
    """SepConv chain through ``widths`` (each halving the resolution), then global average pooling."""
    return nn.Sequential(*(SepConv(a, b) for a, b in zip(widths, widths[1:])), nn.AdaptiveAvgPool2d((1, 1)))


class SelfKDResNet(nn.Module):
    """torchvision-style ResNet with a CIFAR stem (3x3 conv, stride 1; no max-pool) and four exits.

    ``forward`` returns ``(logits, features)``, two lists ordered deepest first: index 0 is the deepest exit
    (the self-KD "teacher"), index 3 the one on layer1. Every feature is ``feature_size`` = 512 x expansion wide.
    ``forward_deepest`` computes only the trunk and exit 0, for the iterations that train only that exit.

    Args:
        downsample_factor: fastkd extension (the reference has no width knob): every width, stem to features,
            becomes int(w / sqrt(d)), as ``downsample_factor`` of the CIFAR ResNets; for small tests and benchmarks.
        with_adaptation_layers: build the three Linear(feature_size, feature_size) adaptation layers that the
            reference's feature loss uses (``adaptation_layers[i - 1]`` maps the feature of list index i;
            ``adaptation_layers[0]`` is never used by the reference loss, docs/semantics.md R9). Turn off to get
            the bare model's parameter set, e.g. to load ``net.module.state_dict()``.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int = 100,
                 downsample_factor: float = 1.0, with_adaptation_layers: bool = True):
        super().__init__()
        if downsample_factor <= 0:
            raise ValueError(f"downsample_factor must be > 0, got {downsample_factor}")
        e = block.expansion
        w1, w2, w3, w4 = (int(w / math.sqrt(downsample_factor)) for w in (64, 128, 256, 512))
        self.feature_size = w4 * e
        self._inplanes = w1
        self.conv1 = nn.Conv2d(3, w1, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, w1, layers[0], 1)
        self.layer2 = self._make_layer(block, w2, layers[1], 2)
        self.layer3 = self._make_layer(block, w3, layers[2], 2)
        self.layer4 = self._make_layer(block, w4, layers[3], 2)
        self.scala1 = _head([w1 * e, w2 * e, w3 * e, w4 * e])
        self.scala2 = _head([w2 * e, w3 * e, w4 * e])
        self.scala3 = _head([w3 * e, w4 * e])
        self.scala4 = nn.AdaptiveAvgPool2d((1, 1))
        self.attention1 = _attention(w1 * e)
        self.attention2 = _attention(w2 * e)
        self.attention3 = _attention(w3 * e)
        self.fc1 = nn.Linear(self.feature_size, num_classes)
        self.fc2 = nn.Linear(self.feature_size, num_classes)
        self.fc3 = nn.Linear(self.feature_size, num_classes)
        self.fc4 = nn.Linear(self.feature_size, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.with_adaptation_layers = with_adaptation_layers
        if with_adaptation_layers:
            self.adaptation_layers = nn.ModuleList(
                nn.Linear(self.feature_size, self.feature_size) for _ in range(NUM_EXITS - 1)
            )

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, n: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self._inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        blocks = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        blocks += [block(self._inplanes, planes) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(
                f"SelfKDResNet needs height and width divisible by 8 (the attention masks upsample a stride-2 "
                f"map of layer3), got an input of shape {tuple(x.shape)}; resize or pad the images"
            )
        return self.relu(self.bn1(self.conv1(x)))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x1 = self.layer1(self._stem(x))
        gated1 = self.attention1(x1) * x1
        x2 = self.layer2(x1)
        gated2 = self.attention2(x2) * x2
        x3 = self.layer3(x2)
        gated3 = self.attention3(x3) * x3
        x4 = self.layer4(x3)
        features = [
            torch.flatten(self.scala4(x4), 1),
            torch.flatten(self.scala3(gated3), 1),
            torch.flatten(self.scala2(gated2), 1),
            torch.flatten(self.scala1(gated1), 1),
        ]
        logits = [self.fc4(features[0]), self.fc3(features[1]), self.fc2(features[2]), self.fc1(features[3])]
        return logits, features

    def forward_deepest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits[0], features[0])`` of ``forward`` without the attention masks and shallow heads.

        Values and gradients are identical to the full forward's deepest exit. The one difference: in train
        mode the full forward also updates the running BN statistics of the attention and head layers, which
        this path leaves untouched (the reference runs the full forward at every iteration).
        """
        x = self.layer4(self.layer3(self.layer2(self.layer1(self._stem(x)))))
        feature = torch.flatten(self.scala4(x), 1)
        return self.fc4(feature), feature


@register_model
def selfkd_resnet18(**kwargs: Any) -> SelfKDResNet:
    """Multi-exit ResNet-18; kwargs as ``SelfKDResNet`` (num_classes, downsample_factor, with_adaptation_layers)."""
    return SelfKDResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model
def selfkd_resnet34(**kwargs: Any) -> SelfKDResNet:
    """Multi-exit ResNet-34; kwargs as ``SelfKDResNet``."""
    return SelfKDResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model
def selfkd_resnet50(**kwargs: Any) -> SelfKDResNet:
    """Multi-exit ResNet-50; kwargs as ``SelfKDResNet``."""
    return SelfKDResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model
def selfkd_resnet101(**kwargs: Any) -> SelfKDResNet:
    """Multi-exit ResNet-101; kwargs as ``SelfKDResNet``."""
    return SelfKDResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model
def selfkd_resnet152(**kwargs: Any) -> SelfKDResNet:
    """Multi-exit ResNet-152; kwargs as ``SelfKDResNet``."""
    return SelfKDResNet(Bottleneck, [3, 8, 36, 3], **kwargs)

"""Wide ResNet with a dropout op between the two convs of every block: the model behind the reference's
``dropout/train.py --model wideresnet`` (WRN-28-10, WRN-16-4 for svhn).

The reference's ``dropout/model/wide_resnet.py`` is unpublished (only its compiled .pyc ships), so this layout is
**inferred**: its call ``WideResNet(depth, num_classes, widen_factor, dropRate)`` is the signature of the widely
copied xternalz/WideResNet-pytorch model, and the paper's description (MaxDropout between the two convs of every
block) is where that model applies its dropout. State-dict keys therefore follow that model:
``conv1``, ``block{1..3}.layer.<i>.{bn1,conv1,bn2,conv2}``, ``block{k}.layer.0.convShortcut`` (only where the
width changes), ``bn1``, ``fc``. The dropout sites ``block{k}.layer.<i>.dropout`` keep their rates in
non-persistent buffers, so they add no keys. See docs/checkpoint-keys-selfkd-dropout.md.

Inferred behaviour, and where fastkd departs from that layout:
- Each block owns its dropout module, built once, so it follows ``train()``/``eval()`` (the reference's
  ``MaxDropout.forward`` returns its input when not training): no dropout at evaluation, unlike the dropout
  ResNet, whose ops the reference rebuilds in every forward.
- The head pools globally. xternalz pools with a fixed 8x8 window, the same at 32x32; at 64x64 (Tiny ImageNet)
  its ``view(-1, C)`` would give 4 rows per image and crash the loss.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn as nn

from .dropout import DROPOUT_OPS, DropoutSites, RateDropout
from .registry import register_model


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3, BN-ReLU, dropout, conv3x3, plus the (projected) input.

    As xternalz: when the width changes, the 1x1 ``convShortcut`` projects the *pre-activated* input; otherwise the
    raw input is added back.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: RateDropout):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, padding=1, bias=False)
        self.dropout = dropout
        # Attribute name fixed by the checkpoint key `convShortcut.weight`.
        self.convShortcut = (nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
                             if in_planes != out_planes or stride != 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        out = torch.relu(self.bn2(self.conv1(activated)))
        out = self.conv2(self.dropout(out))
        return out + (x if self.convShortcut is None else self.convShortcut(activated))


class NetworkBlock(nn.Module):
    """One stage of ``num_blocks`` blocks; the first one changes width and stride (keys ``layer.<i>``)."""

    def __init__(self, num_blocks: int, in_planes: int, out_planes: int, stride: int,
                 make_dropout: type[RateDropout], dropout_options: dict[str, Any]):
        super().__init__()
        self.layer = nn.Sequential(*(
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1,
                           make_dropout(**dropout_options))
            for i in range(num_blocks)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(DropoutSites, nn.Module):
    """WRN-depth-k for 32x32 inputs: 3x3 stem, three stages at strides 1,2,2 and widths 16k, 32k, 64k with
    (depth - 4) / 6 blocks each, BN-ReLU, global average pool, linear; returns logits only.

    The rates are driven from outside, as for ``DropoutResNet``: call ``set_drop_rates`` (a scalar, or one rate per
    block in forward order) before a forward. Init as xternalz: conv weights N(0, 2 / (k*k*out_channels)), BN
    weight 1 and bias 0, linear bias 0.

    Args:
        depth: 6n + 4 layers (28 or 16 in the reference).
        widen_factor: k (10, or 4 for svhn, in the reference).
        drop_op: ``"max"`` (MaxDropout, the reference's only op here) or ``"standard"`` (inverted dropout).
        drop_rate: initial rate of every site (the reference's ``dropRate``).
        random_rates: every site draws ``rate * U[0, 1)`` independently at each forward.
        active_at_eval: keep dropping in eval mode (not what the reference's WideResNet does, see the module doc).
        downsample_factor: fastkd extension: every width becomes int(w / sqrt(d)), as for the dropout ResNets.
    """

    def __init__(self, depth: int = 28, num_classes: int = 100, widen_factor: int = 10,
                 drop_op: Literal["max", "standard"] = "max", drop_rate: float = 0.3, random_rates: bool = False,
                 active_at_eval: bool = False, downsample_factor: float = 1.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        if drop_op not in DROPOUT_OPS:
            raise ValueError(f"drop_op must be one of {sorted(DROPOUT_OPS)}, got {drop_op!r}")
        if downsample_factor <= 0:
            raise ValueError(f"downsample_factor must be > 0, got {downsample_factor}")
        widths = [int(w / math.sqrt(downsample_factor)) for w in (16, 16 * widen_factor, 32 * widen_factor,
                                                                 64 * widen_factor)]
        if min(widths) < 1:
            raise ValueError(f"downsample_factor {downsample_factor} leaves a stage with no channels "
                             f"(widths {widths}); use a smaller factor")
        num_blocks = (depth - 4) // 6
        options: dict[str, Any] = {"rate": drop_rate, "random_rate": random_rates, "active_at_eval": active_at_eval}
        op = DROPOUT_OPS[drop_op]
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.block1 = NetworkBlock(num_blocks, widths[0], widths[1], 1, op, options)
        self.block2 = NetworkBlock(num_blocks, widths[1], widths[2], 2, op, options)
        self.block3 = NetworkBlock(num_blocks, widths[2], widths[3], 2, op, options)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    @property
    def dropout_sites(self) -> tuple[RateDropout, ...]:
        return tuple(block.dropout for stage in (self.block1, self.block2, self.block3) for block in stage.layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = torch.relu(self.bn1(out))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


@register_model
def dropout_wideresnet(**kwargs: Any) -> WideResNet:
    """WRN-28-10 with MaxDropout sites, the reference's ``--model wideresnet``; kwargs as ``WideResNet``."""
    return WideResNet(**kwargs)


@register_model
def dropout_wideresnet16_4(**kwargs: Any) -> WideResNet:
    """WRN-16-4, the reference's ``--model wideresnet`` for svhn; kwargs as ``WideResNet``."""
    return WideResNet(**{"depth": 16, "widen_factor": 4, **kwargs})

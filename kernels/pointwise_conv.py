"""Strided 1x1 convolutions as subsample-then-1x1 on the CPU in channels-last memory.

Why: oneDNN's weight gradient of a 1x1 convolution with stride > 1, fewer than 16 input channels and an odd batch
(3, 5, 17, ...) corrupts the heap in channels-last memory on the CPU (torch 2.14.1 on an AVX-512 Xeon: "free():
invalid next size", then a segfault; the ResNets' 8 -> 16 channel shortcut at width/8 with a last partial batch of
5). A 1x1 convolution with stride s and no padding reads only every s-th pixel, so the same outputs and gradients
come from slicing those pixels first and convolving with stride 1, which takes a path without the bug.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

MIN_SAFE_CHANNELS = 16
"""From this many input channels the strided kernel measured sound (16, 17, 24, 32 at batches 3-33)."""


class SubsampledPointwiseConv2d(nn.Conv2d):
    """nn.Conv2d (1x1, stride s, no padding) computed as conv2d(x[:, :, ::s, ::s], weight, bias)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row_step, col_step = self.stride
        return F.conv2d(x[:, :, ::row_step, ::col_step], self.weight, self.bias)


def _affected(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.stride != (1, 1)
            and module.padding == (0, 0) and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros" and module.in_channels < MIN_SAFE_CHANNELS)


def subsample_strided_pointwise_convs(model: nn.Module) -> nn.Module:
    """`model` with every affected 1x1 convolution turned into a SubsampledPointwiseConv2d in place (the class
    changes, the parameters and state_dict keys stay)."""
    for module in model.modules():
        if _affected(module):
            module.__class__ = SubsampledPointwiseConv2d
    return model

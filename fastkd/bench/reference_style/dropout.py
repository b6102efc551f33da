"""Spaced Dropout as `dropout/train.py` runs it (docs/semantics.md §3.3, §7, §10): the ResNet builds a new dropout
module at each
of its 4 sites in every forward, with a Python-float rate from the spacing schedule; one CE step per batch, nesterov
SGD, the loss read each step, cudnn.benchmark on."""

from __future__ import annotations

import math
import random
from typing import Literal

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .common import EpochResult, StepLog, cudnn_benchmark, sgd

DropMethod = Literal["StandardDropout", "MaxDropout", "SpacedDropout", "MaxSpacedDropout"]
RANDOM_SPACING_ITERS = 500
"""At S >= 500 iterations the spaced variants draw a random rate per site instead of the sine (docs/semantics.md §7)."""


class StandardDropout(nn.Module):
    """Inverted dropout at rate p (a fresh module is in training mode, so it is always active)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(x, self.p, self.training)


class MaxDropout(nn.Module):
    """Zero the elements whose global min-max-normalised value exceeds 1 - p; no rescaling."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        normalised = (x - x.min()) / (x.max() - x.min())
        return x.masked_fill(normalised > 1 - self.p, 0)


class ReferenceDropoutResNet(nn.Module):
    """Runs the layers of a fastkd `DropoutResNet` (same weights) with the reference's forward: dropout modules
    constructed afresh at each of the 4 sites in every call, and the `iter` counter advanced after each call."""

    def __init__(self, net: nn.Module, drop: float, drop_method: DropMethod, space_iters: int):
        super().__init__()
        self.net = net
        self.drop, self.drop_method, self.space_iters = drop, drop_method, space_iters
        self.iter = 0

    def site_rates(self) -> list[float]:
        if self.drop_method in ("StandardDropout", "MaxDropout"):
            return [self.drop] * 4
        if self.space_iters >= RANDOM_SPACING_ITERS:
            return [self.drop * random.random() for _ in range(4)]
        return [self.drop * abs(math.sin(math.pi * self.iter / self.space_iters))] * 4

    def make_dropout(self, p: float) -> nn.Module:
        return MaxDropout(p) if self.drop_method in ("MaxDropout", "MaxSpacedDropout") else StandardDropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        rates = self.site_rates()
        out = torch.relu(net.bn1(net.conv1(x)))
        for layer, p in zip((net.layer1, net.layer2, net.layer3, net.layer4), rates):
            out = self.make_dropout(p)(layer(out))
        out = net.linear(torch.flatten(net.avg_pool(out), 1))
        self.iter += 1
        return out


class SpacedDropout:
    """The reference loop over a `ReferenceDropoutResNet`, one epoch per `train_epoch`."""

    def __init__(self, model: ReferenceDropoutResNet, loader: DataLoader, *, device: torch.device,
                 lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True,
                 dtype: torch.dtype = torch.float32, log_steps: bool = False):
        self.model, self.loader, self.device, self.dtype = model, loader, device, dtype
        self.optimizer = sgd(model.parameters(), lr, momentum, weight_decay, nesterov=nesterov)
        self.ce = nn.CrossEntropyLoss()
        self.buffer_peak_bytes = 0
        self.step_log = StepLog(log_steps)

    def train_epoch(self) -> EpochResult:
        self.model.train()
        images = iterations = 0
        with cudnn_benchmark(True):
            for x, y in self.loader:
                x, y = x.to(self.device, self.dtype), y.to(self.device)
                loss = self.ce(self.model(x), y)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.step_log.add("model", [loss.item()])
                images += len(y)
                iterations += 1
        return EpochResult(images, iterations)

"""Spaced EMA as `online_KD/train_EMA.py` runs it (docs/semantics.md §6, §10): plain CE steps, and every t optimizer
steps the EMA
copy's parameters are averaged in a Python loop over the tensors (buffers never), with the loss read each step."""

from __future__ import annotations

import copy
import random

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .common import EpochResult, StepLog, cudnn_benchmark, sgd


def ema_interval(s: float, iters_per_epoch: int) -> int:
    """t in optimizer steps: s = 0 every step, s <= 500 int(s * L) (0 = never), s > 500 random in 1..0.4L."""
    if s == 0:
        return 1
    if s <= 500:
        return int(s * iters_per_epoch)
    return int(0.4 * iters_per_epoch * random.random()) + 1


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * param, one parameter pair at a time."""
    for ema_param, param in zip(ema_model.parameters(), model.parameters()):
        ema_param.data.mul_(decay).add_(param.data, alpha=1 - decay)


class SpacedEMA:
    """The reference loop over a CIFAR ResNet returning (feature, logits), one epoch per `train_epoch`."""

    def __init__(self, model: nn.Module, loader: DataLoader, *, interval: float, decay: float,
                 device: torch.device, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4,
                 dtype: torch.dtype = torch.float32, log_steps: bool = False):
        self.model, self.loader, self.device, self.dtype = model, loader, device, dtype
        self.ema_model = copy.deepcopy(model)
        for param in self.ema_model.parameters():
            param.detach_()
        self.s, self.decay = interval, decay
        self.optimizer = sgd(model.parameters(), lr, momentum, weight_decay)
        self.ce = nn.CrossEntropyLoss()
        self.t = ema_interval(interval, len(loader))
        self.counter = 0
        self.updates = 0
        self.buffer_peak_bytes = 0
        self.step_log = StepLog(log_steps)

    def train_epoch(self) -> EpochResult:
        self.model.train()
        images = iterations = 0
        with cudnn_benchmark(False):
            for x, y in self.loader:
                x, y = x.to(self.device, self.dtype), y.to(self.device)
                _, logits = self.model(x)
                loss = self.ce(logits, y)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.step_log.add("model", [loss.item()])
                self.counter += 1
                if self.counter == self.t:
                    ema_update(self.ema_model, self.model, self.decay)
                    self.updates += 1
                    self.counter = 0
                    if self.s > 500:
                        self.t = ema_interval(self.s, len(self.loader))
                images += len(y)
                iterations += 1
        return EpochResult(images, iterations)

"""Spaced self KD as `self_KD/train.py` runs it (docs/semantics.md §4.2, §5.3, §8, §10).

The loader's CPU batches are buffered as they are (full float32, never pinned) and re-uploaded at every KD event;
every iteration runs the full multi-exit forward with its autograd graph, which non-KD iterations use only for the
deepest exit and KD iterations (I > 0) discard before re-forwarding each buffered batch. Losses are read with
`.item()` and the running accuracy of every exit is counted on the host each step, as the reference prints them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .common import EpochResult, StepLog, cudnn_benchmark, sgd, tensor_bytes


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Batch mean of -sum_c softmax_T(teacher) * log_softmax_T(student) (no T^2)."""
    log_p_student = F.log_softmax(student / temperature, dim=1)
    p_teacher = F.softmax(teacher / temperature, dim=1)
    return -(log_p_student * p_teacher).sum(dim=1).mean()


def self_kd_loss(logits: list[torch.Tensor], features: list[torch.Tensor], labels: torch.Tensor,
                 adaptation_layers: nn.ModuleList, *, temperature: float, lam: float, mu: float) -> torch.Tensor:
    """docs/semantics.md §4.2 (R8, R9), exits deepest first: CE on exit 0, then per shallower exit k a soft CE against exit 0 and a hard
    CE, plus the unsquared feature distance for k = 2, 3 (exit k = 1 gets none)."""
    ce = nn.CrossEntropyLoss()
    teacher_logits, teacher_feature = logits[0].detach(), features[0].detach()
    loss = ce(logits[0], labels)
    for k in range(1, len(logits)):
        loss = loss + soft_cross_entropy(logits[k], teacher_logits, temperature) * lam
        loss = loss + ce(logits[k], labels) * (1 - lam)
        if k != 1:
            loss = loss + torch.dist(adaptation_layers[k - 1](features[k]), teacher_feature) * mu
    return loss


class SpacedSelfKD:
    """The reference loop over a `SelfKDResNet` (with its adaptation layers), one epoch per `train_epoch`.

    The KD test uses the reference's shifted index n = g - L (docs/semantics.md §5.3, R6).
    """

    def __init__(self, net: nn.Module, loader: DataLoader, *, interval_rate: float, device: torch.device,
                 lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4, temperature: float = 3.0,
                 lam: float = 0.3, mu: float = 0.03, dtype: torch.dtype = torch.float32, log_steps: bool = False):
        self.net, self.loader, self.device, self.dtype = net, loader, device, dtype
        self.interval = int(len(loader) * interval_rate)
        self.temperature, self.lam, self.mu = temperature, lam, mu
        self.optimizer = sgd(net.parameters(), lr, momentum, weight_decay)
        self.ce = nn.CrossEntropyLoss()
        self.buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.buffer_peak_bytes = 0
        self.epoch = -1
        self.step_log = StepLog(log_steps)
        self.correct = [0.0] * 5
        self.seen = 0

    def train_epoch(self) -> EpochResult:
        self.epoch += 1
        self.net.train()
        L = len(self.loader)
        images = iterations = 0
        with cudnn_benchmark(False):
            for i, (x_host, y_host) in enumerate(self.loader):
                n = (self.epoch - 1) * L + i + 1
                self.buffer.append((x_host, y_host))
                x, y = x_host.to(self.device, self.dtype), y_host.to(self.device)
                logits, features = self.net(x)
                if self.interval == 0 or n % self.interval == 0:
                    self.kd_event(logits, features, y)
                else:
                    self.step(self.ce(logits[0], y), "deepest")
                    self.count_accuracy(logits, y)
                images += len(y_host)
                iterations += 1
        return EpochResult(images, iterations)

    def kd_event(self, logits: list[torch.Tensor], features: list[torch.Tensor], y: torch.Tensor) -> None:
        self.buffer_peak_bytes = max(self.buffer_peak_bytes, tensor_bytes(self.buffer))
        for x_host, y_host in self.buffer:
            if self.interval > 0:
                x, y = x_host.to(self.device, self.dtype), y_host.to(self.device)
                logits, features = self.net(x)
            loss = self_kd_loss(logits, features, y, self.net.adaptation_layers, temperature=self.temperature,
                                lam=self.lam, mu=self.mu)
            self.step(loss, "full")
            self.count_accuracy(logits, y)
        self.buffer = []

    def step(self, loss: torch.Tensor, kind: str) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step_log.add(kind, [loss.item()])

    def count_accuracy(self, logits: list[torch.Tensor], y: torch.Tensor) -> None:
        """The per-iteration running accuracies the reference prints: each exit, and (z0+z1+z2)/4."""
        ensemble = (logits[0] + logits[1] + logits[2]) / 4
        for k, z in enumerate([*logits, ensemble]):
            self.correct[k] += float(z.max(1)[1].eq(y).cpu().sum())
        self.seen += y.size(0)

"""Spaced online KD / online KD as `online_KD/train_space.py` runs them (docs/semantics.md §4.1, §5.1, §10).

Every iteration copies the batch back to host memory into a list of full float32 tensors; the teacher steps;
every I iterations (at once when I = 0) the student replays the buffer, oldest first, against a fresh no-grad
train-mode teacher forward (I > 0) or the teacher's pre-update outputs (I = 0). Losses are the unfused op
sequence (softmax, KLDivLoss fed probabilities, torch.dist, CE) and every loss is read with `.item()`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .common import EpochResult, StepLog, cudnn_benchmark, sgd, tensor_bytes


class SpacedOnlineKD:
    """The reference loop over `teacher` (TeacherNet) and `student` (StudentNet), one epoch per `train_epoch`.

    Args:
        interval_rate: s; I = int(L * s) iterations between replays (0 = online KD).
        dtype: model/input dtype (float32 as the reference; float64 only for exact comparisons).
        log_steps: keep the `.item()` values in `step_log` (the reference sends them to wandb).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, loader: DataLoader, *, interval_rate: float,
                 device: torch.device, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4,
                 temperature: float = 3.0, alpha: float = 0.3, beta: float = 0.03,
                 dtype: torch.dtype = torch.float32, log_steps: bool = False):
        self.teacher, self.student, self.loader = teacher, student, loader
        self.device, self.dtype = device, dtype
        self.interval = int(len(loader) * interval_rate)
        self.temperature, self.alpha, self.beta = temperature, alpha, beta
        self.opt_teacher = sgd(teacher.parameters(), lr, momentum, weight_decay)
        self.opt_student = sgd(student.parameters(), lr, momentum, weight_decay)
        self.ce = nn.CrossEntropyLoss()
        self.kl = nn.KLDivLoss(reduction="batchmean")
        self.buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.buffer_peak_bytes = 0
        self.global_step = 0
        self.epoch = 0
        self.step_log = StepLog(log_steps)

    def train_epoch(self) -> EpochResult:
        self.epoch += 1
        self.teacher.train()
        self.student.train()
        images = iterations = 0
        with cudnn_benchmark(False):
            for batch_index, (x, y) in enumerate(self.loader):
                self.global_step = (self.epoch - 1) * len(self.loader) + batch_index + 1
                x, y = x.to(self.device, self.dtype), y.to(self.device)
                self.buffer.append((x.cpu(), y.cpu()))
                feature_t, logits_t = self.teacher_step(x, y)
                if self.interval == 0:
                    self.replay(targets=(feature_t.detach(), logits_t.detach()))
                elif self.global_step % self.interval == 0:
                    self.replay(targets=None)
                images += len(y)
                iterations += 1
        return EpochResult(images, iterations)

    def teacher_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_t, logits_t = self.teacher(x)
        loss = self.ce(logits_t, y)
        self.opt_teacher.zero_grad()
        loss.backward()
        self.opt_teacher.step()
        self.step_log.add("teacher", [loss.item()])
        return feature_t, logits_t

    def replay(self, targets: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self.buffer_peak_bytes = max(self.buffer_peak_bytes, tensor_bytes(self.buffer))
        for x_host, y_host in self.buffer:
            x, y = x_host.to(self.device), y_host.to(self.device)
            if targets is None:
                with torch.no_grad():
                    feature_t, logits_t = self.teacher(x)  # train mode: batch BN statistics (docs/semantics.md R3)
            else:
                feature_t, logits_t = targets
            self.student_step(x, y, feature_t, logits_t)
        self.buffer = []

    def student_step(self, x: torch.Tensor, y: torch.Tensor, feature_t: torch.Tensor, logits_t: torch.Tensor) -> None:
        feature_s, logits_s = self.student(x)
        T = self.temperature
        ce = self.ce(logits_s, y)
        soft = self.kl(F.softmax(logits_s / T, dim=1), F.softmax(logits_t / T, dim=1))
        feature = torch.dist(feature_s, feature_t)
        loss = (1 - self.alpha) * ce + self.alpha * soft + self.beta * feature
        self.opt_student.zero_grad()
        loss.backward()
        self.opt_student.step()
        self.step_log.add("student", [loss.item(), ce.item(), soft.item(), feature.item()])

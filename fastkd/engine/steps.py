"""Step primitives every method is built from: one model's optimizer step, teacher targets, KD student losses.

All losses go through the fused kernels in `fastkd.kernels`; nothing here reads a tensor value on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import record_function

from ..config import KDConfig, OptimConfig
from ..kernels import cross_entropy, kd_loss
from .runtime import Runtime


class Targets(NamedTuple):
    """What a teacher hands the student: detached feature and logits."""

    feature: torch.Tensor
    logits: torch.Tensor


def build_optimizer(params, cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """foreach kernels on CPU, fused kernels on CUDA (one launch per step instead of one per tensor)."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, **fast)
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **fast)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int):
    """Per-epoch LR schedule (the reference's online KD keeps it constant)."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


@dataclass
class Learner:
    """A model with its optimizer: `forward` (possibly compiled) and `step(loss)`."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    runtime: Runtime
    stepped: bool = False
    """Whether the optimizer stepped since the last scheduler step (offline KD's idle phase must not advance it)."""

    def forward(self, x: torch.Tensor):
        with record_function("fastkd.forward"), self.runtime.autocast():
            return self.model(x)

    def step(self, loss: torch.Tensor) -> None:
        """zero_grad(set_to_none) -> backward -> optimizer step (through the GradScaler under fp16)."""
        self.optimizer.zero_grad(set_to_none=True)
        with record_function("fastkd.backward"):
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        with record_function("fastkd.optimizer"):
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        self.stepped = True

    def end_epoch(self) -> None:
        """Advance the per-epoch LR schedule if this learner trained in the epoch."""
        if self.stepped:
            self.scheduler.step()
            self.stepped = False

    @torch.no_grad()
    def targets(self, x: torch.Tensor, train_mode: bool) -> Targets:
        """Teacher outputs without gradients; train mode uses batch BN statistics (and updates running stats)."""
        was_training = self.model.training
        self.model.train(train_mode)
        feature, logits = self.forward(x)
        self.model.train(was_training)
        return Targets(feature.detach(), logits.detach())

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def build_learner(name: str, model: nn.Module, optim_cfg: OptimConfig, epochs: int, runtime: Runtime) -> Learner:
    model = model.to(device=runtime.device, dtype=runtime.param_dtype)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), optim_cfg, runtime.device)
    if runtime.compile:
        model.compile()  # in place: state_dict keys stay those of the reference layout
    scaler = torch.amp.GradScaler(runtime.device.type) if runtime.needs_grad_scaler else None
    return Learner(name, model, optimizer, build_scheduler(optimizer, optim_cfg, epochs), scaler, runtime)


def feature_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """`dist` is the reference's torch.dist: the unsquared L2 norm of the whole B x f difference (spec 3.1)."""
    if student.dtype != torch.float64:
        student, teacher = student.float(), teacher.float()
    if kind == "dist":
        return torch.dist(student, teacher)
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "l1":
        return F.l1_loss(student, teacher)
    if kind == "smoothl1":
        return F.smooth_l1_loss(student, teacher)
    return student.new_zeros(())


class StudentLoss(NamedTuple):
    total: torch.Tensor
    ce: torch.Tensor
    soft: torch.Tensor
    feature: torch.Tensor


def student_kd_loss(feature: torch.Tensor, logits: torch.Tensor, targets: Targets, labels: torch.Tensor,
                    kd: KDConfig, semantics: str) -> StudentLoss:
    """(1-alpha)*CE + alpha*soft + beta*feature.

    reference: soft = KLDivLoss fed with probabilities (no T^2), feature = kd.feature_loss (default torch.dist);
    standard: soft = Hinton KL(p_t || p_s) * T^2, feature = MSE when kd.feature_loss is the reference's `dist`.
    """
    soft_form = "reference_prob_kl" if semantics == "reference" else "kl"
    kind = kd.feature_loss
    if semantics == "standard" and kind == "dist":
        kind = "mse"
    with record_function("fastkd.loss"):
        out = kd_loss(logits, targets.logits, labels, temperature=kd.temperature, alpha=kd.alpha, soft=soft_form)
        feat = (feature_loss(feature, targets.feature, kind) if kd.beta > 0 and kind != "none"
                else out.total.new_zeros(()))
        return StudentLoss(out.total + kd.beta * feat, out.ce, out.soft, feat.detach())


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with record_function("fastkd.loss"):
        return cross_entropy(logits, labels)

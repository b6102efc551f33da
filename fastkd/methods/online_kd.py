"""The online-KD family (docs/semantics.md §5.1-5.2): no KD, online, spaced online and offline KD of a teacher and a
student.

Its plan (the interval arithmetic `fastkd plan` prints), its models (the reference's teacher/student wrappers), its
loss, its schedule over the engine's train step, and its state (the replay log) all live here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig, KDConfig
from ..config.methods import register_method
from ..data.readers import TINY_SIDE
from ..engine.method import Iteration, Method
from ..engine.replay import ReplayLog
from ..engine.steps import StepContext, feature_loss
from ..errors import ConfigError
from ..kernels import cross_entropy, kd_loss
from ..models import StudentNet, TeacherNet, create_model, width_divisor

OFFLINE_RATE = 50.0
"""The reference switches to offline KD (teacher trained first) at -interval_rate >= 50."""


@dataclass(frozen=True)
class OnlineKDPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    """L: batches per epoch (the last one may be short)."""
    epochs: int
    rate: float
    mode: str
    """no_kd | online | spaced | offline"""
    interval: int
    """I = int(L * rate) iterations between replay events (0 = online, the student steps with the teacher)."""
    total_epochs: int
    teacher_steps: int
    student_steps: int
    replay_events: int
    never_distilled: int
    """Batches the teacher saw that the student never replays (the reference drops the trailing partial interval)."""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def plan_online_kd(method: str, semantics: str, iters_per_epoch: int, epochs: int, rate: float) -> OnlineKDPlan:
    L, total = iters_per_epoch, iters_per_epoch * epochs
    notes: list[str] = []
    if method == "no_kd":
        return OnlineKDPlan(method, semantics, L, epochs, rate, "no_kd", 0, epochs, 0, total, 0, 0, notes)
    if method == "offline_kd" or (method == "spaced_online_kd" and rate >= OFFLINE_RATE):
        if method != "offline_kd":
            notes.append(f"interval {rate} >= {OFFLINE_RATE:g} means offline KD in the reference")
        return OnlineKDPlan(method, semantics, L, epochs, rate, "offline", 0, 2 * epochs, total, total, 0, 0, notes)
    interval = int(L * rate) if method == "spaced_online_kd" else 0
    if method == "spaced_online_kd" and interval == 0:
        notes.append(f"interval {rate} < 1/L = {1 / L:.4g} epochs gives I = 0: this is online KD "
                     "(docs/semantics.md §5.1)")
    if interval == 0:
        return OnlineKDPlan(method, semantics, L, epochs, rate, "online", 0, epochs, total, total, 0, 0, notes)
    events, trailing = divmod(total, interval)
    if semantics == "standard" and trailing:
        notes.append(f"standard semantics replays the trailing {trailing} batches at the end of training")
        events, trailing = events + 1, 0
    elif trailing:
        notes.append(f"the last {trailing} batches are never distilled (docs/semantics.md R4)")
    return OnlineKDPlan(method, semantics, L, epochs, rate, "spaced", interval, epochs, total, total - trailing,
                        events, trailing, notes)


class Targets(NamedTuple):
    """What a teacher hands the student: detached feature and logits."""

    feature: torch.Tensor
    logits: torch.Tensor


def logits_ce(outputs: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """CE on the logits of a (feature, logits) model: the teacher's loss, and the student's without a teacher."""
    return cross_entropy(outputs[1], labels)


def student_kd_loss(outputs: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor, targets: Targets,
                    kd: KDConfig, semantics: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1-alpha)*CE + alpha*soft + beta*feature, and its parts.

    reference: soft = KLDivLoss fed with probabilities (no T^2), feature = kd.feature_loss (default torch.dist);
    standard: soft = Hinton KL(p_t || p_s) * T^2, feature = MSE when kd.feature_loss is the reference's `dist`.
    """
    feature, logits = outputs
    soft_form = "reference_prob_kl" if semantics == "reference" else "kl"
    kind = kd.feature_loss
    if semantics == "standard" and kind == "dist":
        kind = "mse"
    out = kd_loss(logits, targets.logits, labels, temperature=kd.temperature, alpha=kd.alpha, soft=soft_form)
    feat = (feature_loss(feature, targets.feature, kind) if kd.beta > 0 and kind != "none"
            else out.total.new_zeros(()))
    return out.total + kd.beta * feat, {"ce": out.ce, "soft": out.soft, "feature": feat.detach()}


def _fits_images(model: nn.Module, cfg: ExperimentConfig, key: str) -> nn.Module:
    """Refuse, before training, a fixed-size model (the small CIFAR ViT: a position embedding for 32x32 images)
    on a data set of another image side."""
    size = getattr(model, "image_size", None)
    side = TINY_SIDE if cfg.data.dataset == "tiny_imagenet" else 32
    if size is not None and size != side:
        raise ConfigError(f"{key}: {getattr(cfg.model, key.split('.')[1])} takes {size}x{size} images and "
                          f"{cfg.data.dataset} has {side}x{side}; use a CNN (resnet18, mobilenetv2, ...) for it")
    return model


@register_method("offline_kd")
@register_method("spaced_online_kd")
@register_method("online_kd")
@register_method("no_kd")
class OnlineKDFamily(Method):
    """One class for the four modes; the plan's interval arithmetic decides which events fire.

    Loss weighting (student): (1-alpha)*CE + alpha*soft + beta*feature (docs/semantics.md §4.1); teacher: CE only.
    - no_kd: student CE steps only.
    - online (I = 0): teacher step, then a student step on the same batch against the pre-update teacher outputs.
    - spaced (I > 0): teacher steps; at g % I == 0 the student replays every logged batch, oldest first, against a
      fresh no-grad teacher forward: train-mode BN under `reference` (docs/semantics.md R3), eval mode under `standard`.
      The log holds (indices, seed) pairs and regenerates the exact augmented pixels the teacher saw.
    - offline: epochs 0..E-1 teacher only; epochs E..2E-1 student against the eval-mode teacher (docs/semantics.md
    §5.2).
    """

    def __init__(self, plan: OnlineKDPlan, kd: KDConfig):
        self.plan = plan
        self.kd = kd
        self.replay = ReplayLog()
        self.replay_events = 0
        self.teacher_train_mode_targets = plan.semantics == "reference"

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, iters_per_epoch: int) -> OnlineKDFamily:
        return cls(plan_online_kd(cfg.method, cfg.semantics, iters_per_epoch, cfg.train.epochs, cfg.kd.interval),
                   cfg.kd)

    @property
    def has_teacher(self) -> bool:
        return self.plan.mode != "no_kd"

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        """Teacher and student in the reference's wrapper layout (docs/semantics.md §3.1); a plain backbone without a
        teacher."""
        student_df = width_divisor(cfg.model.student, cfg.model.student_downsample_factor,
                                   "model.student_downsample_factor")
        student = _fits_images(create_model(cfg.model.student, num_classes=num_classes, downsample_factor=student_df),
                               cfg, "model.student")
        if not self.has_teacher:
            return {"student": student}
        # As in the reference, only a resnet18 teacher receives downsample_factor.
        teacher_df = cfg.model.downsample_factor if cfg.model.teacher == "resnet18" else None
        teacher = TeacherNet(_fits_images(create_model(cfg.model.teacher, num_classes=num_classes,
                                                       downsample_factor=teacher_df), cfg, "model.teacher"))
        return {"teacher": teacher, "student": StudentNet(student, teacher.feature_size)}

    def phase(self, epoch: int) -> str:
        if self.plan.mode == "no_kd":
            return "student"
        if self.plan.mode == "offline":
            return "teacher" if epoch < self.plan.epochs else "student"
        return "both"

    def main_model(self, epoch: int) -> str:
        return "teacher" if self.phase(epoch) == "teacher" else "student"

    # -------------------------------------------------------------------------------------- schedule
    def run_iteration(self, it: Iteration, ctx: StepContext) -> None:
        mode = self.plan.mode
        x, y = ctx.batch(it.indices, it.seed)
        if mode == "no_kd":
            self.student_step(ctx, x, y, None)
        elif mode == "offline":
            if self.phase(it.epoch) == "teacher":
                self.teacher_step(ctx, x, y)
            else:
                self.student_step(ctx, x, y, Targets(*ctx.learners["teacher"].no_grad_forward(x, train_mode=False)))
        elif mode == "online":
            self.student_step(ctx, x, y, self.teacher_step(ctx, x, y))
        else:
            with record_function("fastkd.replay"):
                self.replay.append(it.indices, it.seed)
            self.teacher_step(ctx, x, y)
            if it.step % self.plan.interval == 0:
                self._replay(ctx)

    def finish(self, ctx: StepContext) -> None:
        """End of training: `standard` distils the trailing partial interval the reference drops."""
        if self.plan.mode == "spaced" and self.plan.semantics == "standard" and len(self.replay):
            self._replay(ctx)

    def _replay(self, ctx: StepContext) -> None:
        self.replay_events += 1
        teacher = ctx.learners["teacher"]
        with record_function("fastkd.replay"):
            entries = self.replay.drain()
        for indices, seed in entries:
            x, y = ctx.batch(indices, seed)
            self.student_step(ctx, x, y, Targets(*teacher.no_grad_forward(x, self.teacher_train_mode_targets)))

    # ------------------------------------------------------------------------------------------ steps
    @staticmethod
    def teacher_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> Targets:
        """One teacher CE step; returns its (pre-update) outputs, detached, for online KD."""
        feature, logits = ctx.train_step("teacher", x, y, logits_ce).outputs
        return Targets(feature.detach(), logits.detach())

    def student_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, targets: Targets | None) -> None:
        if targets is None:
            ctx.train_step("student", x, y, logits_ce)
            return
        semantics = self.plan.semantics
        ctx.train_step("student", x, y, lambda out, labels: student_kd_loss(out, labels, targets, self.kd, semantics))

    def counters(self) -> dict[str, int]:
        return {"replay_events": self.replay_events}

    def state_dict(self) -> dict:
        return {"replay": self.replay.state_dict(), "replay_events": self.replay_events}

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])
        self.replay_events = state["replay_events"]

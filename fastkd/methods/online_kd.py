"""The online-KD family as schedules over the step primitives: no KD, online, spaced online, offline (spec 4.1-4.2)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig
from ..engine.replay import ReplayLog
from ..engine.steps import Targets, ce_loss, student_kd_loss
from ..models import StudentNet, TeacherNet, create_model
from .base import Engine, Iteration, Method
from .schedule import OnlineKDPlan


class OnlineKDFamily(Method):
    """One class for the four modes; the plan's interval arithmetic decides which events fire.

    Loss weighting (student): (1-alpha)*CE + alpha*soft + beta*feature (spec 3.1); teacher: CE only.
    - no_kd: student CE steps only.
    - online (I = 0): teacher step, then a student step on the same batch against the pre-update teacher outputs.
    - spaced (I > 0): teacher steps; at g % I == 0 the student replays every logged batch, oldest first, against a
      fresh no-grad teacher forward: train-mode BN under `reference` (spec 4.1 step 4), eval mode under `standard`.
      The log holds (indices, seed) pairs and regenerates the exact augmented pixels the teacher saw.
    - offline: epochs 0..E-1 teacher only; epochs E..2E-1 student against the eval-mode teacher (spec 4.2).
    """

    def __init__(self, plan: OnlineKDPlan):
        self.plan = plan
        self.replay = ReplayLog()
        self.replay_events = 0
        self.teacher_train_mode_targets = plan.semantics == "reference"

    @property
    def has_teacher(self) -> bool:
        return self.plan.mode != "no_kd"

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        """Teacher and student in the reference's wrapper layout (spec 2.2); a plain backbone without a teacher."""
        student = create_model(cfg.model.student, num_classes=num_classes,
                               downsample_factor=cfg.model.student_downsample_factor)
        if not self.has_teacher:
            return {"student": student}
        # As in the reference, only a resnet18 teacher receives downsample_factor.
        teacher_df = cfg.model.downsample_factor if cfg.model.teacher == "resnet18" else None
        teacher = TeacherNet(create_model(cfg.model.teacher, num_classes=num_classes, downsample_factor=teacher_df))
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
    def run_iteration(self, it: Iteration, eng: Engine) -> None:
        mode = self.plan.mode
        x, y = eng.batch(it.indices, it.seed)
        if mode == "no_kd":
            self.student_step(eng, x, y, None)
        elif mode == "offline":
            if self.phase(it.epoch) == "teacher":
                self.teacher_step(eng, x, y)
            else:
                self.student_step(eng, x, y, eng.learners["teacher"].targets(x, train_mode=False))
        elif mode == "online":
            self.student_step(eng, x, y, self.teacher_step(eng, x, y))
        else:
            with record_function("fastkd.replay"):
                self.replay.append(it.indices, it.seed)
            self.teacher_step(eng, x, y)
            if it.step % self.plan.interval == 0:
                self._replay(eng)

    def finish(self, eng: Engine) -> None:
        """End of training: `standard` distils the trailing partial interval the reference drops."""
        if self.plan.mode == "spaced" and self.plan.semantics == "standard" and len(self.replay):
            self._replay(eng)

    def _replay(self, eng: Engine) -> None:
        self.replay_events += 1
        teacher = eng.learners["teacher"]
        with record_function("fastkd.replay"):
            entries = self.replay.drain()
        for indices, seed in entries:
            x, y = eng.batch(indices, seed)
            self.student_step(eng, x, y, teacher.targets(x, train_mode=self.teacher_train_mode_targets))

    # ------------------------------------------------------------------------------------ primitives
    @staticmethod
    def teacher_step(eng: Engine, x: torch.Tensor, y: torch.Tensor) -> Targets:
        """One teacher CE step; returns its (pre-update) outputs, detached, for online KD."""
        teacher = eng.learners["teacher"]
        feature, logits = teacher.forward(x)
        loss = ce_loss(logits, y)
        teacher.step(loss)
        eng.record("teacher", loss=loss)
        return Targets(feature.detach(), logits.detach())

    @staticmethod
    def student_step(eng: Engine, x: torch.Tensor, y: torch.Tensor, targets: Targets | None) -> None:
        student = eng.learners["student"]
        feature, logits = student.forward(x)
        if targets is None:
            loss = ce_loss(logits, y)
            eng.record("student", loss=loss)
        else:
            parts = student_kd_loss(feature, logits, targets, y, eng.cfg.kd, eng.cfg.semantics)
            loss = parts.total
            eng.record("student", loss=loss, ce=parts.ce, soft=parts.soft, feature=parts.feature)
        student.step(loss)

    def state_dict(self) -> dict:
        return {"replay": self.replay.state_dict(), "replay_events": self.replay_events}

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])
        self.replay_events = state["replay_events"]

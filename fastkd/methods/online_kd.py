"""The online-KD family (docs/semantics.md §5.1-5.2): no KD, online, spaced online and offline KD of a teacher and a
student.

This module holds the schedule over the engine's train step and its state (the replay log); the plan is
`plans/online_kd.py`, the models `models/kd_pair.py`, the student loss `kernels/method_losses.py`.
"""

from __future__ import annotations

import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig, KDConfig
from ..config.methods import register_method
from ..engine.method import Iteration, Method
from ..engine.replay import ReplayLog
from ..engine.steps import Batch, StepContext
from ..kernels.method_losses import Targets, logits_ce, student_kd_loss
from ..models.kd_pair import build_kd_pair, image_side
from ..plans.online_kd import OnlineKDPlan, plan_online_kd, replay_memory_note


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
        plan = plan_online_kd(cfg.method, cfg.semantics, iters_per_epoch, cfg.train.epochs, cfg.kd.interval)
        if plan.mode == "spaced":
            plan.notes.append(replay_memory_note(plan.interval, cfg.data.batch_size, image_side(cfg.data)))
        return cls(plan, cfg.kd)

    @property
    def has_teacher(self) -> bool:
        return self.plan.mode != "no_kd"

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        """Teacher and student in the reference's wrapper layout; a plain backbone without a teacher."""
        return build_kd_pair(cfg, num_classes, with_teacher=self.has_teacher)

    def phase(self, epoch: int) -> str:
        if self.plan.mode == "no_kd":
            return "student"
        if self.plan.mode == "offline":
            return "teacher" if epoch < self.plan.epochs else "student"
        return "both"

    def main_model(self, epoch: int) -> str:
        return "teacher" if self.phase(epoch) == "teacher" else "student"

    def run_iteration(self, it: Iteration, ctx: StepContext) -> None:
        mode = self.plan.mode
        batch = ctx.batch(it.indices, it.seed)
        if mode == "no_kd":
            self.student_step(ctx, batch, None)
        elif mode == "offline":
            if self.phase(it.epoch) == "teacher":
                self.teacher_step(ctx, batch)
            else:
                targets = Targets(*ctx.learners["teacher"].no_grad_forward(batch, train_mode=False))
                self.student_step(ctx, batch, targets)
        elif mode == "online":
            self.student_step(ctx, batch, self.teacher_step(ctx, batch))
        else:
            with record_function("fastkd.replay"):
                self.replay.append(it.indices, it.seed)
            self.teacher_step(ctx, batch)
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
            batch = ctx.batch(indices, seed)
            self.student_step(ctx, batch, Targets(*teacher.no_grad_forward(batch, self.teacher_train_mode_targets)))

    @staticmethod
    def teacher_step(ctx: StepContext, batch: Batch) -> Targets:
        """One teacher CE step; returns its (pre-update) outputs, detached, for online KD."""
        feature, logits = ctx.train_step("teacher", batch, logits_ce).outputs
        return Targets(feature.detach(), logits.detach())

    def student_step(self, ctx: StepContext, batch: Batch, targets: Targets | None) -> None:
        if targets is None:
            ctx.train_step("student", batch, logits_ce)
            return
        semantics = self.plan.semantics
        ctx.train_step("student", batch, lambda out, labels: student_kd_loss(out, labels, targets, self.kd, semantics))

    def counters(self) -> dict[str, int]:
        return {"replay_events": self.replay_events}

    def replay_peak_bytes(self) -> int | None:
        return self.replay.peak_nbytes

    def state_dict(self) -> dict:
        return {"replay": self.replay.state_dict(), "replay_events": self.replay_events}

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])
        self.replay_events = state["replay_events"]

"""The ViT family's step bodies under `semantics: reference` (docs/semantics.md §5.4, R19-R26), kept apart from
the standard ones in `vit_kd.py`: the one AdamW shared by teacher and student, the zero-weighted terms that keep the
idle model in its step, and the teacher step that leads up to a replay."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

from ..config import ViTConfig
from ..engine.steps import Batch, StepContext
from ..kernels import cross_entropy
from ..kernels.global_batch import set_shard
from ..plans.vit_kd import ViTPlan
from .vit_losses import student_loss, zero_term


class ReferenceViTSteps:
    """Mixed into `ViTFamily`, whose constructor sets the state below; the replay is `vit_replay.py`'s."""

    plan: ViTPlan
    vit: ViTConfig
    kd_forward: Callable[[torch.Tensor], Any] | None
    student_params: list[nn.Parameter]
    teacher_params: list[nn.Parameter]
    space_counter: int
    _replay_fresh: Callable[[StepContext], None]

    def _online_reference(self, ctx: StepContext, batch: Batch) -> None:
        """Student forward, teacher forward, (1-w)(CE_s + CE_t) + w*KD, one step of the shared AdamW (taken
        through the teacher, which leads the shared schedule)."""
        student_forward = self.kd_forward or ctx.learners["student"].model
        teacher_model, vit = ctx.learners["teacher"].model, self.vit

        def loss_fn(outputs: tuple[Any, torch.Tensor], labels: torch.Tensor):
            student_out, teacher_logits = outputs
            loss, parts = student_loss(student_out, labels, teacher_logits.detach(), vit)
            teacher_ce = cross_entropy(teacher_logits, labels)
            return loss + (1 - vit.logit_weight) * teacher_ce, {**parts, "teacher_ce": teacher_ce.detach()}

        set_shard(ctx.learners["student"].model, batch.shard)  # it runs inside the teacher learner's forward
        ctx.train_step("teacher", batch, loss_fn, kind="student",
                       via=lambda inputs: (student_forward(inputs), teacher_model(inputs)))

    def _spaced_reference(self, ctx: StepContext, batch: Batch) -> None:
        """The wrapper's "both" forward runs the student first (its output only feeds the zero-weighted term, but
        drop path draws and BN statistics move); the student term keeps zero (not None) gradients, so the shared
        AdamW decays and moves the student on every teacher step."""
        ctx.learners["student"].no_grad_forward(batch, train_mode=True)
        params = self.student_params
        ctx.train_step("teacher", batch, lambda out, labels: cross_entropy(out, labels) + zero_term(params))
        if self.space_counter >= self.plan.teacher_steps_per_replay:
            self._replay_fresh(ctx)

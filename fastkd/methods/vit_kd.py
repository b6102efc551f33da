"""The ViT family (docs/semantics.md §5.4, R19-R26): the reference's pycls trainer for vision transformers, with
no KD, online, offline and spaced logit KD of a teacher of the student's own architecture.

This module holds the schedule and the standard step bodies; the models and AdamW groups are in `vit_models.py`,
the loss terms in `vit_losses.py`, the `reference` step bodies in `vit_reference.py`, the spaced replay and its
state in `vit_replay.py`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig
from ..config.methods import register_method
from ..data.readers import IMAGENET_STATS
from ..engine.method import Iteration, Method, OptimizerGroup
from ..engine.steps import Batch, StepContext
from ..errors import ConfigError
from ..kernels import cross_entropy
from ..models.vit import VIT_MODELS, DistilledDeiT
from ..plans.vit_kd import ViTPlan, plan_vit
from .vit_losses import student_loss, teacher_input, zero_term
from .vit_models import build_vit_models, vit_optimizer_groups
from .vit_reference import ReferenceViTSteps
from .vit_replay import ViTReplay


@register_method("vit_spaced_kd")
@register_method("vit_offline_kd")
@register_method("vit_online_kd")
@register_method("vit_base")
class ViTFamily(ReferenceViTSteps, ViTReplay, Method):
    """One class for the four modes of the pycls trainer (docs/semantics.md §5.4).

    Student KD loss (1-w)*CE + w*KL(p_t||p_s)*T^2/(B*C); a distilled DeiT student takes CE on its class head and KD
    on its distillation head. `reference` keeps the pycls behaviour (`vit_reference.py`): one AdamW over both
    models, zero-weighted terms for the idle model, replays over fresh batches (S+1 steps when L divides S), a
    second student forward for the KD logits of a non-DeiT student, train-mode teacher targets. `standard`: one
    AdamW per model, the replay regenerates the exact batches the teacher saw, KD logits come from the first
    forward, the teacher is in eval mode for its targets.
    """

    def __init__(self, plan: ViTPlan, cfg: ExperimentConfig):
        self.plan = plan
        self.mode = plan.mode
        self.reference = plan.semantics == "reference"
        self.vit = cfg.vit
        self.weight_decay = cfg.optim.weight_decay
        self.batch_size = cfg.data.batch_size
        self.seed = cfg.seed
        self.shuffle = cfg.data.shuffle
        self.train_size = 0
        self.heads: Callable[[torch.Tensor], Any] | None = None
        """A distilled DeiT student's (class, distillation) logits of one forward."""
        self.kd_forward: Callable[[torch.Tensor], Any] | None = None
        """What the student's KD step runs: (CE logits, KD logits), or None = plain forward, one set of logits."""
        self.student_params: list[nn.Parameter] = []
        self.teacher_params: list[nn.Parameter] = []
        self._init_replay()

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, iters_per_epoch: int) -> ViTFamily:
        if cfg.model.student not in VIT_MODELS:
            raise ConfigError(f"model.student: {cfg.model.student!r} is not a ViT; the {cfg.method} method trains "
                              f"one of: {', '.join(VIT_MODELS)}")
        if cfg.method == "vit_offline_kd" and not cfg.vit.teacher_weights:
            raise ConfigError("vit.teacher_weights: vit_offline_kd needs the trained teacher's checkpoint; set "
                              "vit.teacher_weights=PATH (e.g. the best.pt of a vit_base run)")
        return cls(plan_vit(cfg.method, cfg.semantics, iters_per_epoch, cfg.train.epochs, cfg.vit.interval), cfg)

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        return build_vit_models(cfg, num_classes, self.mode)

    def train_recipe(self, dataset: str) -> str:
        return "vit"

    def normalization(self, dataset: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """The pycls ViT data uses ImageNet statistics on every data set."""
        return IMAGENET_STATS

    def optimizer_groups(self, models: dict[str, nn.Module]) -> list[OptimizerGroup]:
        shared = self.reference and self.mode in ("online", "spaced")
        return vit_optimizer_groups(models, self.weight_decay, shared, spaced=self.mode == "spaced")

    def attach(self, ctx: StepContext) -> None:
        self.train_size = ctx.train_size
        student = ctx.learners["student"]
        model = student.model
        self.student_params = [p for p in model.parameters() if p.requires_grad]
        if "teacher" in ctx.learners:
            self.teacher_params = [p for p in ctx.learners["teacher"].model.parameters() if p.requires_grad]
        if isinstance(model, DistilledDeiT):
            self.heads = self.kd_forward = student.compiled(model.forward_heads)
        elif self.reference and self.mode != "base":
            self.kd_forward = lambda x: (model(x), model(x))  # the reference's second forward for KD logits

    def phase(self, epoch: int) -> str:
        return "student" if self.mode in ("base", "offline") else "both"

    def eval_outputs(self, ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
        """The student (a distilled DeiT: the mean of its two heads, as its eval mode) and a trained teacher."""
        outputs = {}
        for name, learner in ctx.learners.items():
            if name == "teacher" and self.mode == "offline":
                continue
            if name == "student" and self.heads is not None:
                cls_logits, distill_logits = learner.forward(batch, self.heads)
                outputs[name] = (cls_logits + distill_logits) / 2
            else:
                outputs[name] = learner.forward(batch)
        return outputs

    def run_iteration(self, it: Iteration, ctx: StepContext) -> None:
        batch = ctx.batch(it.indices, it.seed)
        if self.mode == "base":
            ctx.train_step("student", batch, cross_entropy)
        elif self.mode == "offline":
            self._student_step(ctx, batch, self._teacher_targets(ctx, batch, train_mode=self.reference))
        elif self.mode == "online" and self.reference:
            self._online_reference(ctx, batch)
        elif self.mode == "online":
            teacher_logits = ctx.train_step("teacher", batch, cross_entropy).outputs.detach()
            self._student_step(ctx, batch, teacher_logits)
        else:
            self.space_counter += 1
            if self.reference:
                self._spaced_reference(ctx, batch)
                return
            with record_function("fastkd.replay"):
                self.replay.append(it.indices, it.seed)
            ctx.train_step("teacher", batch, cross_entropy)
            if self.space_counter >= self.plan.teacher_steps_per_replay:
                self._replay_logged(ctx)

    def finish(self, ctx: StepContext) -> None:
        """End of training: `standard` distils the trailing partial interval the reference leaves out."""
        if self.mode == "spaced" and not self.reference and len(self.replay):
            self._replay_logged(ctx)

    def _teacher_targets(self, ctx: StepContext, batch: Batch, train_mode: bool) -> torch.Tensor:
        return ctx.learners["teacher"].no_grad_forward(teacher_input(batch, self.vit.teacher_img_size),
                                                       train_mode=train_mode)

    def _student_step(self, ctx: StepContext, batch: Batch, teacher_logits: torch.Tensor,
                      zero_params: list[nn.Parameter] = ()) -> None:
        """A student KD step; `zero_params` get a zero-weighted term (`vit_losses.zero_term`)."""
        vit = self.vit

        def loss_fn(out: Any, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            loss, parts = student_loss(out, labels, teacher_logits, vit)
            return (loss + zero_term(zero_params) if zero_params else loss), parts

        ctx.train_step("student", batch, loss_fn, via=self.kd_forward)

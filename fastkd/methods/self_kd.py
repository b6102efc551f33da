"""Self KD and Spaced self KD on the multi-exit ResNet (docs/semantics.md §3.2, §4.2, §5.3): the deepest exit teaches
the others.

This module holds the schedule and its replay state; the plan is `plans/self_kd.py`, the multi-exit ResNets
`models/self_kd_resnet.py`, the loss `kernels/method_losses.py`."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig, KDConfig
from ..config.methods import register_method
from ..data.readers import CIFAR10_STATS
from ..engine.method import Iteration, Method
from ..engine.replay import ReplayLog
from ..engine.steps import Batch, Learner, StepContext
from ..kernels import cross_entropy
from ..kernels.method_losses import self_kd_loss
from ..models import create_model, family_model_name
from ..plans.self_kd import SelfKDPlan, plan_self_kd

MODEL = "model"


@register_method("spaced_self_kd")
@register_method("self_kd")
class SelfKD(Method):
    """`self_kd` (I = 0) and `spaced_self_kd` (I = int(L * kd.interval)) over one multi-exit ResNet.

    A full step takes `kernels.method_losses.self_kd_loss` (CE of the deepest exit, KD of the shallower exits
    against it, and the feature term over exits F), a deepest-only step CE(z_0, y).
    - reference: soft = soft cross-entropy without T^2, feature = kd.feature_loss (torch.dist), F = {2, 3}
      (the layer3 exit gets no feature term, docs/semantics.md R9).
    - standard: soft = KL * T^2, F = {1, 2, 3}, and `dist` becomes MSE: the BYOT hint loss is a squared L2,
      and a per-element mean keeps mu independent of the batch size and feature width (the unsquared batch
      norm grows with sqrt(B)), as the online-KD family's standard feature term.

    Schedule: self KD takes one full step per iteration on that iteration's forward. Spaced: iterations between
    KD events take deepest-only steps; at an event every batch logged since the previous event is regenerated
    from its (indices, seed), re-forwarded with gradients and takes a full step, oldest first (2I - 1 optimizer
    steps per interval). Events follow the plan's index: g - L under `reference` (docs/semantics.md R6), g under
    `standard`, which also distils the trailing partial interval at the end of training.

    Work skipped where results stay identical: the reference's forward of the current batch at an event is
    discarded, but in train mode it moves the BN running statistics; `reference` therefore runs it without
    autograd (no graph, same statistics), `standard` skips it. Between events `reference` needs the full
    forward for the same reason (attention and head BN statistics); `standard` computes only the deepest exit.
    """

    def __init__(self, plan: SelfKDPlan, kd: KDConfig):
        self.plan = plan
        self.kd = kd
        self.reference = plan.semantics == "reference"
        self.soft = "soft_ce" if self.reference else "kl"
        self.feature_kind = "mse" if not self.reference and kd.feature_loss == "dist" else kd.feature_loss
        self.feature_exits = (2, 3) if self.reference else (1, 2, 3)
        self.replay = ReplayLog()
        self.kd_events = 0
        self._forward_deepest = None

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, iters_per_epoch: int) -> SelfKD:
        return cls(plan_self_kd(cfg.method, cfg.semantics, iters_per_epoch, cfg.train.epochs, cfg.kd.interval),
                   cfg.kd)

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        name = family_model_name(cfg.model.student, "selfkd_")
        return {MODEL: create_model(name, num_classes=num_classes,
                                    downsample_factor=cfg.model.student_downsample_factor)}

    def train_recipe(self, dataset: str) -> str:
        return "tiny_online_kd" if dataset == "tiny_imagenet" else "self_kd"

    def normalization(self, dataset: str):
        return CIFAR10_STATS if self.reference and dataset == "cifar100" else None

    def attach(self, ctx: StepContext) -> None:
        learner = ctx.learners[MODEL]
        self._forward_deepest = learner.compiled(learner.model.forward_deepest)

    def main_model(self, epoch: int) -> str:
        return "ensemble"

    def run_iteration(self, it: Iteration, ctx: StepContext) -> None:
        if self.plan.interval == 0:
            self.kd_events += 1
            self._full_step(ctx, ctx.batch(it.indices, it.seed))
            return
        with record_function("fastkd.replay"):
            self.replay.append(it.indices, it.seed)
        if not self.plan.is_event(it.step):
            self._deepest_step(ctx, ctx.batch(it.indices, it.seed))
            return
        if self.reference:
            with torch.no_grad():
                ctx.learners[MODEL].forward(ctx.batch(it.indices, it.seed))
        self._distill(ctx)

    def finish(self, ctx: StepContext) -> None:
        """End of training: `standard` distils the trailing partial interval the reference drops."""
        if not self.reference and len(self.replay):
            self._distill(ctx)

    def _distill(self, ctx: StepContext) -> None:
        self.kd_events += 1
        with record_function("fastkd.replay"):
            entries = self.replay.drain()
        for indices, seed in entries:
            self._full_step(ctx, ctx.batch(indices, seed))

    def _deepest_step(self, ctx: StepContext, batch: Batch) -> None:
        """CE of the deepest exit: from the full forward under `reference` (every BN sees the batch), from the
        deepest path alone under `standard`."""
        if self.reference:
            ctx.train_step(MODEL, batch, lambda out, labels: cross_entropy(out[0][0], labels), kind="deepest")
        else:
            ctx.train_step(MODEL, batch, lambda out, labels: cross_entropy(out[0], labels), kind="deepest",
                           via=self._forward_deepest)

    def _full_step(self, ctx: StepContext, batch: Batch) -> None:
        learner = ctx.learners[MODEL]

        def full_loss(outputs, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            logits, features = outputs
            teacher_feature = features[0].detach()
            return self_kd_loss(logits, labels, self._adapted(learner, features), teacher_feature, self.kd, self.soft,
                                self.feature_kind)

        ctx.train_step(MODEL, batch, full_loss, kind="full")

    def _adapted(self, learner: Learner, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """The shallow features of the feature term through their adaptation layers (none without the term)."""
        if self.kd.beta == 0 or self.feature_kind == "none":
            return []
        adaptation = learner.model.adaptation_layers
        with learner.autocast():
            return [adaptation[k - 1](features[k]) for k in self.feature_exits]

    def eval_outputs(self, ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
        """Every exit (exit4 = deepest ... exit1 = layer1, the reference's acc_4..acc_1) and their mean."""
        logits, _ = ctx.learners[MODEL].forward(batch)
        outputs = {f"exit{len(logits) - k}": z for k, z in enumerate(logits)}
        outputs["ensemble"] = sum(logits) / len(logits)
        return outputs

    def counters(self) -> dict[str, int]:
        return {"kd_events": self.kd_events}

    def replay_peak_bytes(self) -> int | None:
        return self.replay.peak_nbytes

    def state_dict(self) -> dict:
        return {"replay": self.replay.state_dict(), "kd_events": self.kd_events}

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])
        self.kd_events = state["kd_events"]

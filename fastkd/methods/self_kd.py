"""Self KD and Spaced self KD on the multi-exit ResNet (docs/semantics.md §3.2, §4.2, §5.3): the deepest exit teaches
the others.

Its plan (the KD event arithmetic), its models (the multi-exit ResNets), its loss, schedule and replay state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig, KDConfig
from ..config.methods import register_method
from ..data.readers import CIFAR10_STATS
from ..engine.method import Iteration, Method
from ..engine.replay import ReplayLog
from ..engine.steps import Learner, StepContext, feature_loss
from ..kernels import cross_entropy, kd_loss
from ..models import create_model, family_model_name

@dataclass(frozen=True)
class SelfKDPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    epochs: int
    rate: float
    """kd.interval s in epochs (0 for `self_kd`)."""
    interval: int
    """I = int(L * rate) iterations between KD events (0 = self KD: the full loss at every iteration)."""
    index_offset: int
    """KD fires at g with (g - offset) % I == 0: offset L under `reference` (its index is n = g - L), else 0."""
    total_epochs: int
    kd_events: int
    first_events: list[int]
    """The first few KD iterations g (1-based)."""
    full_steps: int
    """Optimizer steps with the full multi-exit loss: one per distilled batch."""
    deepest_steps: int
    """Optimizer steps that train only the deepest exit (between KD events)."""
    never_distilled: int
    """Trailing batches after the last KD event that never get the full loss (the reference drops them)."""
    notes: list[str] = field(default_factory=list)

    def is_event(self, g: int) -> bool:
        """Whether iteration g (1-based) is a KD event; Python's floor modulo as the reference relies on."""
        return self.interval == 0 or (g - self.index_offset) % self.interval == 0

    def as_dict(self) -> dict:
        return asdict(self)


def plan_self_kd(method: str, semantics: str, iters_per_epoch: int, epochs: int, rate: float) -> SelfKDPlan:
    """Self KD (`self_kd`: every iteration) or spaced self KD (`spaced_self_kd`: every I = int(L * rate))."""
    L, total = iters_per_epoch, iters_per_epoch * epochs
    notes: list[str] = []
    rate = rate if method == "spaced_self_kd" else 0.0
    interval = int(L * rate)
    if method == "spaced_self_kd" and interval == 0:
        notes.append(f"interval {rate} < 1/L = {1 / L:.4g} epochs gives I = 0: this is self KD at every iteration")
    if interval == 0:
        return SelfKDPlan(method, semantics, L, epochs, rate, 0, 0, epochs, total, list(range(1, min(total, 5) + 1)),
                          total, 0, 0, notes)
    offset = L if semantics == "reference" else 0
    first = (offset - 1) % interval + 1
    events = (total - first) // interval + 1 if first <= total else 0
    last = first + (events - 1) * interval if events else 0
    trailing = total - last
    if semantics == "reference" and first < interval:
        notes.append(f"the reference's index n = g - L fires the first KD event at g = {first}, with only {first} "
                     "batches buffered (docs/semantics.md R6)")
    notes.append(f"{2 * interval - 1} optimizer steps per interval: {interval - 1} deepest-only, {interval} full "
                 "(the deepest exit trains twice on every replayed batch, docs/semantics.md §5.3)")
    full_steps, kd_events = last, events
    if semantics == "standard" and trailing:
        notes.append(f"standard semantics distils the trailing {trailing} batches at the end of training")
        full_steps, kd_events, trailing = total, events + 1, 0
    elif trailing:
        notes.append(f"the last {trailing} batches are never distilled")
    first_events = [first + k * interval for k in range(min(events, 5))]
    return SelfKDPlan(method, semantics, L, epochs, rate, interval, offset, epochs, kd_events, first_events,
                      full_steps, total - events, trailing, notes)


MODEL = "model"


@register_method("spaced_self_kd")
@register_method("self_kd")
class SelfKD(Method):
    """`self_kd` (I = 0) and `spaced_self_kd` (I = int(L * kd.interval)) over one multi-exit ResNet.

    Loss weighting of a full step, exits z_k and features f_k deepest first (k = 0 teaches), lambda = kd.alpha,
    mu = kd.beta, T = kd.temperature, adaptation layers A:
        CE(z_0, y) + sum_{k=1..3} [lambda * soft_T(z_k, z_0) + (1 - lambda) * CE(z_k, y)]
                   + mu * sum_{k in F} feature(A_{k-1}(f_k), f_0)        (z_0, f_0 detached as targets)
    - reference: soft = soft cross-entropy without T^2, feature = kd.feature_loss (torch.dist), F = {2, 3}
      (the layer3 exit gets no feature term, docs/semantics.md R9).
    - standard: soft = KL * T^2, F = {1, 2, 3}, and `dist` becomes MSE: the BYOT hint loss is a squared L2,
      and a per-element mean keeps mu independent of the batch size and feature width (the unsquared batch
      norm grows with sqrt(B)), as the online-KD family's standard feature term.
    A deepest-only step is CE(z_0, y).

    Schedule: self KD takes one full step per iteration on that iteration's forward. Spaced: iterations between
    KD events take deepest-only steps; at an event every batch logged since the previous event is regenerated
    from its (indices, seed), re-forwarded with gradients and takes a full step, oldest first (2I - 1 optimizer
    steps per interval). Events follow the plan's index: g - L under `reference` (docs/semantics.md R6), g under
    `standard`,
    which also distils the trailing partial interval at the end of training.

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

    # -------------------------------------------------------------------------------------- schedule
    def run_iteration(self, it: Iteration, ctx: StepContext) -> None:
        if self.plan.interval == 0:
            self.kd_events += 1
            self._full_step(ctx, *ctx.batch(it.indices, it.seed))
            return
        with record_function("fastkd.replay"):
            self.replay.append(it.indices, it.seed)
        if not self.plan.is_event(it.step):
            self._deepest_step(ctx, *ctx.batch(it.indices, it.seed))
            return
        if self.reference:
            x, _ = ctx.batch(it.indices, it.seed)
            with torch.no_grad():
                ctx.learners[MODEL].forward(x)
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
            self._full_step(ctx, *ctx.batch(indices, seed))

    # ------------------------------------------------------------------------------------------ steps
    def _deepest_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> None:
        """CE of the deepest exit: from the full forward under `reference` (every BN sees the batch), from the
        deepest path alone under `standard`."""
        if self.reference:
            ctx.train_step(MODEL, x, y, lambda out, labels: cross_entropy(out[0][0], labels), kind="deepest")
        else:
            ctx.train_step(MODEL, x, y, lambda out, labels: cross_entropy(out[0], labels), kind="deepest",
                           via=self._forward_deepest)

    def _full_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> None:
        learner = ctx.learners[MODEL]

        def full_loss(outputs, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            logits, features = outputs
            teacher_logits, teacher_feature = logits[0].detach(), features[0].detach()
            deepest_ce = cross_entropy(logits[0], labels)
            shallow = kd_loss(torch.stack(logits[1:]), teacher_logits, labels, temperature=self.kd.temperature,
                              alpha=self.kd.alpha, soft=self.soft)
            feature = self._feature_term(learner, features, teacher_feature)
            parts = {"ce": deepest_ce, "shallow_ce": shallow.ce.sum(), "soft": shallow.soft.sum(),
                     "feature": feature.detach()}
            return deepest_ce + shallow.total + self.kd.beta * feature, parts

        ctx.train_step(MODEL, x, y, full_loss, kind="full")

    def _feature_term(self, learner: Learner, features: list[torch.Tensor],
                      teacher_feature: torch.Tensor) -> torch.Tensor:
        if self.kd.beta == 0 or self.feature_kind == "none":
            return teacher_feature.new_zeros(())
        adaptation = learner.model.adaptation_layers
        with learner.autocast():
            adapted = [adaptation[k - 1](features[k]) for k in self.feature_exits]
        return sum(feature_loss(a, teacher_feature, self.feature_kind) for a in adapted)

    # -------------------------------------------------------------------------------------- evaluate
    def eval_outputs(self, ctx: StepContext, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every exit (exit4 = deepest ... exit1 = layer1, the reference's acc_4..acc_1) and their mean."""
        logits, _ = ctx.learners[MODEL].forward(x)
        outputs = {f"exit{len(logits) - k}": z for k, z in enumerate(logits)}
        outputs["ensemble"] = sum(logits) / len(logits)
        return outputs

    def counters(self) -> dict[str, int]:
        return {"kd_events": self.kd_events}

    def state_dict(self) -> dict:
        return {"replay": self.replay.state_dict(), "kd_events": self.kd_events}

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])
        self.kd_events = state["kd_events"]

"""Self KD and Spaced self KD on the multi-exit ResNet (spec 2.3, 3.2, 4.3): the deepest exit teaches the others."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig
from ..data.readers import CIFAR10_STATS
from ..engine.replay import ReplayLog
from ..engine.steps import Learner, ce_loss, feature_loss
from ..kernels import kd_loss
from ..models import create_model
from .base import Engine, Iteration, Method, family_model_name
from .schedule import SelfKDPlan

MODEL = "model"


class SelfKD(Method):
    """`self_kd` (I = 0) and `spaced_self_kd` (I = int(L * kd.interval)) over one multi-exit ResNet.

    Loss weighting of a full step, exits z_k and features f_k deepest first (k = 0 teaches), lambda = kd.alpha,
    mu = kd.beta, T = kd.temperature, adaptation layers A:
        CE(z_0, y) + sum_{k=1..3} [lambda * soft_T(z_k, z_0) + (1 - lambda) * CE(z_k, y)]
                   + mu * sum_{k in F} feature(A_{k-1}(f_k), f_0)        (z_0, f_0 detached as targets)
    - reference: soft = soft cross-entropy without T^2, feature = kd.feature_loss (torch.dist), F = {2, 3}
      (the layer3 exit gets no feature term, quirk 12).
    - standard: soft = KL * T^2, F = {1, 2, 3}, and `dist` becomes MSE: the BYOT hint loss is a squared L2,
      and a per-element mean keeps mu independent of the batch size and feature width (the unsquared batch
      norm grows with sqrt(B)), as the online-KD family's standard feature term.
    A deepest-only step is CE(z_0, y).

    Schedule: self KD takes one full step per iteration on that iteration's forward. Spaced: iterations between
    KD events take deepest-only steps; at an event every batch logged since the previous event is regenerated
    from its (indices, seed), re-forwarded with gradients and takes a full step, oldest first (2I - 1 optimizer
    steps per interval). Events follow the plan's index: g - L under `reference` (quirk 9), g under `standard`,
    which also distils the trailing partial interval at the end of training.

    Work skipped where results stay identical: the reference's forward of the current batch at an event is
    discarded, but in train mode it moves the BN running statistics; `reference` therefore runs it without
    autograd (no graph, same statistics), `standard` skips it. Between events `reference` needs the full
    forward for the same reason (attention and head BN statistics); `standard` computes only the deepest exit.
    """

    train_recipe = "self_kd"

    def __init__(self, plan: SelfKDPlan, cfg: ExperimentConfig):
        self.plan = plan
        self.kd = cfg.kd
        self.reference = plan.semantics == "reference"
        self.soft = "soft_ce" if self.reference else "kl"
        self.feature_kind = "mse" if not self.reference and cfg.kd.feature_loss == "dist" else cfg.kd.feature_loss
        self.feature_exits = (2, 3) if self.reference else (1, 2, 3)
        self.replay = ReplayLog()
        self.kd_events = 0
        self._forward_deepest = None

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        name = family_model_name(cfg.model.student, "selfkd_")
        return {MODEL: create_model(name, num_classes=num_classes,
                                    downsample_factor=cfg.model.student_downsample_factor)}

    def normalization(self, dataset: str):
        return CIFAR10_STATS if self.reference and dataset == "cifar100" else None

    def attach(self, eng: Engine) -> None:
        learner = eng.learners[MODEL]
        deepest = learner.model.forward_deepest
        self._forward_deepest = torch.compile(deepest) if learner.runtime.compile else deepest

    def main_model(self, epoch: int) -> str:
        return "ensemble"

    # -------------------------------------------------------------------------------------- schedule
    def run_iteration(self, it: Iteration, eng: Engine) -> None:
        if self.plan.interval == 0:
            self.kd_events += 1
            self._full_step(eng, *eng.batch(it.indices, it.seed))
            return
        with record_function("fastkd.replay"):
            self.replay.append(it.indices, it.seed)
        if not self.plan.is_event(it.step):
            self._deepest_step(eng, *eng.batch(it.indices, it.seed))
            return
        if self.reference:
            x, _ = eng.batch(it.indices, it.seed)
            with torch.no_grad():
                eng.learners[MODEL].forward(x)
        self._distill(eng)

    def finish(self, eng: Engine) -> None:
        """End of training: `standard` distils the trailing partial interval the reference drops."""
        if not self.reference and len(self.replay):
            self._distill(eng)

    def _distill(self, eng: Engine) -> None:
        self.kd_events += 1
        with record_function("fastkd.replay"):
            entries = self.replay.drain()
        for indices, seed in entries:
            self._full_step(eng, *eng.batch(indices, seed))

    # ------------------------------------------------------------------------------------------ steps
    def _deepest_step(self, eng: Engine, x: torch.Tensor, y: torch.Tensor) -> None:
        learner = eng.learners[MODEL]
        if self.reference:
            logits = learner.forward(x)[0][0]
        else:
            with record_function("fastkd.forward"), learner.runtime.autocast():
                logits = self._forward_deepest(x)[0]
        loss = ce_loss(logits, y)
        learner.step(loss)
        eng.record("deepest", loss=loss)

    def _full_step(self, eng: Engine, x: torch.Tensor, y: torch.Tensor) -> None:
        learner = eng.learners[MODEL]
        logits, features = learner.forward(x)
        teacher_logits, teacher_feature = logits[0].detach(), features[0].detach()
        with record_function("fastkd.loss"):
            deepest_ce = ce_loss(logits[0], y)
            shallow = kd_loss(torch.stack(logits[1:]), teacher_logits, y, temperature=self.kd.temperature,
                              alpha=self.kd.alpha, soft=self.soft)
            feature = self._feature_term(learner, features, teacher_feature)
            loss = deepest_ce + shallow.total + self.kd.beta * feature
        learner.step(loss)
        eng.record("full", loss=loss, ce=deepest_ce, shallow_ce=shallow.ce.sum(), soft=shallow.soft.sum(),
                   feature=feature.detach())

    def _feature_term(self, learner: Learner, features: list[torch.Tensor],
                      teacher_feature: torch.Tensor) -> torch.Tensor:
        if self.kd.beta == 0 or self.feature_kind == "none":
            return teacher_feature.new_zeros(())
        adaptation = learner.model.adaptation_layers
        with learner.runtime.autocast():
            adapted = [adaptation[k - 1](features[k]) for k in self.feature_exits]
        return sum(feature_loss(a, teacher_feature, self.feature_kind) for a in adapted)

    # -------------------------------------------------------------------------------------- evaluate
    def eval_outputs(self, eng: Engine, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every exit (exit4 = deepest ... exit1 = layer1, the reference's acc_4..acc_1) and their mean."""
        logits, _ = eng.learners[MODEL].forward(x)
        outputs = {f"exit{len(logits) - k}": z for k, z in enumerate(logits)}
        outputs["ensemble"] = sum(logits) / len(logits)
        return outputs

    def state_dict(self) -> dict:
        return {"replay": self.replay.state_dict(), "kd_events": self.kd_events}

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])
        self.kd_events = state["kd_events"]

"""EMA and Spaced EMA of one CIFAR ResNet (docs/semantics.md §6): the average is refreshed every int(s*L) optimizer
steps.

Its plan (the update spacing), its model (a plain CIFAR ResNet), its schedule and state (the EMA copy)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig
from ..config.methods import register_method
from ..engine.method import Iteration, Method
from ..engine.steps import Batch, StepContext
from ..kernels import FlatEMA, cross_entropy
from ..models import create_model, width_divisor
from ..plans.ema import EmaPlan, plan_ema

MODEL = "model"


@register_method("spaced_ema")
@register_method("ema")
class SpacedEMA(Method):
    """`ema` (update after every step) and `spaced_ema` (the plan's fixed or random spacing).

    Loss weighting: CE(z, y) only; the EMA never receives gradients. After an optimizer step for which the
    schedule fires: ema <- d*ema + (1-d)*model, d = ema.decay, through one fused FlatEMA pass.
    - reference: only parameters are averaged (the EMA's BN buffers keep their initial values apart from
      what evaluation writes into them), and both models are evaluated in train mode: BN normalises with
      test-batch statistics and its running statistics absorb the test data (docs/semantics.md R12).
    - standard: parameters and floating buffers are averaged, and both models are evaluated in eval mode.
    Both the raw model (`model`) and the EMA (`ema`) are scored every evaluation; `ema` decides `best.pt`.
    """

    def __init__(self, plan: EmaPlan, seed: int):
        self.plan = plan
        self.reference = plan.semantics == "reference"
        self.schedule = plan.schedule(seed)
        self.ema: FlatEMA | None = None
        self.ema_updates = 0

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, iters_per_epoch: int) -> SpacedEMA:
        plan = plan_ema(cfg.method, cfg.semantics, iters_per_epoch, cfg.train.epochs, cfg.ema.interval, cfg.ema.decay)
        return cls(plan, cfg.seed)

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        width = width_divisor(cfg.model.student, cfg.model.student_downsample_factor, "model.student_downsample_factor")
        return {MODEL: create_model(cfg.model.student, num_classes=num_classes, downsample_factor=width)}

    def attach(self, ctx: StepContext) -> None:
        learner = ctx.learners[MODEL]
        policy = "params_only" if self.reference else "params_and_buffers"
        self.ema = FlatEMA(learner.model, self.plan.decay, policy=policy)
        learner.compiled(self.ema.module)

    def main_model(self, epoch: int) -> str:
        return "ema"

    def run_iteration(self, it: Iteration, ctx: StepContext) -> None:
        ctx.train_step(MODEL, ctx.batch(it.indices, it.seed), lambda out, labels: cross_entropy(out[1], labels))
        if self.schedule.step():
            with record_function("fastkd.ema"):
                self.ema.update()
            self.ema_updates += 1

    @contextlib.contextmanager
    def eval_context(self, ctx: StepContext) -> Iterator[None]:
        """`reference` leaves both models in train mode; `standard` switches both to eval mode."""
        if self.reference:
            yield
            return
        self.ema.module.eval()
        try:
            with super().eval_context(ctx):
                yield
        finally:
            self.ema.module.train()

    def eval_outputs(self, ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
        learner = ctx.learners[MODEL]
        ema_logits = learner.forward(batch, via=self.ema.module)[1]
        return {MODEL: learner.forward(batch)[1], "ema": ema_logits}

    def counters(self) -> dict[str, int]:
        return {"ema_updates": self.ema_updates}

    def state_dict(self) -> dict:
        return {"ema": self.ema.state_dict(), "schedule": self.schedule.state_dict(), "ema_updates": self.ema_updates}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])
        self.schedule.load_state_dict(state["schedule"])
        self.ema_updates = state["ema_updates"]

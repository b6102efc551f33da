"""EMA and Spaced EMA of one CIFAR ResNet (spec 5): the average is refreshed every int(s*L) optimizer steps."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig
from ..engine.steps import ce_loss
from ..kernels import FlatEMA
from ..models import create_model
from .base import Engine, Iteration, Method
from .schedule import EmaPlan

MODEL = "model"


class SpacedEMA(Method):
    """`ema` (update after every step) and `spaced_ema` (the plan's fixed or random spacing).

    Loss weighting: CE(z, y) only; the EMA never receives gradients. After an optimizer step for which the
    schedule fires: ema <- d*ema + (1-d)*model, d = ema.decay, through one fused FlatEMA pass.
    - reference: only parameters are averaged (the EMA's BN buffers keep their initial values apart from
      what evaluation writes into them), and both models are evaluated in train mode: BN normalises with
      test-batch statistics and its running statistics absorb the test data (quirk 16).
    - standard: parameters and floating buffers are averaged, and both models are evaluated in eval mode.
    Both the raw model (`model`) and the EMA (`ema`) are scored every evaluation; `ema` decides `best.pt`.
    """

    def __init__(self, plan: EmaPlan, cfg: ExperimentConfig):
        self.plan = plan
        self.reference = plan.semantics == "reference"
        self.schedule = plan.schedule(cfg.seed)
        self.ema: FlatEMA | None = None
        self.ema_updates = 0

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        return {MODEL: create_model(cfg.model.student, num_classes=num_classes,
                                    downsample_factor=cfg.model.student_downsample_factor)}

    def attach(self, eng: Engine) -> None:
        learner = eng.learners[MODEL]
        policy = "params_only" if self.reference else "params_and_buffers"
        self.ema = FlatEMA(learner.model, self.plan.decay, policy=policy)
        if learner.runtime.compile:
            self.ema.module.compile()   # a deep copy of a compiled module comes back uncompiled

    def main_model(self, epoch: int) -> str:
        return "ema"

    def run_iteration(self, it: Iteration, eng: Engine) -> None:
        learner = eng.learners[MODEL]
        x, y = eng.batch(it.indices, it.seed)
        loss = ce_loss(learner.forward(x)[1], y)
        learner.step(loss)
        eng.record(MODEL, loss=loss)
        if self.schedule.step():
            with record_function("fastkd.ema"):
                self.ema.update()
            self.ema_updates += 1

    @contextlib.contextmanager
    def eval_context(self, eng: Engine) -> Iterator[None]:
        """`reference` leaves both models in train mode; `standard` switches both to eval mode."""
        if self.reference:
            yield
            return
        self.ema.module.eval()
        try:
            with super().eval_context(eng):
                yield
        finally:
            self.ema.module.train()

    def eval_outputs(self, eng: Engine, x: torch.Tensor) -> dict[str, torch.Tensor]:
        learner = eng.learners[MODEL]
        with learner.runtime.autocast():
            ema_logits = self.ema.module(x)[1]
        return {MODEL: learner.forward(x)[1], "ema": ema_logits}

    def state_dict(self) -> dict:
        return {"ema": self.ema.state_dict(), "schedule": self.schedule.state_dict(), "ema_updates": self.ema_updates}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])
        self.schedule.load_state_dict(state["schedule"])
        self.ema_updates = state["ema_updates"]

"""EMA and Spaced EMA of one CIFAR ResNet (docs/semantics.md §6): the average is refreshed every int(s*L) optimizer
steps.

Its plan (the update spacing), its model (a plain CIFAR ResNet), its schedule and state (the EMA copy)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ExperimentConfig
from ..config.methods import register_method
from ..engine.method import Iteration, Method
from ..engine.steps import StepContext
from ..kernels import EmaSchedule, FlatEMA, cross_entropy
from ..models import create_model, width_divisor

RANDOM_EMA_FRACTION = 0.4
"""Random EMA intervals are int(0.4 * L * U[0,1)) + 1 iterations (docs/semantics.md §6)."""


@dataclass(frozen=True)
class EmaPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    epochs: int
    spacing: float
    """s in epochs (the reference's `-interval`; 0 for `ema`): 0 = every step, <= 500 every int(s*L) steps,
    > 500 random."""
    decay: float
    mode: str
    """every_step | fixed | random | never"""
    interval: int
    """Iterations between EMA updates (0 = never; for `random` the first drawn interval is not known here)."""
    max_random_interval: int
    """Random mode: intervals are int(0.4*L*U) + 1, i.e. 1..this value; 0 otherwise."""
    total_epochs: int
    updates: int
    """EMA updates over the run (random mode: the expected number, rounded)."""
    averaged: str
    """What the EMA averages: `parameters` (reference) or `parameters and buffers` (standard)."""
    eval_batchnorm: str
    notes: list[str] = field(default_factory=list)

    def schedule(self, seed: int) -> EmaSchedule:
        """The host-side update schedule this plan describes."""
        if self.mode == "random":
            return EmaSchedule(interval_iters=None, random_max=RANDOM_EMA_FRACTION * self.iters_per_epoch, seed=seed)
        return EmaSchedule(interval_iters=self.interval, seed=seed)

    def as_dict(self) -> dict:
        return asdict(self)


def plan_ema(method: str, semantics: str, iters_per_epoch: int, epochs: int, spacing: float,
             decay: float) -> EmaPlan:
    """`ema`: update after every optimizer step; `spaced_ema`: the reference's `-interval` rule (docs/semantics.md
    §6)."""
    L, total = iters_per_epoch, iters_per_epoch * epochs
    notes: list[str] = []
    s = spacing if method == "spaced_ema" else 0.0
    reference_schedule = EmaSchedule.from_reference(s, L)
    max_random = 0
    if reference_schedule.random_max is not None:
        mode, interval = "random", 0
        bound = RANDOM_EMA_FRACTION * L
        max_random = math.ceil(bound)
        # E[int(m*U)] for U ~ U[0,1): each k < floor(m) with probability 1/m, floor(m) with (m - floor(m))/m.
        whole = math.floor(bound)
        mean = (whole * (whole - 1) / 2 + whole * (bound - whole)) / bound + 1
        updates = round(total / mean)
        notes.append(f"random intervals 1..{max_random} iterations (mean {mean:.1f}), redrawn after each update")
    else:
        interval = reference_schedule.interval
        if interval == 0 and semantics == "standard":
            interval = 1
            notes.append(f"s = {s} < 1/L: the reference never updates (docs/semantics.md R13); "
                         "standard updates every step")
        elif interval == 0:
            notes.append(f"s = {s} < 1/L = {1 / L:.4g} gives int(s*L) = 0: the EMA is never updated "
                         "(docs/semantics.md R13)")
        mode = "never" if interval == 0 else "every_step" if interval == 1 else "fixed"
        updates = total // interval if interval else 0
    if semantics == "reference":
        averaged, eval_bn = "parameters", "test-batch statistics (models stay in train mode, docs/semantics.md R12)"
        notes.append("reference evaluation uses test-batch BN statistics: results depend on data.eval_batch_size "
                     "(the reference evaluates with the training batch size)")
    else:
        averaged, eval_bn = "parameters and buffers", "running statistics (eval mode)"
    return EmaPlan(method, semantics, L, epochs, s, decay, mode, interval, max_random, epochs, updates,
                   averaged, eval_bn, notes)


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
        x, y = ctx.batch(it.indices, it.seed)
        ctx.train_step(MODEL, x, y, lambda out, labels: cross_entropy(out[1], labels))
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

    def eval_outputs(self, ctx: StepContext, x: torch.Tensor) -> dict[str, torch.Tensor]:
        learner = ctx.learners[MODEL]
        ema_logits = learner.forward(x, via=self.ema.module)[1]
        return {MODEL: learner.forward(x)[1], "ema": ema_logits}

    def counters(self) -> dict[str, int]:
        return {"ema_updates": self.ema_updates}

    def state_dict(self) -> dict:
        return {"ema": self.ema.state_dict(), "schedule": self.schedule.state_dict(), "ema_updates": self.ema_updates}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])
        self.schedule.load_state_dict(state["schedule"])
        self.ema_updates = state["ema_updates"]

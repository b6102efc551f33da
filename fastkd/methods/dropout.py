"""Dropout and Spaced Dropout on the dropout ResNet (docs/semantics.md §3.3, §7) or the dropout WideResNet, with
the optional spaced batch cutout.

Its plan (rate period, variant, counter and cutout schedule), its models (the dropout ResNets and WideResNets), its
schedule and state (the rate and cutout counters)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import ExperimentConfig
from ..config.methods import register_method
from ..engine.method import Iteration, Method
from ..engine.steps import Batch, StepContext
from ..kernels import cross_entropy
from ..models import create_model, family_model_name
from ..models.dropout import DropoutSites
from ..pipelines.torch_ops import batch_cutout
from ..plans.dropout import DropoutPlan, plan_dropout

MODEL = "model"


@register_method("spaced_dropout")
@register_method("dropout")
class SpacedDropout(Method):
    """`dropout` (StandardDropout / MaxDropout at a constant rate p) and `spaced_dropout` (SpacedDropout /
    MaxSpacedDropout: p_t = p*|sin(pi*t/S)| at every site, or p*U[0,1) per site and forward when S >= 500).

    Loss weighting: CE(z, y) only; dropout acts on the activations after layer1..layer4 of the dropout ResNet, or
    between the two convs of every WideResNet block. Under `standard` the WideResNet takes any op and schedule;
    under `reference` only the reference's constant-rate MaxDropout, off at evaluation (see `plan_dropout`).
    - reference: t counts every forward, evaluation batches included (docs/semantics.md R15), and the dropout ResNet
      keeps dropping at evaluation (docs/semantics.md R14).
    - standard: t counts training steps and evaluation runs without dropout.
    The rate lives in device buffers of the model, rewritten in place before each forward (no host sync, no
    recompile). With `dropout.cutout_input` each training batch loses one box, the same for the whole batch
    (docs/semantics.md §2.5), of side int(l_t) with l_t from the plan's cutout schedule, drawn and applied on the
    device.
    """

    def __init__(self, plan: DropoutPlan):
        self.plan = plan
        self.reference = plan.semantics == "reference"
        self.forwards = 0
        """t: forward calls that advanced the rate schedule."""
        self.train_steps = 0

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, iters_per_epoch: int) -> SpacedDropout:
        d = cfg.dropout
        plan = plan_dropout(cfg.method, cfg.semantics, iters_per_epoch, cfg.train.epochs, d.op, d.rate, d.space,
                            d.cutout_input, d.length,
                            wide_resnet=cfg.model.student.removeprefix("dropout_").startswith("wideresnet"))
        if cfg.semantics == "reference" and not cfg.optim.nesterov:
            plan.notes.append("the reference trains dropout models with Nesterov SGD; optim.nesterov is false")
        return cls(plan)

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        name = family_model_name(cfg.model.student, "dropout_")
        plan = self.plan
        return {MODEL: create_model(name, num_classes=num_classes, drop_op=plan.op, drop_rate=plan.rate,
                                    random_rates=plan.variant == "random", active_at_eval=plan.active_at_eval,
                                    downsample_factor=cfg.model.student_downsample_factor)}

    def run_iteration(self, it: Iteration, ctx: StepContext) -> None:
        batch = ctx.batch(it.indices, it.seed)
        if self.plan.cutout != "off":
            batch = batch._replace(x=batch_cutout(batch.x, self._cutout_half(batch.x)))
        self._set_rate(ctx.learners[MODEL].model)
        ctx.train_step(MODEL, batch, cross_entropy)
        self.forwards += 1
        self.train_steps += 1

    def main_model(self, epoch: int) -> str:
        return MODEL

    def eval_outputs(self, ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
        learner = ctx.learners[MODEL]
        if not self.reference:
            return {MODEL: learner.forward(batch)}
        self._set_rate(learner.model)
        logits = learner.forward(batch)
        self.forwards += 1
        return {MODEL: logits}

    def _set_rate(self, model: DropoutSites) -> None:
        """The sine variant's p_t for this forward; constant and random rates never change after build."""
        if self.plan.variant == "sine":
            model.set_drop_rates(self.plan.rate_at(self.forwards))

    def _cutout_half(self, x: torch.Tensor) -> int | torch.Tensor:
        """Half the box side for this step: a host int, or a device tensor for random lengths (no sync)."""
        if self.plan.cutout != "random":
            return self.plan.cutout_box_at(self.train_steps) // 2
        draw = torch.rand((), device=x.device, dtype=torch.float64)
        return torch.div((self.plan.cutout_length * draw).floor(), 2, rounding_mode="floor")

    def counters(self) -> dict[str, int]:
        return {"dropout_forwards": self.forwards, "dropout_train_steps": self.train_steps}

    def state_dict(self) -> dict:
        return self.counters()

    def load_state_dict(self, state: dict) -> None:
        self.forwards = state["dropout_forwards"]
        self.train_steps = state["dropout_train_steps"]

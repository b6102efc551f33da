"""Dropout and Spaced Dropout on the dropout ResNet (docs/semantics.md §3.3, §7) or the dropout WideResNet, with
the optional spaced batch cutout.

Its plan (rate period, variant, counter and cutout schedule), its models (the dropout ResNets and WideResNets), its
schedule and state (the rate and cutout counters)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from ..config import ConfigError, ExperimentConfig
from ..config.methods import register_method
from ..engine.method import Iteration, Method
from ..engine.steps import StepContext
from ..kernels import cross_entropy
from ..models import create_model, family_model_name
from ..models.dropout import DropoutSites

RANDOM_DROPOUT_PERIOD = 500
"""S >= 500 iterations selects the random-rate variant (docs/semantics.md §7)."""
RANDOM_CUTOUT_SPACE = 500.0
"""The reference's input cutout switches to random lengths at space > 500 (in epochs, docs/semantics.md R16)."""

REFERENCE_DROPOUT_NAMES = {("dropout", "standard"): "StandardDropout", ("dropout", "max"): "MaxDropout",
                           ("spaced_dropout", "standard"): "SpacedDropout",
                           ("spaced_dropout", "max"): "MaxSpacedDropout"}


@dataclass(frozen=True)
class DropoutPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    epochs: int
    reference_name: str
    """The reference's `--drop_method` this reproduces."""
    op: str
    """standard (inverted dropout) | max (MaxDropout), at every dropout site of the model."""
    rate: float
    space: float
    period: int
    """S = int(space * L) forward calls per period of p_t = p*|sin(pi*t/S)| (0 = constant rate)."""
    variant: str
    """constant | sine | random (p*U[0,1) per site and forward)."""
    total_epochs: int
    counter: str
    """What advances t: every forward (reference, evaluation included) or training steps only (standard)."""
    active_at_eval: bool
    cutout: str
    """off | constant | sine | random: the batch cutout of `dropout.cutout_input`."""
    cutout_length: int
    cutout_period: float
    """Iterations per period of the cutout length l_t = length*|sin(pi*count/period)| (float, not truncated)."""
    notes: list[str] = field(default_factory=list)

    def rate_at(self, t: int) -> float:
        """p_t of the sine variant at forward call t, in the reference's float64 operation order."""
        return self.rate * abs(math.sin((math.pi / self.period) * t))

    def cutout_box_at(self, count: int) -> int:
        """Box side int(l_t) before training step `count` (0-based) for the constant and sine cutouts."""
        if self.cutout == "constant":
            return int(self.cutout_length)
        return int(self.cutout_length * abs(math.sin((math.pi / self.cutout_period) * count)))

    def as_dict(self) -> dict:
        return asdict(self)


def plan_dropout(method: str, semantics: str, iters_per_epoch: int, epochs: int, op: str, rate: float,
                 space: float, cutout_input: bool, cutout_length: int, *, wide_resnet: bool = False) -> DropoutPlan:
    """`dropout`: constant rate; `spaced_dropout`: p_t over S = int(space*L) forward calls (docs/semantics.md §7).

    `wide_resnet`: the model is the dropout WideResNet. The reference's WideResNet always applies MaxDropout at a
    constant rate and builds it once (so it stops at evaluation); `reference` semantics allows only that run.
    """
    L = iters_per_epoch
    notes: list[str] = []
    reference = semantics == "reference"
    if reference and wide_resnet and (method, op) != ("dropout", "max"):
        raise ConfigError(f"the reference's WideResNet has no {REFERENCE_DROPOUT_NAMES[(method, op)]}: it always "
                          "applies MaxDropout at the constant dropout.rate; use method: dropout with dropout.op: "
                          "max, or semantics: standard to run this schedule on it")
    period = int(space * L)
    if method == "spaced_dropout" and period == 0:
        raise ConfigError(f"dropout.space = {space} gives a period S = int(space * L) = 0 iterations (L = {L}); "
                         "spaced_dropout needs space >= 1/L (the reference divides by zero); "
                         "use method: dropout for a constant rate")
    if method == "dropout":
        variant, period = "constant", 0
    elif period >= RANDOM_DROPOUT_PERIOD:
        variant = "random"
        notes.append(f"S = int({space} * {L}) = {period} >= {RANDOM_DROPOUT_PERIOD} iterations selects random rates "
                     f"p*U[0,1) at each site and forward (docs/semantics.md §7: --space >= "
                     f"{RANDOM_DROPOUT_PERIOD / L:.3g} here)")
    else:
        variant = "sine"
    if reference:
        counter = "every forward (training and evaluation)"
        if variant == "sine":
            notes.append("the rate counter also advances once per evaluation batch (docs/semantics.md R15): "
                         "ceil(test size / "
                         "data.eval_batch_size) per evaluation, 79 with the reference's CIFAR-100 batch of 128")
        if wide_resnet:
            notes.append("the reference's WideResNet builds its MaxDropout once, so evaluation runs without dropout "
                         "(its layout is inferred, fastkd/models/wide_resnet.py)")
        else:
            notes.append("dropout stays active at evaluation (docs/semantics.md R14): test accuracy is stochastic")
    else:
        counter = "training steps"
    cutout, cutout_period = "off", 0.0
    if cutout_input:
        random_cutout = space > RANDOM_CUTOUT_SPACE if reference else space * L >= RANDOM_DROPOUT_PERIOD
        cutout = "constant" if space == 0 else "random" if random_cutout else "sine"
        cutout_period = space * L if cutout == "sine" else 0.0
        if reference and method == "spaced_dropout" and cutout != "constant" and (cutout == "random") != (
                variant == "random"):
            notes.append("the reference's cutout switches to random lengths at space > 500 epochs, its dropout at "
                         "S >= 500 iterations (docs/semantics.md R16): the two schedules differ in kind here")
    return DropoutPlan(method, semantics, L, epochs, REFERENCE_DROPOUT_NAMES[(method, op)], op, rate, space, period,
                       variant, epochs, counter, reference and not wide_resnet, cutout, cutout_length, cutout_period,
                       notes)


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
        x, y = ctx.batch(it.indices, it.seed)
        if self.plan.cutout != "off":
            x = batch_cutout(x, self._cutout_half(x))
        self._set_rate(ctx.learners[MODEL].model)
        ctx.train_step(MODEL, x, y, cross_entropy)
        self.forwards += 1
        self.train_steps += 1

    def main_model(self, epoch: int) -> str:
        return MODEL

    def eval_outputs(self, ctx: StepContext, x: torch.Tensor) -> dict[str, torch.Tensor]:
        learner = ctx.learners[MODEL]
        if not self.reference:
            return {MODEL: learner.forward(x)}
        self._set_rate(learner.model)
        logits = learner.forward(x)
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


def batch_cutout(x: torch.Tensor, half: int | torch.Tensor) -> torch.Tensor:
    """Zero rows [cy-half, cy+half) x cols [cx-half, cx+half) (clipped) of every image and channel, one centre
    (cy, cx) uniform over the image for the whole batch, drawn on the device (the reference's `Cutout_input`)."""
    height, width = x.shape[-2:]
    cy = torch.randint(height, (), device=x.device)
    cx = torch.randint(width, (), device=x.device)
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    in_rows = (rows >= cy - half) & (rows < cy + half)
    in_cols = (cols >= cx - half) & (cols < cx + half)
    keep = ~(in_rows[:, None] & in_cols[None, :])
    return x * keep.to(x.dtype)

"""Dropout and Spaced Dropout on the dropout ResNet (spec 2.4, 6), with the optional spaced batch cutout."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import ExperimentConfig
from ..engine.steps import ce_loss
from ..models import DropoutResNet, create_model
from .base import Engine, Iteration, Method, family_model_name
from .schedule import DropoutPlan

MODEL = "model"


class SpacedDropout(Method):
    """`dropout` (StandardDropout / MaxDropout at a constant rate p) and `spaced_dropout` (SpacedDropout /
    MaxSpacedDropout: p_t = p*|sin(pi*t/S)| at the 4 sites, or p*U[0,1) per site and forward when S >= 500).

    Loss weighting: CE(z, y) only; dropout acts on the activations after layer1..layer4.
    - reference: t counts every forward, evaluation batches included (quirk 19), and dropout stays active at
      evaluation (quirk 18).
    - standard: t counts training steps and evaluation runs without dropout.
    The rate lives in device buffers of the model, rewritten in place before each forward (no host sync, no
    recompile). With `dropout.cutout_input` each training batch loses one box, the same for the whole batch
    (spec 1.6), of side int(l_t) with l_t from the plan's cutout schedule, drawn and applied on the device.
    """

    def __init__(self, plan: DropoutPlan, cfg: ExperimentConfig):
        self.plan = plan
        self.reference = plan.semantics == "reference"
        self.forwards = 0
        """t: forward calls that advanced the rate schedule."""
        self.train_steps = 0

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        name = family_model_name(cfg.model.student, "dropout_")
        return {MODEL: create_model(name, num_classes=num_classes, drop_op=self.plan.op, drop_rate=self.plan.rate,
                                    random_rates=self.plan.variant == "random", active_at_eval=self.reference,
                                    downsample_factor=cfg.model.student_downsample_factor)}

    def run_iteration(self, it: Iteration, eng: Engine) -> None:
        learner = eng.learners[MODEL]
        x, y = eng.batch(it.indices, it.seed)
        if self.plan.cutout != "off":
            x = batch_cutout(x, self._cutout_half(x))
        self._set_rate(learner.model)
        loss = ce_loss(learner.forward(x), y)
        learner.step(loss)
        eng.record(MODEL, loss=loss)
        self.forwards += 1
        self.train_steps += 1

    def eval_outputs(self, eng: Engine, x: torch.Tensor) -> dict[str, torch.Tensor]:
        learner = eng.learners[MODEL]
        if not self.reference:
            return {MODEL: learner.forward(x)}
        self._set_rate(learner.model)
        logits = learner.forward(x)
        self.forwards += 1
        return {MODEL: logits}

    def _set_rate(self, model: DropoutResNet) -> None:
        """The sine variant's p_t for this forward; constant and random rates never change after build."""
        if self.plan.variant == "sine":
            model.set_drop_rates(self.plan.rate_at(self.forwards))

    def _cutout_half(self, x: torch.Tensor) -> int | torch.Tensor:
        """Half the box side for this step: a host int, or a device tensor for random lengths (no sync)."""
        if self.plan.cutout != "random":
            return self.plan.cutout_box_at(self.train_steps) // 2
        draw = torch.rand((), device=x.device, dtype=torch.float64)
        return torch.div((self.plan.cutout_length * draw).floor(), 2, rounding_mode="floor")

    def state_dict(self) -> dict:
        return {"dropout_forwards": self.forwards, "dropout_train_steps": self.train_steps}

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
